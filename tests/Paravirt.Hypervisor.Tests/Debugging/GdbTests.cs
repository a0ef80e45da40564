using Paravirt.Hypervisor.Debugging.Gdb;

namespace Paravirt.Hypervisor.Tests.Debugging;

/// <summary>The GDB stub with the real gdb (Debian's), on the emulator: what a guest author does.</summary>
public sealed class GdbTests
{
    [GdbFact]
    public void Gdb_breaks_in_main_of_hello_steps_prints_a_local_reads_rip_and_the_guest_exits_with_7()
    {
        string image = RepoPaths.GuestImage("hello");
        (int gdbExit, string gdb, int exit, string stdout, string stderr) = GdbKit.Debug(image, ["--backend", "emulator"],
            "break main", "continue", "next", "print version", "info registers rip", "continue");

        Assert.True(gdbExit == 0, gdb);
        Assert.Contains("Breakpoint 1, main () at ", gdb, StringComparison.Ordinal);
        Assert.Contains("hello.c:", gdb, StringComparison.Ordinal);
        // After `next` over pv_version(), the local holds the host's packed ABI version.
        Assert.Contains($"$1 = {AbiVersion.Current.Packed}", gdb, StringComparison.Ordinal);
        Assert.Matches(@"rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <main\+\d+>", gdb);
        Assert.Contains("exited with code 07", gdb, StringComparison.Ordinal);
        Assert.True(exit == 7, $"paravirt exited with {exit}\n{stderr}");
        Assert.Contains("Hello from a Paravirt unikernel!", stdout, StringComparison.Ordinal);
    }

    [GdbFact]
    public void The_issues_done_when_command_stops_in_main_and_the_guest_finishes_with_7()
    {
        // gdb -batch -ex 'target remote ...' -ex 'break main' -ex continue -ex 'info registers rip' -ex continue
        string image = RepoPaths.GuestImage("hello");
        (_, string gdb, int exit, _, string stderr) = GdbKit.Debug(image, [],
            "break main", "continue", "info registers rip", "continue");
        Assert.Contains("Breakpoint 1, main ()", gdb, StringComparison.Ordinal);
        Assert.Contains("<main>", gdb, StringComparison.Ordinal);
        Assert.Contains("exited with code 07", gdb, StringComparison.Ordinal);
        Assert.True(exit == 7, stderr);
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
        string image = RepoPaths.LinuxExecutable("linux-edge");
        (_, string gdb, int exit, _, string stderr) = GdbKit.Debug(image, ["--backend", "emulator"],
            "continue", "x/i $pc", "backtrace", "continue");

        Assert.Contains("Program received signal SIGSEGV", gdb, StringComparison.Ordinal);
        Assert.Matches(@"=> 0x[0-9a-f]+ <main\+\d+>:\s+movl\s+\$0x1,\(%rax\)", gdb); // the NULL store, with the application's registers
        Assert.Matches(@"#0 .*in main \(\)", gdb);
        Assert.Equal(139, exit);
        Assert.Contains("killed by SIGSEGV", stderr, StringComparison.Ordinal);
    }

