using System.IO.Pipelines;
using Xunit.Abstractions;

namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>
/// The device samples (samples/blk, samples/net, samples/kv, built by the normal build) run end to end on the
/// emulator against the real host devices: temp disk files, an in-memory switch between two VMs on two threads,
/// console input and output streams.
/// </summary>
public sealed class DevicesGuestTests(ITestOutputHelper log) : TestWithTempDirectory("devices")
{
    internal static GuestRunner Runner() =>
        new(new BackendSelector([new EmulatorBackend()]), new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]));

    internal sealed record GuestRun(RunResult Result, string Output);

    internal static GuestRun Run(string sample, IReadOnlyList<VirtualDevice> devices, string commandLine = "", int timeoutSeconds = 120)
    {
        GuestImage image = ElfLoader.LoadFile(RepoPaths.GuestImage(sample), AbiVersion.Current);
        using var console = new MemoryStream();
        RunResult result = Runner().Run(image, new GuestRunOptions
        {
            Backend = "emulator",
            ConsoleOutput = console,
            Devices = devices,
            CommandLine = commandLine,
            Timeout = TimeSpan.FromSeconds(timeoutSeconds),
        });
        return new GuestRun(result, Encoding.UTF8.GetString(console.ToArray()));
    }

    private string Disk(string name, long bytes, byte fill = 0)
    {
        string path = Path.Combine(Dir, name);
        using FileStream f = File.Create(path);
        if (fill == 0)
        {
            f.SetLength(bytes);
        }
        else
        {
            byte[] block = new byte[64 * 1024];
            Array.Fill(block, fill);
            for (long done = 0; done < bytes; done += block.Length)
            {
                f.Write(block, 0, (int)Math.Min(block.Length, bytes - done));
            }
        }
        return path;
    }

    private void AssertExited(GuestRun run, int status = 0)
    {
        log.WriteLine(run.Output);
        Assert.True(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == status,
            $"{run.Result.Outcome} status {run.Result.ExitStatus}: {run.Result.Message}\n{run.Output}");
    }

    [Fact]
    public void Blk_writes_flushes_reads_back_and_verifies_a_4_MiB_disk()
    {
        string path = Disk("rw.img", 4 << 20, fill: 0xA5);
        using var disk = new BlockDevice("disk0", path);
        GuestRun run = Run("blk", [disk], "seed=7 requests=256");

        AssertExited(run);
        Assert.Contains("blk: 256 requests in", run.Output, StringComparison.Ordinal);
        Assert.Contains("flush ok, discard ok", run.Output, StringComparison.Ordinal);
        Assert.Contains("blk: OK seed=7", run.Output, StringComparison.Ordinal);
        Assert.True(disk.BytesWritten > 0 && disk.BytesRead >= 4 << 20, $"written {disk.BytesWritten}, read {disk.BytesRead}");
        // Many requests per doorbell: the writes go in batches of up to 32, the read-back 4 MiB (4 requests) at a time.
        long doorbells = run.Result.Statistics.Hypercalls.GetValueOrDefault((uint)HypercallCode.EventSend);
        log.WriteLine($"event_send: {doorbells}");
        Assert.InRange(doorbells, 2, 256 / 4);
    }

    [Fact]
    public void Blk_writes_reach_the_file_with_the_guest_pattern()
    {
        string path = Disk("pattern.img", 1 << 20);
        using (var disk = new BlockDevice("disk0", path))
        {
            AssertExited(Run("blk", [disk], "seed=3 requests=64"));
        }
        // The guest's sector pattern is a pure function of (seed, sector); at least some sectors were written,
        // so the file must no longer be all zeros, and every nonzero sector must hold the pattern.
        byte[] image = File.ReadAllBytes(path);
        int patterned = 0;
        for (int s = 0; s < image.Length / 512; s++)
        {
            ReadOnlySpan<byte> sector = image.AsSpan(s * 512, 512);
            if (!sector.ContainsAnyExcept((byte)0))
            {
                continue;
            }
            for (int w = 0; w < 64; w++)
            {
                Assert.Equal(Pattern(3, (ulong)s, (ulong)w), BitConverter.ToUInt64(sector.Slice(w * 8, 8)));
            }
            patterned++;
        }
        Assert.True(patterned > 16, $"only {patterned} sectors hold data");
    }

    private static ulong Pattern(ulong seed, ulong s, ulong w)
    {
        ulong z = unchecked((seed * 0x9E3779B97F4A7C15ul) + (s << 7) + w);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ul);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBul);
        return z ^ (z >> 31);
    }

    [Fact]
    public void Blk_on_a_read_only_disk_sees_writes_and_discards_refused_and_the_file_is_unchanged()
    {
        string path = Disk("ro.img", 1 << 20, fill: 0x3C);
        byte[] before = File.ReadAllBytes(path);
        using var disk = new BlockDevice("disk0", path, readOnly: true);
        GuestRun run = Run("blk", [disk]);

        AssertExited(run);
        Assert.Contains("read-only disk: reads work, write and discard refused with PV_STATUS_READ_ONLY (-30)", run.Output, StringComparison.Ordinal);
        Assert.Equal(0, disk.BytesWritten);
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Fact]
    public void Blk_without_a_disk_exits_1_with_a_reason()
    {
        GuestRun run = Run("blk", []);
        AssertExited(run, 1);
        Assert.Contains("no block device disk0", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Net_ping_and_pong_on_one_switch_exchange_frames_with_matching_checksums()
    {
        RunNet("role=ping rounds=50 seed=5", "role=pong rounds=50 seed=5", net =>
        {
            string pingSum = Checksum(net.First.Output, "net: ping 50 rounds, checksum ");
            string pongSum = Checksum(net.Second.Output, "net: pong 50 rounds, checksum ");
            Assert.Equal(pingSum, pongSum);
            Assert.True(net.FirstNic.TxFrames >= 50 && net.SecondNic.TxFrames >= 50, $"tx ping {net.FirstNic.TxFrames}, pong {net.SecondNic.TxFrames}");
            Assert.True(net.Switch.FramesForwarded >= 98, $"forwarded {net.Switch.FramesForwarded}");
        });
    }

    [Fact]
    public void Net_with_one_command_line_for_both_guests_picks_ping_and_pong_by_MAC()
    {
        RunNet("rounds=30", "rounds=30", net =>
        {
            bool firstPings = net.FirstNic.MacAddress.GetAddressBytes().AsSpan().SequenceCompareTo(net.SecondNic.MacAddress.GetAddressBytes()) < 0;
            (GuestRun pinger, GuestRun ponger) = firstPings ? (net.First, net.Second) : (net.Second, net.First);
            Assert.Contains("net: auto role: ping", pinger.Output, StringComparison.Ordinal);
            Assert.Contains("net: auto role: pong", ponger.Output, StringComparison.Ordinal);
            Assert.Equal(Checksum(pinger.Output, "net: ping 30 rounds, checksum "), Checksum(ponger.Output, "net: pong 30 rounds, checksum "));
        });
    }

    /// <summary>Two VMs of the net sample, their NICs and the switch that joins them.</summary>
    private sealed record NetPair(NetSwitch Switch, NetDevice FirstNic, GuestRun First, NetDevice SecondNic, GuestRun Second);

    /// <summary>
    /// Runs the net sample in two VMs at once, on one switch (NICs with VM index 0 and 1), with these command lines;
    /// both must exit 0; then <paramref name="check"/> looks at the runs, the NICs and the switch.
    /// </summary>
    private void RunNet(string firstCommandLine, string secondCommandLine, Action<NetPair> check)
    {
        var sw = new NetSwitch();
        using var firstNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 0);
        using var secondNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 1);
        (GuestRun first, GuestRun second) = RunTwo(("net", firstNic, firstCommandLine), ("net", secondNic, secondCommandLine));
        AssertExited(first);
        AssertExited(second);
        check(new NetPair(sw, firstNic, first, secondNic, second));
    }

    /// <summary>
    /// Runs two VMs at once, each a sample with one NIC and its command line: the second on its own thread, the
    /// first on this one. Returns both runs once both have ended.
    /// </summary>
    internal static (GuestRun First, GuestRun Second) RunTwo((string Sample, NetDevice Nic, string CommandLine) first, (string Sample, NetDevice Nic, string CommandLine) second)
    {
        GuestRun? other = null;
        var thread = new Thread(() => other = Run(second.Sample, [second.Nic], second.CommandLine));
        thread.Start();
        GuestRun run = Run(first.Sample, [first.Nic], first.CommandLine);
        Assert.True(thread.Join(TimeSpan.FromSeconds(150)), $"the second VM ({second.Sample} {second.CommandLine}) did not finish");
        return (run, other!);
    }

    /// <summary>The ten characters after <paramref name="prefix"/> in a guest's output (a checksum it printed).</summary>
    internal static string Checksum(string output, string prefix)
    {
        int at = output.IndexOf(prefix, StringComparison.Ordinal);
        Assert.True(at >= 0, $"'{prefix}' missing in:\n{output}");
        return output.Substring(at + prefix.Length, 10);
    }

    private GuestRun RunKv(string diskPath, string input)
    {
        using var output = new MemoryStream();
        using var inputStream = new MemoryStream(Encoding.ASCII.GetBytes(input));
        GuestRun run;
        using (var console = new ConsoleDevice("console0", output, inputStream))
        using (var disk = new BlockDevice("disk0", diskPath))
        {
            run = Run("kv", [console, disk]);
        }
        // The console device's output is the protocol; append it to what the guest printed with pv_printf.
        return run with { Output = Encoding.ASCII.GetString(output.ToArray()) + run.Output };
    }

    [Fact]
    public void Kv_keeps_its_data_across_restarts()
    {
        string path = Disk("kv.img", 1 << 20);

        GuestRun first = RunKv(path, "SET greeting hello paravirt world\nSET n 42\nSET gone x\nDEL gone\nGET greeting\nGET missing\nQUIT\n");
        AssertExited(first);
        Assert.StartsWith("READY 0 keys\nOK\nOK\nOK\nOK\nVALUE hello paravirt world\nNOTFOUND\nBYE\n", first.Output, StringComparison.Ordinal);

        GuestRun second = RunKv(path, "GET greeting\nGET n\nGET gone\nCOUNT\nSET n 43\nQUIT\n");
        AssertExited(second);
        Assert.StartsWith("READY 2 keys\nVALUE hello paravirt world\nVALUE 42\nNOTFOUND\nCOUNT 2\nOK\nBYE\n", second.Output, StringComparison.Ordinal);

        GuestRun third = RunKv(path, "GET n\nQUIT\n");
        AssertExited(third);
        Assert.StartsWith("READY 2 keys\nVALUE 43\nBYE\n", third.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Kv_answers_interactively_while_the_guest_blocks_in_poll_between_requests()
    {
        string path = Disk("kvi.img", 256 << 10);
        var input = new Pipe();
        var output = new Pipe();
        using var console = new ConsoleDevice("console0", output.Writer, input.Reader);
        using var disk = new BlockDevice("disk0", path);
        Task<GuestRun> guest = Task.Run(() => Run("kv", [console, disk]));
        using var reader = new StreamReader(output.Reader.AsStream(), Encoding.ASCII);
        Stream writer = input.Writer.AsStream();

        async Task<string> Ask(string request)
        {
            if (request.Length > 0)
            {
                await Task.Delay(50); // the guest is idle in poll when the request arrives
                await writer.WriteAsync(Encoding.ASCII.GetBytes(request + "\n"));
                await writer.FlushAsync();
            }
            string? line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            return line ?? "<eof>";
        }

        Assert.Equal("READY 0 keys", await Ask(""));
        Assert.Equal("OK", await Ask("SET colour blue"));
        // kv answers OK only after its write and flush completed: the slot is in the file while the guest still runs
        // (that the flush is an fsync is the block device's contract; a test cannot observe it without a crash).
        Assert.Contains("colour\0", ReadWhileOpen(path), StringComparison.Ordinal);
        Assert.Contains("blue\0", ReadWhileOpen(path), StringComparison.Ordinal);
        Assert.Equal("VALUE blue", await Ask("GET colour"));
        Assert.Equal("OK", await Ask("SET colour green with spaces"));
        Assert.Equal("VALUE green with spaces", await Ask("GET colour"));
        Assert.Equal("OK", await Ask("DEL colour"));
        Assert.Equal("NOTFOUND", await Ask("GET colour"));
        Assert.Equal("BYE", await Ask("QUIT"));
        AssertExited(await guest.WaitAsync(TimeSpan.FromSeconds(60)));
    }

    /// <summary>
    /// Reads the image while the block device holds it open. .NET's FileShare.None is an advisory flock that every
    /// FileStream honours, so read it the way another program would: with cat.
    /// </summary>
    private static string ReadWhileOpen(string path)
    {
        using var cat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("cat", [path])
        {
            RedirectStandardOutput = true,
            StandardOutputEncoding = Encoding.Latin1,
        })!;
        string bytes = cat.StandardOutput.ReadToEnd();
        cat.WaitForExit();
        Assert.Equal(0, cat.ExitCode);
        return bytes;
    }

    [Fact]
    public void Kv_drops_a_corrupted_slot_and_keeps_the_others()
    {
        string path = Disk("kvc.img", 1 << 20);
        AssertExited(RunKv(path, "SET a 1\nSET b 2\nQUIT\n"));

        // Flip a byte in the value of every used slot but one: find slots by their magic "KVS1".
        byte[] image = File.ReadAllBytes(path);
        var used = new List<int>();
        for (int s = 1; s < image.Length / 512; s++)
        {
            if (BitConverter.ToUInt32(image, s * 512) == 0x4B565331u && BitConverter.ToUInt32(image, (s * 512) + 4) == 1)
            {
                used.Add(s);
            }
        }
        Assert.Equal(2, used.Count);
        image[(used[0] * 512) + 16 + 64] ^= 0xFF;
        File.WriteAllBytes(path, image);

        GuestRun run = RunKv(path, "COUNT\nQUIT\n");
        AssertExited(run);
        Assert.StartsWith("READY 1 keys\nCOUNT 1\nBYE\n", run.Output, StringComparison.Ordinal);
        Assert.Contains("kv: 1 corrupt slots dropped", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Kv_answers_errors_for_bad_requests()
    {
        string path = Disk("kve.img", 256 << 10);
        GuestRun run = RunKv(path, "FROB x\nGET\nSET " + new string('k', 70) + " v\nQUIT\n");
        AssertExited(run);
        Assert.StartsWith("READY 0 keys\nERR unknown command\nERR key must be 1..63 bytes\nERR key must be 1..63 bytes\nBYE\n", run.Output, StringComparison.Ordinal);
    }
}
