namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>
/// Runs where the emulator runs the Linux personality (it declares <see cref="BackendCapabilities.SupervisorMode"/>:
/// paging, CPL 3, SYSCALL and exceptions through the guest's IDT); skips with that reason until then. The nested-KVM
/// harness runs the same comparisons on KVM (tests/Paravirt.Scenarios, LinuxScenarios).
/// </summary>
internal sealed class LinuxOnEmulatorFactAttribute : FactAttribute
{
    public LinuxOnEmulatorFactAttribute()
    {
        if (!OperatingSystem.IsLinux())
        {
            Skip = "the native half of the comparison needs Linux";
        }
        else if (!new EmulatorBackend().Capabilities.HasFlag(BackendCapabilities.SupervisorMode))
        {
            Skip = "the emulator cannot run the Linux personality yet (no paging, CPL 3 or IDT delivery: BackendCapabilities.SupervisorMode); tests/nested-kvm/run.sh runs these samples on KVM";
        }
    }
}

/// <summary>The static Linux samples on the emulator, each compared with the same binary run natively.</summary>
public sealed class LinuxGuestTests
{
    private static readonly string[] Args = ["alpha", "beta gamma"];
    private static readonly string[] Env = ["PARAVIRT_SAMPLE=1", "LANG=C"];
    private const int DiskSize = 1 << 20;

    private static (int Status, string Output) RunNative(string path, string[] env)
    {
        ProcessResult r = ProcessRunner.Run(path, Args, environment: env.Select(e => e.Split('=', 2)).Select(kv => new KeyValuePair<string, string?>(kv[0], kv[1])),
            limit: TimeSpan.FromMinutes(1), clearEnvironment: true);
        return (r.ExitCode, r.StdOut);
    }

