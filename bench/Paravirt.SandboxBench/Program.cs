using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Paravirt.Hypervisor.Memory;
using Paravirt.Hypervisor.Sandboxes;

namespace Paravirt.SandboxBench;

/// <summary>A record both sides exchange (a MessagePack map, contractless).</summary>
public sealed record Point(int X, int Y);

/// <summary>
/// Sandbox benchmarks (bench/sandbox.sh): PLUGIN_IMAGE BACKEND RUNS SANDBOXES. Prints markdown rows. Every figure is
/// the median of RUNS batches; every ratio is taken against a reference measured in the same process and run.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length >= 1 && args[0] == "serialization")
        {
            MessagePack.MessagePackSerializerOptions o = SandboxOptions.DefaultSerializerOptions;
            byte[] packed = MessagePack.MessagePackSerializer.Serialize(new Point(30, -40), o);
            Console.WriteLine($"serialize Point {PerOp(5, 100_000, () => MessagePack.MessagePackSerializer.Serialize(new Point(3, -4), o)):0.###} us");
            Console.WriteLine($"serialize (Type) Point {PerOp(5, 100_000, () => MessagePack.MessagePackSerializer.Serialize(typeof(Point), new Point(3, -4), o)):0.###} us");
            Console.WriteLine($"deserialize Point {PerOp(5, 100_000, () => MessagePack.MessagePackSerializer.Deserialize<Point>(packed, o)):0.###} us");
            Console.WriteLine($"validate {PerOp(5, 100_000, () => MessagePackValidator.Validate(packed, MessagePackLimits.Default)):0.###} us");
            using Sandbox sb = Sandbox.Create("artifacts/guests/plugin-guest.elf", new SandboxOptions { Backend = "emulator" });
            byte[] raw = [0x92, 0x82, 0xa1, (byte)'X', 0x03, 0xa1, (byte)'Y', 0xfc, 0x0a];
            Warm(() => sb.CallRaw("Scale", raw), 3000);
            using SandboxSnapshot snap = args.Length > 1 ? sb.Snapshot() : null!;
            for (int round = 0; round < 2; round++)
            {
                Console.WriteLine($"raw {PerOp(5, 5000, () => sb.CallRaw("Scale", raw)):0.###} us");
                Console.WriteLine($"typed {PerOp(5, 5000, () => sb.Call<Point>("Scale", new Point(3, -4), 10)):0.###} us");
                Console.WriteLine($"add raw {PerOp(5, 5000, () => sb.CallRaw("Add", [0x92, 1, 2])):0.###} us");
                Console.WriteLine($"raw+deserialize {PerOp(5, 5000, () => MessagePack.MessagePackSerializer.Deserialize<Point>(sb.CallRaw("Scale", raw), o)):0.###} us");
                byte[] typedArgs = MessagePack.MessagePackSerializer.Serialize(new object[] { new Point(3, -4), 10 }, o);
                Console.WriteLine($"args {Convert.ToHexString(typedArgs)} raw {Convert.ToHexString(raw)}");
                Console.WriteLine($"raw(typed bytes) {PerOp(5, 5000, () => sb.CallRaw("Scale", typedArgs)):0.###} us");
            }
            return 0;
        }
        if (args.Length < 4)
        {
            Console.Error.WriteLine("usage: Paravirt.SandboxBench PLUGIN_IMAGE BACKEND RUNS SANDBOXES");
            return 2;
        }
        string image = args[0];
        string backend = args[1];
        int runs = int.Parse(args[2], CultureInfo.InvariantCulture);
        int sandboxes = int.Parse(args[3], CultureInfo.InvariantCulture);
        var options = new SandboxOptions
        {
            Backend = backend,
            MemorySize = 16UL << 20,
            HostFunctions = new HostFunctionCollection().Add("GetGreeting", () => "Hello").Add("Nop", () => 0),
        };
        var rows = new StringBuilder();
        rows.AppendLine("| Measurement | Paravirt | Reference (same run) | Ratio | Goal |");
        rows.AppendLine("|---|---|---|---|---|");

        using Sandbox sandbox = Sandbox.Create(image, options);
        using SandboxSnapshot clean = sandbox.Snapshot();

        // 1. Call round trip: Scale(Point, int) -> Point, against a direct .NET call of the same function.
        Func<Point, int, Point> direct = ScaleDirect;
        byte[] rawArgs = [0x92, 0x82, 0xa1, (byte)'X', 0x03, 0xa1, (byte)'Y', 0xfc, 0x0a];
        Action[] variants =
        [
            () => direct(new Point(3, -4), 10),
            () => sandbox.Call<Point>("Scale", new Point(3, -4), 10),
            () => sandbox.Call<Point, int, Point>("Scale", new Point(3, -4), 10),
            () => sandbox.CallRaw("Scale", rawArgs),
        ];
        // Warm up for a while (tiered JIT, the emulator's block translation), then measure the variants interleaved
        // so that load changes on the shared machine hit them alike.
        long warmUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 2;
        while (Stopwatch.GetTimestamp() < warmUntil)
        {
            foreach (Action v in variants)
            {
                Warm(v, 200);
            }
        }
        var samples = variants.Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < Math.Max(runs, 5); r++)
        {
            for (int v = 0; v < variants.Length; v++)
            {
                samples[v].Add(PerOp(1, v == 0 ? 100_000 : 2_000, variants[v]));
            }
        }
        double directUs = MedianOf(samples[0]), callUs = MedianOf(samples[1]), typedUs = MedianOf(samples[2]), rawUs = MedianOf(samples[3]);
        ulong retiredBefore = sandbox.Machine.Vcpu.InstructionsRetired ?? 0;
        long exitsBefore = sandbox.Statistics.Exits.Values.Sum();
        sandbox.CallRaw("Scale", rawArgs);
        ulong perCall = (sandbox.Machine.Vcpu.InstructionsRetired ?? 0) - retiredBefore;
        long exitsPerCall = sandbox.Statistics.Exits.Values.Sum() - exitsBefore;
        Console.Error.WriteLine($"sandbox-bench: one Scale call = {perCall} guest instructions, {exitsPerCall} exit(s)");
        Row(rows, "Call round trip `Call<Point>(\"Scale\", point, 10)` (params object[])", Us(callUs), $"direct .NET call {Us(directUs)}", Ratio(callUs, directUs), "<= 5 us");
        Row(rows, "Call round trip `Call<Point, int, Point>` (static types)", Us(typedUs), $"direct .NET call {Us(directUs)}", Ratio(typedUs, directUs), "<= 5 us");
        Row(rows, "Call round trip `CallRaw` (MessagePack bytes in and out)", Us(rawUs), $"direct .NET call {Us(directUs)}", Ratio(rawUs, directUs), "<= 5 us");

        // 2. Host-function call from the guest: HostCalls("Nop", n), per call, against a direct .NET delegate call.
        Func<int> nop = () => 0;
        double delegateUs = PerOp(runs, 1_000_000, () => nop());
        const int HostCalls = 2000;
        long warmHost = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
        while (Stopwatch.GetTimestamp() < warmHost)
        {
            Warm(() => sandbox.Call<long>("HostCalls", "Nop", 10), 50);
        }
        double emptyUs = PerOp(runs, 200, () => sandbox.Call<long>("HostCalls", "Nop", 0));
        double loopUs = PerOp(runs, 20, () => sandbox.Call<long>("HostCalls", "Nop", HostCalls));
        double hostUs = (loopUs - emptyUs) / HostCalls;
        Row(rows, "Host-function call from the guest (`pv_host_call` of a no-argument function)", Us(hostUs), $"direct .NET delegate call {Us(delegateUs)}", Ratio(hostUs, delegateUs), "");

        // 3. Snapshot and Restore of the 16 MiB sandbox after it dirtied N pages (written host-side, one byte per page,
        // so the page count is exact; guest stores mark the same dirty page map).
        sandbox.Restore(clean);
        double memcpyPageUs = PerOp(runs, 20_000, CopyOnePage);
        foreach (int pages in new[] { 1, 64, 4096 })
        {
            double restoreUs = AfterDirtying(runs, sandbox, pages, iterations: 50, () => sandbox.Restore(clean));
            string goal = pages == 64 ? "<= 20 us" : "";
            Row(rows, $"`Restore()` after {pages} dirty page(s)", Us(restoreUs), $"memcpy of {pages} page(s) {Us(memcpyPageUs * pages)}", Ratio(restoreUs, memcpyPageUs * pages), goal);
        }
        foreach (int pages in new[] { 1, 64, 4096 })
        {
            sandbox.Restore(clean);
            SandboxSnapshot? taken = null;
            double snapshotUs = AfterDirtying(runs, sandbox, pages, iterations: 20, () => taken = sandbox.Snapshot(), untimed: () =>
            {
                taken!.Dispose();
                sandbox.Restore(clean);
            });
            Row(rows, $"`Snapshot()` after {pages} dirty page(s)", Us(snapshotUs), $"memcpy of {pages} page(s) {Us(memcpyPageUs * pages)}", Ratio(snapshotUs, memcpyPageUs * pages), "");
        }

        // 4. A sandbox from a snapshot, against spawning /bin/true.
        sandbox.Restore(clean);
        double forkUs = Median(runs, () =>
        {
            const int Iterations = 50;
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < Iterations; i++)
            {
                using Sandbox s = Sandbox.Create(clean, options);
            }
            return Stopwatch.GetElapsedTime(t0).TotalMicroseconds / Iterations;
        });
        double spawnUs = Median(runs, () =>
        {
            const int Iterations = 10;
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < Iterations; i++)
            {
                using Process p = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!;
                p.WaitForExit();
            }
            return Stopwatch.GetElapsedTime(t0).TotalMicroseconds / Iterations;
        });
        double coldUs = Median(Math.Min(runs, 3), () =>
        {
            long t0 = Stopwatch.GetTimestamp();
            using Sandbox s = Sandbox.Create(image, options);
            return Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        });
        Row(rows, "Sandbox from a snapshot (`Sandbox.Create(snapshot)` + `Dispose`)", Us(forkUs), $"spawn `/bin/true` {Us(spawnUs)}", Ratio(forkUs, spawnUs), "<= 100 us");
        Row(rows, "Sandbox from the image (load, initialize to the ready point)", Us(coldUs), $"spawn `/bin/true` {Us(spawnUs)}", Ratio(coldUs, spawnUs), "");

        // 5. Host memory per idle sandbox beyond guest RAM: N sandboxes from one snapshot, private memory per sandbox.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        long before = PrivateBytes();
        var many = new Sandbox[sandboxes];
        for (int i = 0; i < many.Length; i++)
        {
            many[i] = Sandbox.Create(clean, options);
        }
        GC.Collect();
        long idle = PrivateBytes();
        long dirtied = 0;
        foreach (Sandbox s in many)
        {
            s.Call<long>("Add", 1, 2);
            s.Machine.Vm.CollectDirtyPages();
            dirtied += s.Machine.Memory.DirtyPageMap.Count((byte)1);
        }
        GC.Collect();
        long called = PrivateBytes();
        double idleKiB = (idle - before) / 1024.0 / many.Length;
        double calledKiB = (called - before) / 1024.0 / many.Length;
        double dirtiedKiB = dirtied * 4.0 / many.Length;
        Row(rows, $"Host memory per idle sandbox ({many.Length} from one snapshot, private bytes / sandbox)", $"{idleKiB:0.#} KiB", $"guest RAM {options.MemorySize >> 10} KiB", Ratio(idleKiB, options.MemorySize >> 10), "<= 256 KiB");
        Row(rows, $"... after one call each (minus the {dirtiedKiB:0.#} KiB of pages each dirtied)", $"{calledKiB - dirtiedKiB:0.#} KiB", $"guest RAM {options.MemorySize >> 10} KiB", Ratio(calledKiB - dirtiedKiB, options.MemorySize >> 10), "<= 256 KiB");
        foreach (Sandbox s in many)
        {
            s.Dispose();
        }
        Console.Write(rows.ToString());
        return 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Point ScaleDirect(Point p, int k) => new(p.X * k, p.Y * k);

    private static readonly byte[] SourceMemory = new byte[16 << 20];
    private static readonly byte[] TargetMemory = new byte[16 << 20];
    private static int _nextPage;

    /// <summary>The reference for restore and snapshot: one 4 KiB memcpy between two 16 MiB buffers, a different page each time (as cold as the sandbox's pages).</summary>
    private static void CopyOnePage()
    {
        int page = _nextPage = (_nextPage + 97) & 4095;
        SourceMemory.AsSpan(page << 12, 4096).CopyTo(TargetMemory.AsSpan(page << 12, 4096));
    }

    /// <summary>Dirties <paramref name="pages"/> pages spread over the 16 MiB (host writes mark the dirty page map).</summary>
    private static void DirtyPages(Sandbox sandbox, int pages, int salt)
    {
        GuestMemory memory = sandbox.Machine.Memory;
        int total = memory.PageCount;
        int stride = Math.Max(1, total / pages);
        for (int i = 0; i < pages; i++)
        {
            ulong page = (ulong)((i * stride) % total);
            memory.Write(new GuestAddress((page << 12) + 2048), (byte)(salt + i));
        }
    }

    private static void Warm(Action action, int count)
    {
        for (int i = 0; i < count; i++)
        {
            action();
        }
    }

    /// <summary>
    /// Median over <paramref name="runs"/> batches of the microseconds <paramref name="timed"/> takes right after
    /// <paramref name="pages"/> pages of the sandbox were dirtied; neither the dirtying nor <paramref name="untimed"/>
    /// (run after each timed call) is counted.
    /// </summary>
    private static double AfterDirtying(int runs, Sandbox sandbox, int pages, int iterations, Action timed, Action? untimed = null) => Median(runs, () =>
    {
        long total = 0;
        for (int i = 0; i < iterations; i++)
        {
            DirtyPages(sandbox, pages, i);
            long t0 = Stopwatch.GetTimestamp();
            timed();
            total += Stopwatch.GetTimestamp() - t0;
            untimed?.Invoke();
        }
        return Stopwatch.GetElapsedTime(0, total).TotalMicroseconds / iterations;
    });

    private static double PerOp(int runs, int iterations, Action action) => Median(runs, () =>
    {
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < iterations; i++)
        {
            action();
        }
        return Stopwatch.GetElapsedTime(t0).TotalMicroseconds / iterations;
    });

    private static double PerOp<T>(int runs, int iterations, Func<T> func) => PerOp(runs, iterations, () => { _ = func(); });

    private static double MedianOf(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }

    private static double Median(int runs, Func<double> measure)
    {
        double[] values = new double[Math.Max(runs, 1)];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = measure();
        }
        Array.Sort(values);
        return values[values.Length / 2];
    }

    /// <summary>Private_Clean + Private_Dirty of the process (smaps_rollup): memory no other mapping shares.</summary>
    private static long PrivateBytes()
    {
        long kib = 0;
        foreach (string line in File.ReadLines("/proc/self/smaps_rollup"))
        {
            if (line.StartsWith("Private_Clean:", StringComparison.Ordinal) || line.StartsWith("Private_Dirty:", StringComparison.Ordinal))
            {
                kib += long.Parse(line.Split(':', StringSplitOptions.TrimEntries)[1].Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }
        return kib * 1024;
    }

    private static string Us(double us) => us >= 1000 ? $"{us / 1000:0.###} ms" : $"{us:0.###} us";

    private static string Ratio(double a, double b) => b <= 0 ? "-" : $"{a / b:0.##}x";

    private static void Row(StringBuilder rows, string what, string value, string reference, string ratio, string goal) =>
        rows.AppendLine(CultureInfo.InvariantCulture, $"| {what} | {value} | {reference} | {ratio} | {goal} |");
}
