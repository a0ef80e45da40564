using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;
using Iced.Intel;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Devices;
using Paravirt.Hypervisor.Devices.Block;
using Paravirt.Hypervisor.Devices.Net;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;
using Paravirt.Hypervisor.Running;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.DeviceBench;

/// <summary>
/// Device benchmarks (bench/devices.sh, bench/kvm-pvm.sh); BACKEND is emulator (the default) or kvm:
///   blk GUEST_DIR WORK_DIR MIB RAND RUNS [BACKEND]  the blk sample in mode=bench on a MIB MiB image file, and the
///                                         host doing the same reads/writes on the same file directly (RandomAccess,
///                                         the calls the block device makes); prints one markdown row per phase.
///   net GUEST_DIR ROUNDS RUNS [BACKEND]   two net sample VMs ping-pong over one NetSwitch; prints frames/s.
///   hypercall BACKEND COUNT RUNS          COUNT hypercall round trips through the hypercall page on the bare vCPU
///                                         (Run, then HypercallTrap's read and complete); prints the best run's
///                                         microseconds per round trip.
/// </summary>
internal static partial class Program
{
    private static int Main(string[] args)
    {
        if (args.Length >= 6 && args[0] == "blk")
        {
            s_backend = args.Length > 6 ? args[6] : EmulatorBackend.BackendName;
            return Blk(args[1], args[2], Int(args[3]), Int(args[4]), Int(args[5]));
        }
        if (args.Length >= 4 && args[0] == "net")
        {
            s_backend = args.Length > 4 ? args[4] : EmulatorBackend.BackendName;
            return Net(args[1], Int(args[2]), Int(args[3]));
        }
        if (args.Length >= 4 && args[0] == "hypercall")
        {
            return Hypercall(args[1], Int(args[2]), Int(args[3]));
        }
        Console.Error.WriteLine("usage: Paravirt.DeviceBench blk GUEST_DIR WORK_DIR MIB RAND RUNS [BACKEND] | net GUEST_DIR ROUNDS RUNS [BACKEND] | hypercall BACKEND COUNT RUNS");
        return 2;
    }

    private static string s_backend = EmulatorBackend.BackendName;

    private static IHypervisorBackend[] Backends() => [new KvmBackend(), new EmulatorBackend()];

    /// <summary>COUNT round trips of a guest loop that calls the hypercall page; the host completes each at once (HypercallTrap: GetRegisters, SetRegisters).</summary>
    private static int Hypercall(string backendName, int count, int runs)
    {
        const ulong ImageBase = 0x10_0000, Code = 0x1000, Done = 0x1001;
        var a = new Assembler(64);
        Label loop = a.CreateLabel();
        a.mov(r12, count);
        a.mov(rbx, GuestLayout.HypercallPage);
        a.Label(ref loop);
        a.mov(eax, (uint)Code);
        a.mov(rdi, r12);
        a.call(rbx);
        a.dec(r12);
        a.jnz(loop);
        a.mov(eax, (uint)Done);
        a.call(rbx);
        a.hlt();
        using var code = new MemoryStream();
        a.Assemble(new StreamCodeWriter(code), ImageBase);

        IHypervisorBackend backend = Backends().Single(b => b.Name == backendName);
        double best = double.MaxValue;
        for (int run = 1; run <= runs; run++)
        {
            using var memory = new GuestMemory(16UL << 20);
            memory.Write(new GuestAddress(ImageBase), code.ToArray());
            memory.Write(new GuestAddress(GuestLayout.HypercallPage), HypercallStub.Bytes);
            using IVirtualMachine vm = backend.CreateVirtualMachine(memory, new VirtualMachineOptions());
            using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(ImageBase, memory.Size, GuestLayout.BootInfo));
            var sw = Stopwatch.StartNew();
            int trips = 0;
            while (true)
            {
                VcpuExit exit = vcpu.Run();
                if (!HypercallTrap.TryRead(vcpu, exit, out HypercallArgs args))
                {
                    throw new InvalidOperationException($"{backendName}: {exit.Kind} at 0x{exit.Rip:x} {exit.Detail} after {trips} hypercalls");
                }
                if (args.Code == Done)
                {
                    break;
                }
                HypercallTrap.Complete(vcpu, 0);
                trips++;
            }
            sw.Stop();
            if (trips != count)
            {
                throw new InvalidOperationException($"{backendName}: {trips} hypercalls, expected {count}");
            }
            double us = sw.Elapsed.TotalMicroseconds / count;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{backendName} run {run}: {count} round trips, {us:F2} us each"));
            best = Math.Min(best, us);
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{best:F3}"));
        return 0;
    }

