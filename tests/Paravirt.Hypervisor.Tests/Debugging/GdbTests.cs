using Paravirt.Hypervisor.Debugging.Gdb;

namespace Paravirt.Hypervisor.Tests.Debugging;

/// <summary>The GDB stub with the real gdb (Debian's), on the emulator: what a guest author does.</summary>
public sealed class GdbTests
{
    [GdbFact]
    public void Gdb_breaks_in_main_of_hello_steps_prints_a_local_reads_rip_and_the_guest_exits_with_7()
    {
        (int gdbExit, string gdb, string stdout) = HelloToItsEnd(["--backend", "emulator"],
            "break main", "continue", "next", "print version", "info registers rip", "continue");

        Assert.True(gdbExit == 0, gdb);
        Assert.Contains("Breakpoint 1, main () at ", gdb, StringComparison.Ordinal);
        Assert.Contains("hello.c:", gdb, StringComparison.Ordinal);
        // After `next` over pv_version(), the local holds the host's packed ABI version.
        Assert.Contains($"$1 = {AbiVersion.Current.Packed}", gdb, StringComparison.Ordinal);
        Assert.Matches(@"rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <main\+\d+>", gdb);
        Assert.Contains("Hello from a Paravirt unikernel!", stdout, StringComparison.Ordinal);
    }

    [GdbFact]
    public void The_issues_done_when_command_stops_in_main_and_the_guest_finishes_with_7()
    {
        // gdb -batch -ex 'target remote ...' -ex 'break main' -ex continue -ex 'info registers rip' -ex continue
        (_, string gdb, _) = HelloToItsEnd([], "break main", "continue", "info registers rip", "continue");
        Assert.Contains("Breakpoint 1, main ()", gdb, StringComparison.Ordinal);
        Assert.Contains("<main>", gdb, StringComparison.Ordinal);
    }

    [GdbFact]
    public void Gdb_breaks_in_main_of_a_Linux_application_on_the_Linux_personality_and_sees_its_exit_status()
    {
        // The application runs at CPL 3 on the library OS's page tables: the breakpoint is at its linear address and
        // gdb reads its memory through those tables. linux-c has symbols but no DWARF: argc is rdi at main's entry.
        string image = RepoPaths.LinuxExecutable("linux-c");
        (int gdbExit, string gdb, int exit, string stdout, string stderr) = GdbKit.Debug(image, ["--backend", "emulator"],
            "break main", "continue", "print $rdi", "x/2i $pc", "continue");

        Assert.True(gdbExit == 0, gdb);
        Assert.Contains("Breakpoint 1, ", gdb, StringComparison.Ordinal);
        Assert.Contains("in main ()", gdb, StringComparison.Ordinal);
        Assert.Contains("$1 = 1", gdb, StringComparison.Ordinal);
        Assert.Matches(@"=> 0x[0-9a-f]+ <main(\+\d+)?>:", gdb); // the code at pc, read through the guest's page tables
        Assert.Contains("exited with code 03", gdb, StringComparison.Ordinal);
        Assert.True(exit == 3, $"paravirt exited with {exit}\n{stderr}");
        Assert.Contains("linux-c: 0 argument(s):", stdout, StringComparison.Ordinal);
    }

    [GdbFact]
    public void A_Linux_application_killed_by_a_signal_stops_in_gdb_at_its_faulting_instruction()
    {
        string gdb = StopsAtSignal(RepoPaths.LinuxExecutable("linux-edge"), ["--backend", "emulator"], "SIGSEGV", 139, "killed by SIGSEGV",
            "x/i $pc", "backtrace");
        Assert.Matches(@"=> 0x[0-9a-f]+ <main\+\d+>:\s+movl\s+\$0x1,\(%rax\)", gdb); // the NULL store, with the application's registers
        Assert.Matches(@"#0 .*in main \(\)", gdb);
    }

    [GdbFact]
    public void A_crash_under_gdb_stops_with_the_signal_in_the_faulting_function_then_ends_the_run()
    {
        string gdb = StopsAtSignal(RepoPaths.GuestImage("crash"), ["--cmdline", "what=divide"], "SIGFPE", 70, "divide error (#DE)",
            "backtrace", "print count");
        Assert.Matches(@"#0 .*average .*crash\.c:\d+", gdb);
        Assert.Matches(@"#1 .*compute .*crash\.c:\d+", gdb);
        Assert.Contains("$1 = 0", gdb, StringComparison.Ordinal);
        Assert.Contains("Program terminated with signal SIGFPE", gdb, StringComparison.Ordinal);
    }