    private static (RunResult Result, string Output) RunGuest(string path, IReadOnlyList<string> env)
    {
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        Assert.Equal(GuestImageKind.LinuxExecutable, image.Kind);
        var runner = new GuestRunner(new BackendSelector([new EmulatorBackend()]), new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]));
        string disk = Path.Combine(Path.GetTempPath(), $"paravirt-linux-emu-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(disk, new byte[DiskSize]);
        try
        {
            using var console = new MemoryStream();
            using var block = new BlockDevice("disk0", disk);
            RunResult r = runner.Run(image, new GuestRunOptions
            {
                Backend = "emulator",
                ConsoleOutput = console,
                Devices = [block],
                MemorySize = 256UL << 20,
                Arguments = [path, .. Args],
                Environment = env,
                Timeout = TimeSpan.FromMinutes(3),
            });
            return (r, Encoding.UTF8.GetString(console.ToArray()));
        }
        finally
        {
            File.Delete(disk);
        }
    }

    private static void SameAsNative(string sample)
    {
        string path = RepoPaths.LinuxExecutable(sample);
        string nativeDisk = Path.Combine(Path.GetTempPath(), $"paravirt-linux-native-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(nativeDisk, new byte[DiskSize]);
        (int status, string expected) = (0, "");
        try
        {
            (status, expected) = RunNative(path, [.. Env, $"DISK={nativeDisk}"]);
        }
        finally
        {
            File.Delete(nativeDisk);
        }
        (RunResult result, string output) = RunGuest(path, [.. Env, "DISK=/dev/disk0"]);
        Assert.True(result.Outcome == RunOutcome.Exited, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.Equal(expected, output);
        Assert.Equal(status, result.ExitStatus);
        if (status > 128)
        {
            Assert.Equal(status - 128, result.TerminatingSignal);
        }
    }

    [LinuxOnEmulatorFact]
    public void Glibc_sample_prints_and_exits_as_natively() => SameAsNative("linux-c");

    [LinuxOnEmulatorFact]
    public void A_relative_program_name_still_gives_an_absolute_proc_self_exe_so_static_glibc_starts()
    {
        // readlink("/proc/self/exe") returned argv[0] as given; static glibc asserts it is absolute at start-up
        // (_dl_get_origin), so `paravirt run ./app` and a library run without Arguments died with SIGABRT (134).
        string path = RepoPaths.LinuxExecutable("linux-edge");
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, path);
        Assert.False(Path.IsPathRooted(relative));
        (int code, _, string stderr, _) = CliErrorTests.Run("run", relative, "--backend", "emulator", "--quiet");
        Assert.True(code == 139, $"exit {code}: {stderr}"); // its own end: the NULL store (SIGSEGV), not an abort at start-up
        Assert.Contains("killed by SIGSEGV", stderr, StringComparison.Ordinal);
    }

    [LinuxOnEmulatorFact]
    public void Musl_sample_prints_and_exits_as_natively() => SameAsNative("linux-musl");

    [LinuxOnEmulatorFact]
    public void DotNet_sample_prints_and_exits_as_natively() => SameAsNative("linux-dotnet");

    [LinuxOnEmulatorFact]
    public void Edge_cases_and_death_by_SIGSEGV_match_the_native_run() => SameAsNative("linux-edge");

    [LinuxOnEmulatorFact]
    public void The_cli_runs_a_Linux_executable_with_its_arguments_and_environment()
    {
        (int code, _, string stderr, byte[] guest) = CliErrorTests.Run(
            "run", RepoPaths.LinuxExecutable("linux-c"), "--backend", "emulator", "--env", "PARAVIRT_SAMPLE=cli", "--", "x", "--y");
        string output = Encoding.UTF8.GetString(guest);
        Assert.True(code == 3, $"exit {code}\n{stderr}\n{output}");
        Assert.StartsWith("linux-c: 2 argument(s): [x] [--y]\nenvironment: PARAVIRT_SAMPLE=cli", output, StringComparison.Ordinal);
    }

    [LinuxOnEmulatorFact]
    public void The_cli_reports_death_by_signal_with_128_plus_the_signal_in_one_line_with_quiet()
    {
        (int code, _, string stderr, _) = CliErrorTests.Run("run", RepoPaths.LinuxExecutable("linux-edge"), "--backend", "emulator", "--quiet");
        Assert.Equal(139, code);
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("paravirt: the Linux application was killed by SIGSEGV (signal 11): a fault at address 0x0, rip 0x", line, StringComparison.Ordinal);
    }

    [LinuxOnEmulatorFact]
    public void Death_by_signal_comes_with_a_report_of_the_applications_registers_code_and_backtrace_and_a_core_file()
    {
        // The library OS passes the application's trap frame with exit_signal: the report names the application's
        // faulting function and source line (the static executable's own symbols), not the library OS's.
        string core = Path.Combine(Path.GetTempPath(), $"paravirt-test-{Guid.NewGuid():N}.core");
        try
        {
            (int code, _, string stderr, _) = CliErrorTests.Run("run", RepoPaths.LinuxExecutable("linux-edge"), "--backend", "emulator", "--core", core);
            Assert.Equal(139, code);
            string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("paravirt: the Linux application was killed by SIGSEGV (signal 11): a fault at address 0x0, rip 0x", lines[0], StringComparison.Ordinal);
            Assert.Contains(" in main+0x", lines[0], StringComparison.Ordinal); // the sample has symbols, no line tables
            Assert.Contains("  registers:", lines);
            Assert.Contains("  backtrace:", lines);
            Assert.Contains(lines, l => l.StartsWith("    #0 0x", StringComparison.Ordinal) && l.Contains(" in main+", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.Contains(" in __libc_start_main", StringComparison.Ordinal)); // the backtrace walks the application's stack
            Assert.Contains(lines, l => l.StartsWith("paravirt: core file written to ", StringComparison.Ordinal));
            Assert.True(new FileInfo(core).Length > 0);
        }
        finally
        {
            File.Delete(core);
        }
    }

    [Fact]
    public void A_backend_without_supervisor_mode_is_refused_in_one_line_before_anything_runs()
    {
        var noKernel = new FakeBackend();
        var runner = new GuestRunner(new BackendSelector([noKernel]), new HypercallDispatcher([new CoreHypercalls()]));
        GuestImage image = ElfLoader.LoadFile(RepoPaths.LinuxExecutable("linux-c"), AbiVersion.Current);
        var ex = Assert.Throws<BackendUnavailableException>(() => runner.Run(image, new GuestRunOptions { Backend = "auto" }));
        Assert.Contains("CPL 0", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<BackendUnavailableException>(() => runner.Run(image, new GuestRunOptions { Backend = "fake" }, new BackendChoice(noKernel, "test")));
        Assert.Contains("cannot run a Linux executable", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, noKernel.VmsCreated);
    }

    private sealed class FakeBackend : IHypervisorBackend
    {
        public int VmsCreated { get; private set; }
        public string Name => "fake";
        public BackendCapabilities Capabilities => BackendCapabilities.None;
        public BackendAvailability Probe() => BackendAvailability.Available("always");
        public IVirtualMachine CreateVirtualMachine(Paravirt.Hypervisor.Memory.GuestMemory memory, VirtualMachineOptions options)
        {
            VmsCreated++;
            throw new InvalidOperationException("a VM must not be created for a guest the backend cannot run");
        }
    }
}
