namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>
/// Boots the C# unikernels (samples/hello-cs, samples/subset-cs, samples/blk-cs, samples/echo-cs, samples/net-cs: C# compiled by NativeAOT against the guest core
/// library, built by the normal build) on the emulator, with the same expectations as their C counterparts.
/// </summary>
public sealed class CSharpGuestTests() : TestWithTempDirectory("csguest")
{
    private string Disk(int bytes, int seed)
    {
        string path = Path.Combine(Dir, $"disk{seed}.img");
        byte[] data = new byte[bytes];
        new Random(seed).NextBytes(data);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static string Fnv1a64(byte[] data)
    {
        ulong h = 0xcbf29ce484222325;
        foreach (byte b in data)
        {
            h = (h ^ b) * 0x100000001b3;
        }
        return $"0x{h:x16}";
    }

    private static (RunResult Result, string Output) Run(string guest, string commandLine = "", ulong memory = 64UL << 20)
    {
        GuestImage image = ElfLoader.LoadFile(RepoPaths.GuestImage(guest), AbiVersion.Current);
        using var console = new MemoryStream();
        RunResult result = HelloGuestTests.EmulatorRunner().Run(image, new GuestRunOptions
        {
            Backend = "emulator",
            ConsoleOutput = console,
            CommandLine = commandLine,
            MemorySize = memory,
            Timeout = TimeSpan.FromSeconds(60),
        });
        return (result, Encoding.UTF8.GetString(console.ToArray()));
    }

    [Fact]
    public void Hello_cs_greets_checks_the_abi_through_the_version_hypercall_and_exits_with_7()
    {
        (RunResult result, string output) = Run("hello-cs");

        Assert.True(result.Outcome == RunOutcome.Exited, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.Equal(7, result.ExitStatus);
        Assert.Contains("Hello from a C# Paravirt unikernel!", output, StringComparison.Ordinal);
        Assert.Contains($"hello-cs: ABI {AbiVersion.Current} (host {AbiVersion.Current})", output, StringComparison.Ordinal);
        Assert.Contains($"wall clock {DateTime.UtcNow:yyyy-MM-dd}", output, StringComparison.Ordinal);
        Assert.Contains("hello-cs: exiting with status 7", output, StringComparison.Ordinal);
        Assert.True(result.Statistics.Hypercalls.ContainsKey((uint)HypercallCode.Version), "hello-cs checks the ABI version through a hypercall");
        Assert.True(result.Statistics.Hypercalls.ContainsKey((uint)HypercallCode.ConsoleWrite), "hello-cs writes through the console hypercall");
    }

    [Fact]
    public void Hello_cs_is_a_freestanding_elf_linked_at_one_mebibyte_with_the_abi_note()
    {
        string path = RepoPaths.GuestImage("hello-cs");
        byte[] elf = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }, elf[..4]);
        Assert.Equal(2, BitConverter.ToUInt16(elf, 16));    // ET_EXEC
        Assert.Equal(62, BitConverter.ToUInt16(elf, 18));   // EM_X86_64
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        Assert.True(image.Entry >= EntryConvention.ImageMinAddress, $"entry 0x{image.Entry:x}");
        Assert.Equal(AbiVersion.Current, image.AbiVersion);
    }