    [GdbFact]
    public void A_core_file_opens_in_gdb_with_the_signal_registers_and_backtrace()
    {
        string image = RepoPaths.GuestImage("crash");
        string core = Path.Combine(Path.GetTempPath(), $"paravirt-test-{Guid.NewGuid():N}.core");
        try
        {
            GuestImage guest = ElfLoader.LoadFile(image, AbiVersion.Current);
            RunResult result = HelloGuestTests.EmulatorRunner().Run(guest, new GuestRunOptions
            {
                Backend = "emulator",
                CommandLine = "what=divide",
                CoreFile = core,
                Timeout = TimeSpan.FromSeconds(30),
            });
            Assert.Equal(RunOutcome.Faulted, result.Outcome);
            Assert.Equal(core, result.CoreFile);

            (int exit, string gdb) = GdbKit.Batch(image, core, "backtrace", "info registers rip", "print $_siginfo.si_signo", "print $_siginfo._sifields._sigfault.si_addr");
            Assert.True(exit == 0, gdb);
            Assert.DoesNotContain("may not match", gdb, StringComparison.Ordinal);
            Assert.Contains("Program terminated with signal SIGFPE", gdb, StringComparison.Ordinal);
            Assert.Matches(@"#0 .*average .*crash\.c:\d+", gdb);
            Assert.Matches(@"#1 .*compute .*crash\.c:\d+", gdb);
            Assert.Matches(@"#2 .*main \(\) at .*crash\.c:\d+", gdb);
            Assert.Contains($"0x{result.Crash!.Registers.Rip:x}", gdb, StringComparison.Ordinal);
            Assert.Contains("$1 = 8", gdb, StringComparison.Ordinal); // SIGFPE
            Assert.Contains($"$2 = (void *) 0x{result.Crash.Registers.Rip:x}", gdb, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(core);
        }
    }

    [GdbFact]
    public void Gdb_stops_at_a_write_watchpoint_and_at_a_hardware_breakpoint()
    {
        // Break (with a debug-register breakpoint) where hello computes the date, return to main, and watch the word on
        // top of main's stack: the next call overwrites it with a return address.
        (_, string gdb, _) = HelloToItsEnd(["--backend", "emulator"], // (KVM under PVM refuses them)
            "hbreak civil_from_days", "continue", "finish", "watch -l *(unsigned *)$rsp", "continue", "delete", "continue");
        Assert.Contains("Hardware assisted breakpoint 1 at", gdb, StringComparison.Ordinal);
        Assert.Matches(@"Breakpoint 1, .*civil_from_days", gdb);
        Assert.Contains("Hardware watchpoint 2: -location", gdb, StringComparison.Ordinal);
        Assert.Contains("Old value = 0", gdb, StringComparison.Ordinal);
        Assert.Contains("New value = ", gdb, StringComparison.Ordinal);
    }

    [Fact]
    public void Ctrl_c_stops_a_spinning_guest_and_kill_ends_the_run()
    {
        using var guest = new RunUnderStub(Spin());
        using (var client = new RspClient(guest.Stub.EndPoint))
        {
            Assert.StartsWith("T05", client.Ask("?"), StringComparison.Ordinal);
            client.Send("vCont;c");
            Thread.Sleep(200); // the guest spins
            client.SendRaw([0x03]);
            Assert.StartsWith("T02", client.Receive(), StringComparison.Ordinal); // SIGINT
            string rip = client.Ask("p10");
            Assert.Equal("0000100000000000", rip); // 0x100000, little-endian: still on the jmp $
            client.Send("vKill;1");
            Assert.Equal("OK", client.Receive());
        }
        RunResult result = guest.Finish(TimeSpan.FromSeconds(30));
        Assert.Equal(RunOutcome.Canceled, result.Outcome);
        Assert.Contains("debugger killed", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Malformed_oversized_and_unknown_packets_get_error_or_empty_replies_and_the_stub_keeps_answering()
    {
        using var guest = new RunUnderStub(Spin());
        using (var client = new RspClient(guest.Stub.EndPoint))
        {
            Assert.Equal("", client.Ask("qNoSuchThing"));
            Assert.Equal("", client.Ask("vNoSuchThing;1"));
            Assert.StartsWith("E", client.Ask("m1000"), StringComparison.Ordinal);              // no length
            Assert.StartsWith("E", client.Ask("mzz,10"), StringComparison.Ordinal);             // not hex
            Assert.StartsWith("E", client.Ask("m0,ffffffffffffffffff"), StringComparison.Ordinal); // 72-bit length
            Assert.StartsWith("E", client.Ask("mdead00000000,10"), StringComparison.Ordinal);   // unmapped
            Assert.StartsWith("E", client.Ask("M100000,4:0102"), StringComparison.Ordinal);     // short data
            Assert.StartsWith("E", client.Ask("M100000,2:zz00"), StringComparison.Ordinal);     // bad hex
            Assert.StartsWith("E", client.Ask("Pffff=00"), StringComparison.Ordinal);           // no such register
            Assert.StartsWith("E", client.Ask("P0=0102"), StringComparison.Ordinal);            // wrong size
            Assert.StartsWith("E", client.Ask("Z0,zz,1"), StringComparison.Ordinal);
            Assert.Equal("", client.Ask("Z9,100000,1"));                                         // unknown type
            Assert.StartsWith("E", client.Ask("X100000,4:"), StringComparison.Ordinal);         // length mismatch
            // A huge length answers with what fits one packet, never a host allocation of that size.
            Assert.True(client.Ask("m100000,7fffffff").Length <= GdbCommandHandler.PacketSize);
            client.SendRaw("$g#00");                                                              // bad checksum: a nak
            client.SendRaw("garbage without a frame");
            client.SendRaw("$" + new string('A', 70_000) + "#00");                               // too long
            Assert.StartsWith("T05", client.Ask("?"), StringComparison.Ordinal);               // still answering
            Assert.Equal("OK", client.Ask("M100000,2:ebfe"));                                    // writes the same bytes back
            client.Send("k");
        }
        Assert.Equal(RunOutcome.Canceled, guest.Finish(TimeSpan.FromSeconds(30)).Outcome);
    }

    [Fact]
    public void Detaching_lets_the_guest_run_to_its_end()
    {
        var console = new MemoryStream();
        using var guest = new RunUnderStub(ElfLoader.LoadFile(RepoPaths.GuestImage("hello"), AbiVersion.Current), console);
        using (var client = new RspClient(guest.Stub.EndPoint))
        {
            Assert.StartsWith("T05", client.Ask("?"), StringComparison.Ordinal);
            Assert.Equal("OK", client.Ask("Z0,100000,1")); // a breakpoint at the entry, removed by the detach
            Assert.Equal("OK", client.Ask("D"));
        }
        RunResult result = guest.Finish(TimeSpan.FromSeconds(60));
        Assert.Equal(RunOutcome.Exited, result.Outcome);
        Assert.Equal(7, result.ExitStatus);
        Assert.Contains("Hello from a Paravirt unikernel!", Encoding.UTF8.GetString(console.ToArray()), StringComparison.Ordinal);
    }

    /// <summary>
    /// Debugs samples/hello with gdb's <paramref name="commands"/>; the guest must run to its end under gdb (gdb sees
    /// exit code 7, paravirt exits with 7). Returns gdb's exit status and transcript, and the guest's output.
    /// </summary>
    private static (int GdbExit, string Gdb, string Stdout) HelloToItsEnd(string[] paravirtArgs, params string[] commands)
    {
        (int gdbExit, string gdb, int exit, string stdout, string stderr) = GdbKit.Debug(RepoPaths.GuestImage("hello"), paravirtArgs, commands);
        Assert.Contains("exited with code 07", gdb, StringComparison.Ordinal);
        Assert.True(exit == 7, $"paravirt exited with {exit}\n{stderr}");
        return (gdbExit, gdb, stdout);
    }

    /// <summary>
    /// Debugs <paramref name="image"/> with gdb: continue, then <paramref name="commands"/> at the stop, then continue to
    /// the end. gdb must report <paramref name="signal"/>, the run end with <paramref name="exit"/> and stderr say
    /// <paramref name="stderr"/>; returns gdb's transcript.
    /// </summary>
    private static string StopsAtSignal(string image, string[] paravirtArgs, string signal, int exit, string stderr, params string[] commands)
    {
        (_, string gdb, int exitCode, _, string error) = GdbKit.Debug(image, paravirtArgs, ["continue", .. commands, "continue"]);
        Assert.Contains($"Program received signal {signal}", gdb, StringComparison.Ordinal);
        Assert.Equal(exit, exitCode);
        Assert.Contains(stderr, error, StringComparison.Ordinal);
        return gdb;
    }

    /// <summary>A guest that spins on <c>jmp $</c> at its entry.</summary>
    private static GuestImage Spin() => ElfLoader.Parse(RunLimitsTests.CodeImage(0xEB, 0xFE), AbiVersion.Current);

    /// <summary>
    /// A guest run on the emulator on its own thread under a GDB stub on a loopback port (held at its first instruction
    /// until a client continues it); the stub is closed on dispose.
    /// </summary>
    private sealed class RunUnderStub : IDisposable
    {
        private readonly Thread _run;
        private RunResult? _result;

        public RunUnderStub(GuestImage image, Stream? console = null)
        {
            Stub = GdbStub.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            _run = new Thread(() => _result = HelloGuestTests.EmulatorRunner().Run(image, new GuestRunOptions
            {
                Backend = "emulator",
                Debugger = Stub,
                ConsoleOutput = console,
                Timeout = TimeSpan.FromSeconds(60),
            }));
            _run.Start();
        }

        public GdbStub Stub { get; }

        /// <summary>Waits at most <paramref name="timeout"/> for the run to end and returns its result.</summary>
        public RunResult Finish(TimeSpan timeout)
        {
            Assert.True(_run.Join(timeout), "the run did not end");
            return _result!;
        }

        public void Dispose() => Stub.Dispose();
    }
}
