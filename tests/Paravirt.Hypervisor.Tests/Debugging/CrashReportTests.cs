namespace Paravirt.Hypervisor.Tests.Debugging;

/// <summary>Crash reports of samples/crash on the emulator: the fault, where (function, file, line), the backtrace.</summary>
public sealed class CrashReportTests
{
    private static readonly string[] CrashSource = File.ReadAllLines(Path.Combine(RepoPaths.Root, "samples", "crash", "crash.c"));

    /// <summary>The 1-based line of crash.c that contains <paramref name="marker"/> (so edits to the sample keep the tests right).</summary>
    private static int LineOf(string marker) => Array.FindIndex(CrashSource, l => l.Contains(marker, StringComparison.Ordinal)) + 1;

    internal static RunResult RunCrash(string what, string? image = null, string? coreFile = null)
    {
        GuestImage guest = ElfLoader.LoadFile(image ?? RepoPaths.GuestImage("crash"), AbiVersion.Current);
        return HelloGuestTests.EmulatorRunner().Run(guest, new GuestRunOptions
        {
            Backend = "emulator",
            CommandLine = "what=" + what,
            Timeout = TimeSpan.FromSeconds(30),
            CoreFile = coreFile,
        });
    }

    private static void AssertAt(CrashFrame? frame, string function, string marker)
    {
        Assert.NotNull(frame);
        Assert.StartsWith(function, frame.Function, StringComparison.Ordinal); // gcc may add .constprop.0 or .cold
        Assert.EndsWith("crash.c", frame.File, StringComparison.Ordinal);
        Assert.Equal(LineOf(marker), frame.Line);
    }

    private static void AssertBacktraceReachesStart(CrashReport crash)
    {
        Assert.Contains(crash.Frames, f => f.Function == "main" && f.Source == FrameSource.CallFrameInfo);
        Assert.Equal("_start", crash.Frames[^1].Function);
        Assert.Equal(Enumerable.Range(0, crash.Frames.Count), crash.Frames.Select(f => f.Index));
    }