    [GdbFact]
    public void A_crash_under_gdb_stops_with_the_signal_in_the_faulting_function_then_ends_the_run()
    {
        string image = RepoPaths.GuestImage("crash");
        (_, string gdb, int exit, _, string stderr) = GdbKit.Debug(image, ["--cmdline", "what=divide"],
            "continue", "backtrace", "print count", "continue");

        Assert.Contains("Program received signal SIGFPE", gdb, StringComparison.Ordinal);
        Assert.Matches(@"#0 .*average .*crash\.c:\d+", gdb);
        Assert.Matches(@"#1 .*compute .*crash\.c:\d+", gdb);
        Assert.Contains("$1 = 0", gdb, StringComparison.Ordinal);
        Assert.Contains("Program terminated with signal SIGFPE", gdb, StringComparison.Ordinal);
        Assert.Equal(70, exit);
        Assert.Contains("divide error (#DE)", stderr, StringComparison.Ordinal);
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
        string image = RepoPaths.GuestImage("hello");
        (_, string gdb, int exit, _, string stderr) = GdbKit.Debug(image, ["--backend", "emulator"], // (KVM under PVM refuses them)
            "hbreak civil_from_days", "continue", "finish", "watch -l *(unsigned *)$rsp", "continue", "delete", "continue");
        Assert.Contains("Hardware assisted breakpoint 1 at", gdb, StringComparison.Ordinal);
        Assert.Matches(@"Breakpoint 1, .*civil_from_days", gdb);
        Assert.Contains("Hardware watchpoint 2: -location", gdb, StringComparison.Ordinal);
        Assert.Contains("Old value = 0", gdb, StringComparison.Ordinal);
        Assert.Contains("New value = ", gdb, StringComparison.Ordinal);
        Assert.Contains("exited with code 07", gdb, StringComparison.Ordinal);
        Assert.True(exit == 7, stderr);
    }

    [Fact]
    public void Ctrl_c_stops_a_spinning_guest_and_kill_ends_the_run()
    {
        byte[] spin = RunLimitsTests.CodeImage(0xEB, 0xFE); // jmp $
        GuestImage image = ElfLoader.Parse(spin, AbiVersion.Current);
        using GdbStub stub = GdbStub.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        RunResult? result = null;
        var run = new Thread(() => result = HelloGuestTests.EmulatorRunner().Run(image, new GuestRunOptions
        {
            Backend = "emulator",
            Debugger = stub,
            Timeout = TimeSpan.FromSeconds(60),
        }));
        run.Start();
        using (var client = new RspClient(stub.EndPoint))
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
        Assert.True(run.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal(RunOutcome.Canceled, result!.Outcome);
        Assert.Contains("debugger killed", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Malformed_oversized_and_unknown_packets_get_error_or_empty_replies_and_the_stub_keeps_answering()
    {
        byte[] spin = RunLimitsTests.CodeImage(0xEB, 0xFE);
        GuestImage image = ElfLoader.Parse(spin, AbiVersion.Current);
        using GdbStub stub = GdbStub.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        RunResult? result = null;
        var run = new Thread(() => result = HelloGuestTests.EmulatorRunner().Run(image, new GuestRunOptions
        {
            Backend = "emulator",
            Debugger = stub,
            Timeout = TimeSpan.FromSeconds(60),
        }));
        run.Start();
        using (var client = new RspClient(stub.EndPoint))
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
        Assert.True(run.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal(RunOutcome.Canceled, result!.Outcome);
    }

    [Fact]
    public void Detaching_lets_the_guest_run_to_its_end()
    {
        string path = RepoPaths.GuestImage("hello");
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        using GdbStub stub = GdbStub.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        var console = new MemoryStream();
        RunResult? result = null;
        var run = new Thread(() => result = HelloGuestTests.EmulatorRunner().Run(image, new GuestRunOptions
        {
            Backend = "emulator",
            Debugger = stub,
            ConsoleOutput = console,
            Timeout = TimeSpan.FromSeconds(60),
        }));
        run.Start();
        using (var client = new RspClient(stub.EndPoint))
        {
            Assert.StartsWith("T05", client.Ask("?"), StringComparison.Ordinal);
            Assert.Equal("OK", client.Ask("Z0,100000,1")); // a breakpoint at the entry, removed by the detach
            Assert.Equal("OK", client.Ask("D"));
        }
        Assert.True(run.Join(TimeSpan.FromSeconds(60)));
        Assert.Equal(RunOutcome.Exited, result!.Outcome);
        Assert.Equal(7, result.ExitStatus);
        Assert.Contains("Hello from a Paravirt unikernel!", Encoding.UTF8.GetString(console.ToArray()), StringComparison.Ordinal);
    }
}