    [Fact]
    public void Subset_cs_passes_every_check_of_the_supported_csharp_subset()
    {
        (RunResult result, string output) = Run("subset-cs");

        Assert.True(result.Outcome == RunOutcome.Exited, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.DoesNotContain("FAIL", output, StringComparison.Ordinal);
        foreach (string check in new[] { "statics", "structs", "classes-virtual", "static-objects", "static-object-assigned", "casts", "strings", "arrays", "unsafe", "generics", "span", "enums-switch", "int64", "nullable-abi", "interfaces", "function-pointers", "hypercalls" })
        {
            Assert.Contains($"ok {check}\n", output, StringComparison.Ordinal);
        }
        Assert.Contains("subset-cs: 0 failures", output, StringComparison.Ordinal);
        Assert.Equal(0, result.ExitStatus);
    }

    [Theory]
    [InlineData("fail-index", "panic: IndexOutOfRangeException")]
    [InlineData("fail-oom", "panic: out of memory: C# allocation of")]
    public void A_runtime_error_in_a_csharp_guest_panics_with_a_report_that_names_the_method(string commandLine, string message)
    {
        (RunResult result, string output) = Run("subset-cs", commandLine);

        Assert.True(result.Outcome == RunOutcome.Faulted, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.Contains(message, output, StringComparison.Ordinal); // the console still gets "panic: ..."
        CrashReport crash = Assert.IsType<CrashReport>(result.Crash);
        Assert.Equal(GuestFaultKind.Panic, crash.Fault.Kind);
        Assert.Contains(message["panic: ".Length..], crash.PanicMessage, StringComparison.Ordinal);
        // The backtrace names the C# methods (NativeAOT's symbols) with their source files (ILC's line tables).
        Assert.Contains(crash.Frames, f => f.Function == "subset_cs_Program__Main" && f.File?.EndsWith("Program.cs", StringComparison.Ordinal) == true);
        if (commandLine == "fail-index")
        {
            // Attributed to the method whose bounds check failed, past FailFast and the throw helper.
            Assert.Equal("subset_cs_Program__Main", crash.Location?.Function);
            Assert.Contains(crash.Frames, f => f.Function == "Paravirt_Guest_CoreLib_Paravirt_Guest_Guest__FailFast");
        }
    }

    [Fact]
    public void Hello_cs_through_the_cli_exits_with_7()
    {
        (int code, _, string stderr, byte[] guest) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello-cs"), "--backend", "emulator");
        string output = Encoding.UTF8.GetString(guest);
        Assert.True(code == 7, $"exit {code}\n{stderr}\n{output}");
        Assert.Contains("Hello from a C# Paravirt unikernel!", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Blk_cs_checksums_the_disk_through_the_csharp_block_driver_and_writes_flushes_and_verifies_8_sectors()
    {
        string path = Disk(1 << 20, 11);
        string expected = Fnv1a64(File.ReadAllBytes(path));
        DevicesGuestTests.GuestRun run;
        using (var disk = new BlockDevice("disk0", path))
        {
            run = DevicesGuestTests.Run("blk-cs", [disk]);
        }

        Assert.True(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == 0, $"{run.Result.Outcome} {run.Result.ExitStatus}: {run.Result.Message}\n{run.Output}");
        Assert.Contains($"blk-cs: disk0: 2048 sectors, fnv1a64 {expected}", run.Output, StringComparison.Ordinal);
        Assert.Contains("blk-cs: wrote, flushed and verified 8 sectors", run.Output, StringComparison.Ordinal);
        byte[] image = File.ReadAllBytes(path);
        for (int i = 0; i < 4096; i++)
        {
            Assert.True(image[i] == (byte)(i * 7 + 3), $"byte {i} is 0x{image[i]:x2}");
        }
        long doorbells = run.Result.Statistics.Hypercalls.GetValueOrDefault((uint)HypercallCode.EventSend);
        Assert.InRange(doorbells, 1, 16); // 1 MiB read = one request; write, flush, read back: a few doorbells in all
    }

    [Fact]
    public void Blk_cs_on_a_read_only_disk_checksums_it_and_has_its_write_refused()
    {
        string path = Disk(64 * 1024, 12);
        byte[] before = File.ReadAllBytes(path);
        using var disk = new BlockDevice("disk0", path, readOnly: true);
        DevicesGuestTests.GuestRun run = DevicesGuestTests.Run("blk-cs", [disk]);

        Assert.True(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == 0, $"{run.Result.Outcome} {run.Result.ExitStatus}: {run.Result.Message}\n{run.Output}");
        Assert.Contains($"blk-cs: disk0: 128 sectors, fnv1a64 {Fnv1a64(before)} (read-only)", run.Output, StringComparison.Ordinal);
        Assert.Contains("blk-cs: read-only disk: write refused", run.Output, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Fact]
    public void Echo_cs_answers_console_ring_lines_uppercased_until_quit()
    {
        using var output = new MemoryStream();
        using var input = new MemoryStream(Encoding.ASCII.GetBytes("hello world\r\nMixed Case 123\n\n" + new string('x', 300) + "\nQUIT\nnot read\n"));
        DevicesGuestTests.GuestRun run;
        using (var console = new ConsoleDevice("console0", output, input))
        {
            run = DevicesGuestTests.Run("echo-cs", [console]);
        }
        string ring = Encoding.ASCII.GetString(output.ToArray());

        Assert.True(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == 0, $"{run.Result.Outcome} {run.Result.ExitStatus}: {run.Result.Message}\n{run.Output}\n{ring}");
        Assert.Equal("READY\nECHO HELLO WORLD\nECHO MIXED CASE 123\nECHO \nECHO " + new string('X', 255) + "\nBYE\n", ring);
        Assert.Contains("echo-cs: 4 lines echoed", run.Output, StringComparison.Ordinal);
        Assert.True(run.Result.Statistics.Hypercalls.ContainsKey((uint)HypercallCode.ConsoleAttach), "echo-cs attaches the console ring");
    }

    [Fact]
    public void Net_cs_pongs_the_c_net_pinger_on_one_switch_with_matching_checksums()
    {
        var sw = new NetSwitch();
        using var pingNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 0);
        using var pongNic = new NetDevice("net0", sw.CreatePort(), vmIndex: 1);
        (DevicesGuestTests.GuestRun ping, DevicesGuestTests.GuestRun pong) =
            DevicesGuestTests.RunTwo(("net", pingNic, "role=ping rounds=40 seed=9"), ("net-cs", pongNic, "rounds=40"));

        Assert.True(ping.Result.Outcome == RunOutcome.Exited && ping.Result.ExitStatus == 0, $"ping: {ping.Result.Outcome} {ping.Result.ExitStatus}: {ping.Result.Message}\n{ping.Output}");
        Assert.True(pong.Result.Outcome == RunOutcome.Exited && pong.Result.ExitStatus == 0, $"net-cs: {pong.Result.Outcome} {pong.Result.ExitStatus}: {pong.Result.Message}\n{pong.Output}");
        string mac = string.Join(':', pongNic.MacAddress.GetAddressBytes().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Contains($"net-cs: pong on net0 {mac} mtu 1500", pong.Output, StringComparison.Ordinal);
        string pingSum = DevicesGuestTests.Checksum(ping.Output, "net: ping 40 rounds, checksum ");
        string pongSum = DevicesGuestTests.Checksum(pong.Output, "net-cs: pong 40 rounds, checksum ");
        Assert.Equal(pingSum, pongSum);
        Assert.True(pongNic.TxFrames >= 40, $"net-cs sent {pongNic.TxFrames} frames");
    }

    [Theory]
    [InlineData("blk-cs", "no block device disk0")]
    [InlineData("echo-cs", "no console console0")]
    [InlineData("net-cs", "no net device net0")]
    public void A_driver_sample_without_its_device_exits_1_with_a_reason(string sample, string reason)
    {
        DevicesGuestTests.GuestRun run = DevicesGuestTests.Run(sample, []);
        Assert.Equal(1, run.Result.ExitStatus);
        Assert.Contains($"{sample}: FAILED: {reason}", run.Output, StringComparison.Ordinal);
    }
}