    [Fact]
    public void A_divide_error_names_the_function_and_line_and_shows_the_idiv()
    {
        RunResult r = RunCrash("divide");
        Assert.Equal(RunOutcome.Faulted, r.Outcome);
        CrashReport crash = r.Crash!;
        Assert.Equal(GuestFaultKind.CpuException, crash.Fault.Kind);
        Assert.Equal(0, crash.Fault.Vector);
        Assert.Equal(8, crash.Fault.UnixSignal);
        AssertAt(crash.Location, "average", "count == 0: #DE");
        AssertAt(crash.Frames[1], "compute", "return average(values, g_count);");
        AssertBacktraceReachesStart(crash);
        CrashInstruction current = Assert.Single(crash.Code, i => i.IsCurrent);
        Assert.StartsWith("idiv", current.Text, StringComparison.Ordinal);
        Assert.Equal(crash.Registers.Rip, current.Address);
        Assert.Contains(crash.Code, i => i.Address < current.Address); // the instructions before it, decoded from the function's start

        string text = crash.ToString();
        Assert.StartsWith($"the guest crashed: divide error (#DE) at 0x{crash.Registers.Rip:x} in average", text, StringComparison.Ordinal);
        Assert.Contains($"crash.c:{LineOf("count == 0: #DE")})", text, StringComparison.Ordinal);
        Assert.Contains("  backtrace:", text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wild_pointer_is_a_page_fault_with_its_address()
    {
        CrashReport crash = RunCrash("wild").Crash!;
        Assert.Equal(14, crash.Fault.Vector);
        Assert.Equal(0x7ead00000000UL, crash.Fault.Address);
        Assert.Equal(11, crash.Fault.UnixSignal);
        AssertAt(crash.Location, "sum_at", "values is wild");
        AssertBacktraceReachesStart(crash);
    }

    [Fact]
    public void A_panic_is_attributed_to_its_caller_not_to_pv_panic()
    {
        RunResult r = RunCrash("panic");
        CrashReport crash = r.Crash!;
        Assert.Equal(GuestFaultKind.Panic, crash.Fault.Kind);
        Assert.Equal("check_config: no samples configured (count 0)", crash.PanicMessage);
        Assert.Equal("the guest panicked: check_config: no samples configured (count 0)", r.Message);
        AssertAt(crash.Location, "check_config", "pv_panic(\"check_config");
        // The full chain is kept: the hypercall stub (found on top of the stack), the SDK's panic path, the caller.
        Assert.Equal("[hypercall page]", crash.Frames[0].Function);
        Assert.Equal(FrameSource.StackTop, crash.Frames[1].Source);
        Assert.Contains(crash.Frames, f => f.Function == "pv_panic");
        AssertBacktraceReachesStart(crash);
    }

    [Fact]
    public void An_invalid_opcode_is_reported_at_the_trap()
    {
        CrashReport crash = RunCrash("trap").Crash!;
        Assert.Equal(6, crash.Fault.Vector);
        Assert.Equal(4, crash.Fault.UnixSignal);
        AssertAt(crash.Location, "compute", "__builtin_trap();");
        Assert.StartsWith("ud2", Assert.Single(crash.Code, i => i.IsCurrent).Text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_linux_personality_signal_reports_the_registers_of_the_failing_context()
    {
        CrashReport crash = RunCrash("signal").Crash!;
        Assert.Equal(GuestFaultKind.Panic, crash.Fault.Kind);
        Assert.Equal(11, crash.Fault.Signal);
        Assert.Equal(14, crash.Fault.Vector);
        Assert.Equal(0xdead00000000UL, crash.Fault.Address);
        Assert.Equal(0xdead00000000UL, crash.State.Cr2);
        AssertAt(crash.Frames[0], "report_signal", "__asm__ volatile(\"leaq 0(%%rip)");
        AssertAt(crash.Frames[1], "compute", "report_signal();");
        AssertBacktraceReachesStart(crash);
    }

    [Fact]
    public void A_core_file_is_elf_core_with_notes_and_the_guest_memory_at_its_addresses()
    {
        string core = Path.Combine(Path.GetTempPath(), $"paravirt-test-{Guid.NewGuid():N}.core");
        try
        {
            RunResult r = RunCrash("divide", coreFile: core);
            Assert.Equal(core, r.CoreFile);
            byte[] elf = File.ReadAllBytes(core);
            Assert.Equal([0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1], elf[..7]);
            Assert.Equal(4, BitConverter.ToUInt16(elf, 16));  // ET_CORE
            Assert.Equal(62, BitConverter.ToUInt16(elf, 18)); // EM_X86_64
            ushort phnum = BitConverter.ToUInt16(elf, 56);
            Assert.Equal(2, phnum);                           // PT_NOTE + one PT_LOAD (the emulator: all memory, identity)
            ulong loadOffset = BitConverter.ToUInt64(elf, 64 + 56 + 8);
            ulong loadVaddr = BitConverter.ToUInt64(elf, 64 + 56 + 16);
            ulong loadSize = BitConverter.ToUInt64(elf, 64 + 56 + 32);
            Assert.Equal(0UL, loadVaddr);
            Assert.Equal(64UL << 20, loadSize);
            // The image's code is in the core at its address.
            byte[] image = File.ReadAllBytes(RepoPaths.GuestImage("crash"));
            ulong rip = r.Crash!.Registers.Rip;
            Assert.Equal(image.AsSpan(0x1000 + (int)(rip - 0x10_0000), 2).ToArray(), elf.AsSpan((int)(loadOffset + rip), 2).ToArray());
            string notes = Encoding.Latin1.GetString(elf, (int)BitConverter.ToUInt64(elf, 64 + 8), (int)BitConverter.ToUInt64(elf, 64 + 32));
            Assert.Equal(4, notes.Split("CORE\0").Length - 1); // NT_PRSTATUS, NT_PRPSINFO, NT_FPREGSET, NT_SIGINFO
            Assert.Contains("crash.elf", notes, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(core);
        }
    }

    [Fact]
    public void A_core_file_that_cannot_be_written_is_reported_and_the_crash_report_stays()
    {
        RunResult r = RunCrash("divide", coreFile: Path.Combine(Path.GetTempPath(), "no-such-directory-" + Guid.NewGuid().ToString("N"), "x.core"));
        Assert.Equal(RunOutcome.Faulted, r.Outcome);
        Assert.NotNull(r.Crash);
        Assert.Null(r.CoreFile);
        Assert.NotNull(r.CoreFileError);
    }

    [LinuxX64Fact]
    public void Guests_built_without_eh_frame_unwind_with_debug_frame()
    {
        // -fno-asynchronous-unwind-tables with -g moves the call-frame information to .debug_frame (not loaded).
        string dir = Directory.CreateTempSubdirectory("paravirt-debug-frame-").FullName;
        try
        {
            string image = Path.Combine(dir, "crash.elf");
            var psi = new ProcessStartInfo("make") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in (string[])["-s", "-f", Path.Combine(RepoPaths.Root, "src", "Guest.Sdk", "native", "paravirt.mk"),
                $"PV_GUEST={image}", $"PV_SRCS={Path.Combine(RepoPaths.Root, "samples", "crash", "crash.c")}",
                "PV_EXTRA_CFLAGS=-fno-asynchronous-unwind-tables", image])
            {
                psi.ArgumentList.Add(a);
            }
            using (Process make = Process.Start(psi)!)
            {
                string output = make.StandardOutput.ReadToEnd() + make.StandardError.ReadToEnd();
                make.WaitForExit();
                Assert.True(make.ExitCode == 0, output);
            }
            var sections = Hypervisor.Debugging.Symbols.ElfSections.Parse(File.ReadAllBytes(image));
            Assert.NotNull(sections.Find(".debug_frame"));
            Assert.True((sections.Find(".eh_frame")?.Size ?? 0) < 64, "only start.S's own CFI (for _start) stays in .eh_frame");

            CrashReport crash = RunCrash("divide", image).Crash!;
            AssertAt(crash.Location, "average", "count == 0: #DE");
            AssertAt(crash.Frames[1], "compute", "return average(values, g_count);");
            AssertBacktraceReachesStart(crash);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
