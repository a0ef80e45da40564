using System.Net.NetworkInformation;
using Paravirt.Hypervisor.Devices.Console;
using Paravirt.Hypervisor.Devices.Net;

namespace Paravirt.Scenarios;

/// <summary>
/// The device samples (blk, net, kv and the C# blk-cs, net-cs, echo-cs) against the real host devices, on KVM (the emulator when
/// PARAVIRT_SCENARIO_BACKEND=emulator, to check the scenarios themselves without KVM). The same checks as
/// tests/Paravirt.Hypervisor.Tests/Integration/DevicesGuestTests.cs.
/// </summary>
internal static class DeviceScenarios
{
    internal static IEnumerable<(string Name, Func<string> Run)> All(string guestDir) =>
    [
        ("kvm-blk", () => Blk(guestDir)),
        ("kvm-blk-readonly", () => BlkReadOnly(guestDir)),
        ("kvm-blk-cs", () => BlkCs(guestDir)),
        ("kvm-net-pingpong", () => NetPingPong(guestDir)),
        ("kvm-net-cs", () => NetCs(guestDir)),
        ("kvm-echo-cs", () => EchoCs(guestDir)),
        ("kvm-kv-restart", () => KvRestart(guestDir)),
        ("kvm-user-device", () => UserDevice(guestDir)),
    ];

    /// <summary>
    /// The user-defined device sample (samples/kvstore-host's KvStoreDevice, samples/kvstore-guest): the guest finds,
    /// configures, attaches, drives, resets and re-attaches a device type the application defined.
    /// </summary>
    private static string UserDevice(string guestDir)
    {
        using var kv = new KvStore.KvStoreDevice("kv0", capacity: 64);
        kv.Set("greeting", "Hello from the host's key-value device");
        var run = Run(guestDir, "kvstore-guest", [kv]);
        CheckExited(run);
        Line(run.Output, "kvstore-guest: all checks passed");
        Check(kv.Get("result") == "ok" && kv.Get("key-7") == "value-49" && kv.Get("key-0") is null,
            $"the store holds result={kv.Get("result")}, key-7={kv.Get("key-7")}, key-0={kv.Get("key-0")}");
        return $"{Line(run.Output, "kvstore-guest: stored")}; {kv.Requests} requests";
    }