    private static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);

    private static (RunResult Result, string Output) Run(string guestDir, string sample, IReadOnlyList<VirtualDevice> devices, string commandLine)
    {
        GuestImage image = ElfLoader.LoadFile(Path.Combine(guestDir, sample + ".elf"), AbiVersion.Current);
        var runner = new GuestRunner(new BackendSelector(Backends()), HypercallDispatcher.WithBuiltIns());
        using var console = new MemoryStream();
        RunResult r = runner.Run(image, new GuestRunOptions
        {
            Backend = s_backend,
            ConsoleOutput = console,
            Devices = devices,
            CommandLine = commandLine,
            Timeout = TimeSpan.FromMinutes(10),
        });
        string output = Encoding.UTF8.GetString(console.ToArray());
        if (r.Outcome != RunOutcome.Exited || r.ExitStatus != 0)
        {
            throw new InvalidOperationException($"{sample} {commandLine}: {r.Outcome} {r.ExitStatus} {r.Message}\n{output}");
        }
        return (r, output);
    }

    [GeneratedRegex(@"bench: (\S+) (?:bytes|rounds|frames)=(\d+) ns=(\d+)")]
    private static partial Regex BenchLine();

    private static Dictionary<string, (long Amount, long Ns)> Parse(string output)
    {
        var d = new Dictionary<string, (long, long)>();
        foreach (Match m in BenchLine().Matches(output))
        {
            d[m.Groups[1].Value] = (long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), long.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
        }
        return d;
    }

    private static int Blk(string guestDir, string workDir, int mib, int rand, int runs)
    {
        Directory.CreateDirectory(workDir);
        string path = Path.Combine(workDir, "blkbench.img");
        string[] phases = ["seq-write", "seq-read", "rand4k-write", "rand4k-read"];
        var best = phases.ToDictionary(p => p, _ => (Guest: double.MaxValue, Host: double.MaxValue, Bytes: 0L));
        for (int run = 1; run <= runs; run++)
        {
            File.WriteAllBytes(path, []);
            using (FileStream f = File.OpenWrite(path))
            {
                f.SetLength((long)mib << 20);
            }
            Dictionary<string, (long Bytes, long Ns)> guest;
            using (var disk = new BlockDevice("disk0", path))
            {
                guest = Parse(Run(guestDir, "blk", [disk], $"mode=bench mib={mib} rand={rand} seed={run}").Output);
            }
            Dictionary<string, (long Bytes, long Ns)> host = HostBlk(path, mib, rand, run);
            foreach (string p in phases)
            {
                double g = guest[p].Ns / 1e9, h = host[p].Ns / 1e9;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run} {p}: guest {guest[p].Bytes / g / 1e6:F1} MB/s, host {host[p].Bytes / h / 1e6:F1} MB/s"));
                best[p] = (Math.Min(best[p].Guest, g), Math.Min(best[p].Host, h), guest[p].Bytes);
            }
        }
        File.Delete(path);
        Console.WriteLine($"| Phase | Bytes | Guest ({s_backend}, via ring) MB/s | Host direct MB/s | Guest/host |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (string p in phases)
        {
            (double g, double h, long bytes) = best[p];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {p} | {bytes} | {bytes / g / 1e6:F1} | {bytes / h / 1e6:F1} | {h / g:F2} |"));
        }
        return 0;
    }

    /// <summary>The same I/O the guest asks for, done by the host on the same file: 1 MiB sequential writes then a
    /// flush, 1 MiB sequential reads, then random 4 KiB writes and reads (the same xorshift as the guest).</summary>
    private static Dictionary<string, (long Bytes, long Ns)> HostBlk(string path, int mib, int rand, int seed)
    {
        var result = new Dictionary<string, (long, long)>();
        using Microsoft.Win32.SafeHandles.SafeFileHandle file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        byte[] chunk = new byte[1 << 20];
        Random.Shared.NextBytes(chunk);
        long total = (long)mib << 20;
        var sw = Stopwatch.StartNew();
        for (long off = 0; off < total; off += chunk.Length)
        {
            RandomAccess.Write(file, chunk, off);
        }
        RandomAccess.FlushToDisk(file);
        result["seq-write"] = (total, sw.Elapsed.Ticks * 100);
        sw.Restart();
        for (long off = 0; off < total; off += chunk.Length)
        {
            RandomAccess.Read(file, chunk, off);
        }
        result["seq-read"] = (total, sw.Elapsed.Ticks * 100);
        ulong state = ((ulong)seed * 0x2545F4914F6CDD1Dul) + 1;
        ulong blocks = (ulong)total / 4096;
        Span<byte> block = chunk.AsSpan(0, 4096);
        foreach (bool write in new[] { true, false })
        {
            sw.Restart();
            for (int i = 0; i < rand; i++)
            {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                long off = (long)(state % blocks) * 4096;
                if (write)
                {
                    RandomAccess.Write(file, block, off);
                }
                else
                {
                    RandomAccess.Read(file, block, off);
                }
            }
            result[write ? "rand4k-write" : "rand4k-read"] = ((long)rand * 4096, sw.Elapsed.Ticks * 100);
        }
        return result;
    }

    private static int Net(string guestDir, int rounds, int runs)
    {
        double bestNs = double.MaxValue;
        long forwarded = 0;
        for (int run = 1; run <= runs; run++)
        {
            var sw = new NetSwitch();
            using var pingNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 0);
            using var pongNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 1);
            Exception? pongError = null;
            var thread = new Thread(() =>
            {
                try
                {
                    Run(guestDir, "net", [pongNic], $"role=pong rounds={rounds}");
                }
#pragma warning disable CA1031 // reported below
                catch (Exception e)
#pragma warning restore CA1031
                {
                    pongError = e;
                }
            });
            thread.Start();
            var (_, output) = Run(guestDir, "net", [pingNic], $"role=ping rounds={rounds} bench=1");
            thread.Join();
            if (pongError is not null)
            {
                throw pongError;
            }
            (long r, long ns) = Parse(output)["net-roundtrips"];
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run}: {r} round trips in {ns / 1e6:F1} ms, {2 * r / (ns / 1e9):F0} frames/s; switch forwarded {sw.FramesForwarded}"));
            bestNs = Math.Min(bestNs, ns);
            forwarded = sw.FramesForwarded;
        }
        Console.WriteLine("| Mode | Frames | Best time ms | Frames/s (VM to VM) | Notes |");
        Console.WriteLine("|---|---|---|---|---|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| ping-pong (stop and wait) | {2 * rounds} | {bestNs / 1e6:F1} | {2 * rounds / (bestNs / 1e9):F0} | {rounds / (bestNs / 1e9):F0} round trips/s, random 46..1484-byte payloads |"));
        (long frames, double streamNs, long sent, long dropped) = Stream(guestDir, rounds * 10, runs);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| stream 1514-byte frames | {frames} | {streamNs / 1e6:F1} | {frames / (streamNs / 1e9):F0} | source sent {sent}, receiver dropped {dropped} (queue full) |"));
        return 0;
    }

    /// <summary>One VM sends back to back, the other counts; best run by delivered frames per second.</summary>
    private static (long Frames, double Ns, long Sent, long Dropped) Stream(string guestDir, int frames, int runs)
    {
        (long Frames, double Ns, long Sent, long Dropped) best = (0, 1, 0, 0);
        for (int run = 1; run <= runs; run++)
        {
            var sw = new NetSwitch();
            using var sourceNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 0);
            using var sinkNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 1);
            string sinkOutput = "";
            Exception? sinkError = null;
            var thread = new Thread(() =>
            {
                try
                {
                    sinkOutput = Run(guestDir, "net", [sinkNic], "role=sink").Output;
                }
#pragma warning disable CA1031 // reported below
                catch (Exception e)
#pragma warning restore CA1031
                {
                    sinkError = e;
                }
            });
            thread.Start();
            Run(guestDir, "net", [sourceNic], $"role=source frames={frames} size=1514");
            thread.Join();
            if (sinkError is not null)
            {
                throw sinkError;
            }
            (long got, long ns) = Parse(sinkOutput)["net-stream"];
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"stream run {run}: {got}/{frames} frames in {ns / 1e6:F1} ms, {got / (ns / 1e9):F0} frames/s, rx dropped {sinkNic.RxDropped}"));
            if (got / (double)ns > best.Frames / best.Ns)
            {
                best = (got, ns, sourceNic.TxFrames, sinkNic.RxDropped);
            }
        }
        return best;
    }
}