    private static bool UseEmulator =>
        string.Equals(Environment.GetEnvironmentVariable("PARAVIRT_SCENARIO_BACKEND"), "emulator", StringComparison.Ordinal);

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new ScenarioFailedException(message);
        }
    }

    private static (RunResult Result, string Output) Run(string guestDir, string sample, IReadOnlyList<VirtualDevice> devices, string commandLine = "") =>
        Run(guestDir, sample, devices, commandLine, UseEmulator ? new EmulatorBackend() : new KvmBackend());

    /// <summary>Runs <c>samples/&lt;sample&gt;</c> on <paramref name="backend"/> with the device hypercalls; returns the result and the console output.</summary>
    internal static (RunResult Result, string Output) Run(string guestDir, string sample, IReadOnlyList<VirtualDevice> devices, string commandLine, IHypervisorBackend backend)
    {
        string path = Path.Combine(guestDir, sample + ".elf");
        Check(File.Exists(path), $"{path} is missing (build samples/{sample} first)");
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        var runner = new GuestRunner(new BackendSelector([backend]), new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]));
        using var console = new MemoryStream();
        RunResult r = runner.Run(image, new GuestRunOptions
        {
            Backend = backend.Name,
            ConsoleOutput = console,
            Devices = devices,
            CommandLine = commandLine,
            Timeout = TimeSpan.FromSeconds(120),
        });
        return (r, Encoding.UTF8.GetString(console.ToArray()));
    }

    private static void CheckExited((RunResult Result, string Output) run, int status = 0) =>
        Check(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == status,
            $"{run.Result.Outcome} status {run.Result.ExitStatus} ({run.Result.Message}); output: {run.Output.ReplaceLineEndings(" | ")}");

    private static string TempDisk(long bytes, byte fill)
    {
        string path = Path.Combine(Path.GetTempPath(), $"paravirt-scenario-{Guid.NewGuid():N}.img");
        byte[] data = new byte[bytes];
        Array.Fill(data, fill);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static string Line(string output, string prefix)
    {
        foreach (string line in output.ReplaceLineEndings("\n").Split('\n'))
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                return line;
            }
        }
        throw new ScenarioFailedException($"no line starting with '{prefix}' in: {output.ReplaceLineEndings(" | ")}");
    }

    private static string Blk(string guestDir)
    {
        string path = TempDisk(4 << 20, 0xA5);
        try
        {
            using var disk = new BlockDevice("disk0", path);
            var run = Run(guestDir, "blk", [disk], "seed=7 requests=256");
            CheckExited(run);
            Line(run.Output, "blk: OK seed=7");
            long doorbells = run.Result.Statistics.Hypercalls.GetValueOrDefault((uint)HypercallCode.EventSend);
            Check(doorbells is >= 2 and <= 64, $"{doorbells} doorbells for 256 requests: requests are not batched");
            return $"{Line(run.Output, "blk: 256 requests")}; {doorbells} doorbells";
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string BlkReadOnly(string guestDir)
    {
        string path = TempDisk(1 << 20, 0x3C);
        try
        {
            byte[] before = File.ReadAllBytes(path);
            using var disk = new BlockDevice("disk0", path, readOnly: true);
            var run = Run(guestDir, "blk", [disk]);
            CheckExited(run);
            Check(disk.BytesWritten == 0, $"{disk.BytesWritten} bytes written to a read-only disk");
            Check(before.AsSpan().SequenceEqual(File.ReadAllBytes(path)), "the read-only image changed");
            return Line(run.Output, "blk: read-only disk");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>The C# block driver (samples/blk-cs) checksums a disk and writes, flushes and verifies 8 sectors.</summary>
    private static string BlkCs(string guestDir)
    {
        string path = TempDisk(1 << 20, 0x5A);
        try
        {
            ulong expected = 0xcbf29ce484222325;
            foreach (byte b in File.ReadAllBytes(path))
            {
                expected = (expected ^ b) * 0x100000001b3;
            }
            (RunResult Result, string Output) run;
            using (var disk = new BlockDevice("disk0", path))
            {
                run = Run(guestDir, "blk-cs", [disk]);
            }
            CheckExited(run);
            string sum = Line(run.Output, "blk-cs: disk0: 2048 sectors");
            Check(sum.Contains($"fnv1a64 0x{expected:x16}", StringComparison.Ordinal), $"checksum line '{sum}', expected 0x{expected:x16}");
            Line(run.Output, "blk-cs: wrote, flushed and verified 8 sectors");
            byte[] head = File.ReadAllBytes(path)[..4096];
            for (int i = 0; i < head.Length; i++)
            {
                Check(head[i] == (byte)(i * 7 + 3), $"byte {i} of the image is 0x{head[i]:x2} after the guest's write");
            }
            return sum;
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string NetPingPong(string guestDir)
    {
        var sw = new NetSwitch();
        var (ping, pong) = RunPingAndPong(guestDir, sw, "role=ping rounds=200 seed=5", ("net", "role=pong rounds=200 seed=5"));
        string a = Line(ping.Output, "net: ping 200 rounds, checksum ");
        string b = Line(pong.Output, "net: pong 200 rounds, checksum ");
        Check(a.Substring(31, 10) == b.Substring(31, 10), $"checksums differ: '{a}' vs '{b}'");
        return $"{a}; switch forwarded {sw.FramesForwarded}";
    }

    /// <summary>
    /// samples/net as the pinger (<paramref name="pingCommandLine"/>) and a ponger (a sample and its command line), each
    /// with a net0 NIC on <paramref name="sw"/>, run at once (the ponger on its own thread); both must exit 0. Explicit
    /// MACs (02:..:01 pings, 02:..:02 pongs): the scenario does not depend on how NetDevice derives them (it once
    /// needed libssl).
    /// </summary>
    private static ((RunResult Result, string Output) Ping, (RunResult Result, string Output) Pong) RunPingAndPong(
        string guestDir, NetSwitch sw, string pingCommandLine, (string Sample, string CommandLine) ponger)
    {
        using var pingNic = new NetDevice("net0", sw.CreatePort(), PhysicalAddress.Parse("02-00-00-00-00-01"));
        using var pongNic = new NetDevice("net0", sw.CreatePort(), PhysicalAddress.Parse("02-00-00-00-00-02"));
        (RunResult, string)? pong = null;
        var thread = new Thread(() => pong = Run(guestDir, ponger.Sample, [pongNic], ponger.CommandLine));
        thread.Start();
        var ping = Run(guestDir, "net", [pingNic], pingCommandLine);
        Check(thread.Join(TimeSpan.FromSeconds(150)), $"the {ponger.Sample} VM did not finish");
        CheckExited(ping);
        CheckExited(pong!.Value);
        return (ping, pong.Value);
    }

    /// <summary>The C# net driver (samples/net-cs) pongs the C pinger (samples/net role=ping) over one switch.</summary>
    private static string NetCs(string guestDir)
    {
        var sw = new NetSwitch();
        var (ping, pong) = RunPingAndPong(guestDir, sw, "role=ping rounds=200 seed=3", ("net-cs", "rounds=200"));
        Line(pong.Output, "net-cs: pong on net0 02:00:00:00:00:02 mtu 1500");
        string a = Line(ping.Output, "net: ping 200 rounds, checksum ");
        string b = Line(pong.Output, "net-cs: pong 200 rounds, checksum ");
        Check(a.Substring(31, 10) == b.Substring(34, 10), $"checksums differ: '{a}' vs '{b}'");
        return $"{b}; switch forwarded {sw.FramesForwarded}";
    }

    /// <summary>The C# console ring driver (samples/echo-cs) answers input lines uppercased until QUIT.</summary>
    private static string EchoCs(string guestDir)
    {
        using var output = new MemoryStream();
        using var input = new MemoryStream(Encoding.ASCII.GetBytes("hello from kvm\nMixed 42\nQUIT\n"));
        (RunResult, string) run;
        using (var console = new ConsoleDevice("console0", output, input))
        {
            run = Run(guestDir, "echo-cs", [console]);
        }
        CheckExited(run);
        string ring = Encoding.ASCII.GetString(output.ToArray());
        Check(ring == "READY\nECHO HELLO FROM KVM\nECHO MIXED 42\nBYE\n", $"console ring: {ring.ReplaceLineEndings(" | ")}");
        return Line(run.Item2, "echo-cs: 2 lines echoed");
    }

    private static string Kv(string guestDir, string disk, string input)
    {
        using var output = new MemoryStream();
        using var inputStream = new MemoryStream(Encoding.ASCII.GetBytes(input));
        (RunResult, string) run;
        using (var console = new ConsoleDevice("console0", output, inputStream))
        using (var block = new BlockDevice("disk0", disk))
        {
            run = Run(guestDir, "kv", [console, block]);
        }
        CheckExited(run);
        return Encoding.ASCII.GetString(output.ToArray());
    }

    private static string KvRestart(string guestDir)
    {
        string path = TempDisk(1 << 20, 0);
        try
        {
            string first = Kv(guestDir, path, "SET greeting hello from kvm\nSET n 42\nQUIT\n");
            Check(first.StartsWith("READY 0 keys\nOK\nOK\nBYE\n", StringComparison.Ordinal), $"first run: {first.ReplaceLineEndings(" | ")}");
            string second = Kv(guestDir, path, "GET greeting\nGET n\nQUIT\n");
            Check(second.StartsWith("READY 2 keys\nVALUE hello from kvm\nVALUE 42\nBYE\n", StringComparison.Ordinal), $"second run: {second.ReplaceLineEndings(" | ")}");
            return "second run read back both keys the first run set";
        }
        finally
        {
            File.Delete(path);
        }
    }
}
