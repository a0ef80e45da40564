using System.Net;
using Paravirt.Hypervisor.Debugging;
using Paravirt.Hypervisor.Debugging.Gdb;

namespace Paravirt.Scenarios;

/// <summary>
/// Debugging on KVM (the emulator when PARAVIRT_SCENARIO_BACKEND=emulator): the GDB stub driven by a real gdb
/// (Debian's gdb-minimal, which tests/nested-kvm/run.sh puts in the initramfs at /usr/bin/gdb) over the VM's loopback
/// interface, exercising KVM_SET_GUEST_DEBUG (int3 breakpoints, single-step); and crash reports of samples/crash,
/// which on KVM come from the VMM's default exception handlers. Hardware breakpoints and watchpoints (DR0-DR3) are not
/// exercised: under QEMU TCG's nested SVM they never fire for the nested guest (seen: an hbreak that gdb set was run
/// past), so they are tested on the emulator only.
/// </summary>
internal static class DebugScenarios
{
    internal static IEnumerable<(string Name, Func<string> Run)> All(string guestDir) =>
    [
        ("kvm-gdb-hello", () => GdbHello(guestDir)),
        ("kvm-crash-report", () => CrashReport(guestDir)),
        ("kvm-panic-report", () => PanicReport(guestDir)),
        ("kvm-linux-gdb", () => LinuxGdb(guestDir)),
        ("kvm-linux-crash-report", () => LinuxCrashReport(guestDir)),
    ];

    private static IHypervisorBackend Backend() =>
        string.Equals(Environment.GetEnvironmentVariable("PARAVIRT_SCENARIO_BACKEND"), "emulator", StringComparison.Ordinal)
            ? new EmulatorBackend() : new KvmBackend();

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new ScenarioFailedException(message);
        }
    }

    private static GuestImage Image(string guestDir, string sample)
    {
        string path = Path.Combine(guestDir, sample + ".elf");
        Check(File.Exists(path), $"{path} is missing (build samples/{sample} first)");
        return ElfLoader.LoadFile(path, AbiVersion.Current);
    }

    private static RunResult Run(GuestImage image, IHypervisorBackend backend, string commandLine = "", IGuestDebugger? debugger = null, Stream? console = null) =>
        new GuestRunner(new BackendSelector([backend]), new HypercallDispatcher([new CoreHypercalls()])).Run(image, new GuestRunOptions
        {
            Backend = backend.Name,
            CommandLine = commandLine,
            Debugger = debugger,
            ConsoleOutput = console,
            Timeout = TimeSpan.FromSeconds(120),
            MemorySize = image.Kind == GuestImageKind.LinuxExecutable ? 256UL << 20 : new GuestRunOptions().MemorySize,
        });

    /// <summary>A static Linux executable (artifacts/guests/linux), on a backend that gives the Linux personality its own CPL 0.</summary>
    private static (GuestImage Image, string Path) LinuxImage(string guestDir, string sample, IHypervisorBackend backend)
    {
        if (!backend.Capabilities.HasFlag(BackendCapabilities.SupervisorMode))
        {
            throw new ScenarioSkippedException($"{backend.Name}: {BackendSelector.Lacks(backend, BackendCapabilities.SupervisorMode)}");
        }
        string path = System.IO.Path.Combine(guestDir, "linux", sample);
        Check(File.Exists(path), $"{path} is missing (build samples/{sample} first)");
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        Check(image.Kind == GuestImageKind.LinuxExecutable, $"{path} was not recognised as a Linux executable");
        return (image, path);
    }

    /// <summary>
    /// linux-edge on the Linux personality under gdb: its SIGSEGV stops gdb at the application's NULL store with the
    /// application's registers; gdb reads the code and the stack through the library OS's page tables (CPL 3
    /// code). No breakpoint: on KVM an int3 goes in through the page tables of the moment gdb inserts it, and at the
    /// first stop the application is not mapped yet (docs/debugging.md); the emulator's tests break in main.
    /// </summary>
    private static string LinuxGdb(string guestDir)
    {
        IHypervisorBackend backend = Backend();
        (GuestImage image, string path) = LinuxImage(guestDir, "linux-edge", backend);
        (RunResult result, string gdb) = UnderGdb(image, path, backend, "continue", "x/i $pc", "backtrace", "continue");
        Check(gdb.Contains("Program received signal SIGSEGV", StringComparison.Ordinal), "gdb did not see the SIGSEGV: " + Flat(gdb));
        Check(System.Text.RegularExpressions.Regex.IsMatch(gdb, @"=> 0x[0-9a-f]+ <main\+\d+>:\s+movl\s+\$0x1,\(%rax\)"), "x/i $pc is not the NULL store in main: " + Flat(gdb));
        Check(System.Text.RegularExpressions.Regex.IsMatch(gdb, @"#0 +0x[0-9a-f]+ in main \(\)"), "backtrace: " + Flat(gdb));
        Check(gdb.Contains("exited with code 0213", StringComparison.Ordinal), "gdb did not see exit status 139: " + Flat(gdb));
        Check(result.Outcome == RunOutcome.Exited && result.ExitStatus == 139, $"{result.Outcome} {result.ExitStatus}: {result.Message}");
        return $"{result.Backend}: gdb stopped at the Linux application's SIGSEGV in main, read its code and stack, exit 139 seen by gdb";
    }

    /// <summary>linux-edge ends with a NULL store without a handler: exit status 139, and a report of the application's registers and backtrace.</summary>
    private static string LinuxCrashReport(string guestDir)
    {
        IHypervisorBackend backend = Backend();
        (GuestImage image, _) = LinuxImage(guestDir, "linux-edge", backend);
        RunResult r = Run(image, backend, console: Stream.Null);
        Check(r.Outcome == RunOutcome.Exited && r.ExitStatus == 139 && r.TerminatingSignal == 11, $"{r.Outcome} {r.ExitStatus}: {r.Message}");
        Check(r.Crash is { } c && c.Location?.Function == "main" && c.Frames.Any(f => f.Function?.StartsWith("__libc_start", StringComparison.Ordinal) == true),
            "the report is not the application's: " + Flat(r.Crash?.ToString() ?? "(none)"));
        return $"{r.Backend}: SIGSEGV attributed to {r.Crash!.Location} ({r.Crash.Frames.Count} frames)";
    }

    /// <summary>hello under gdb: break in main, next, print a local, step one instruction, continue to the exit status.</summary>
    private static string GdbHello(string guestDir)
    {
        GuestImage image = Image(guestDir, "hello");
        (RunResult result, string gdb) = UnderGdb(image, Path.Combine(guestDir, "hello.elf"), Backend(),
            "break main", "continue", "next", "print version", "stepi", "info registers rip", "continue");
        Check(gdb.Contains("Breakpoint 1, main ()", StringComparison.Ordinal), "gdb did not stop in main: " + Flat(gdb));
        Check(gdb.Contains($"$1 = {AbiVersion.Current.Packed}", StringComparison.Ordinal), "print version: " + Flat(gdb));
        Check(gdb.Contains("exited with code 07", StringComparison.Ordinal), "gdb did not see exit status 7: " + Flat(gdb));
        Check(result.Outcome == RunOutcome.Exited && result.ExitStatus == 7, $"{result.Outcome} {result.ExitStatus}: {result.Message}");
        // Which path served the stops: KVM_EXIT_DEBUG (Debug exits) or the default exception handlers (exception-port
        // writes among the IoOut exits), for the record.
        string exits = string.Join(", ", result.Statistics.Exits.Select(e => $"{e.Key} {e.Value}"));
        return $"{result.Backend}: break main, next, print version, stepi, exit 7 seen by gdb (exits: {exits})";
    }

    /// <summary>samples/crash what=divide: on KVM a #DE without an IDT ends as a triple fault, reported where it happened.</summary>
    private static string CrashReport(string guestDir)
    {
        RunResult r = Run(Image(guestDir, "crash"), Backend(), "what=divide");
        Check(r.Outcome == RunOutcome.Faulted && r.Crash is not null, $"{r.Outcome}: {r.Message}");
        CrashReport crash = r.Crash!;
        Check(crash.Location?.Function?.StartsWith("average", StringComparison.Ordinal) == true
              && crash.Location.File?.EndsWith("crash.c", StringComparison.Ordinal) == true,
            "the crash is not attributed to average (crash.c): " + Flat(crash.ToString()));
        Check(crash.Frames.Any(f => f.Function == "main"), "no main in the backtrace: " + Flat(crash.ToString()));
        Check(crash.Code.Any(i => i.IsCurrent && i.Text.StartsWith("idiv", StringComparison.Ordinal)), "rip is not on the idiv: " + Flat(crash.ToString()));
        return $"{r.Backend}: {crash.Fault.Kind} at {crash.Location} ({crash.Frames.Count} frames)";
    }

    /// <summary>samples/crash what=panic: the panic hypercall and its caller.</summary>
    private static string PanicReport(string guestDir)
    {
        RunResult r = Run(Image(guestDir, "crash"), Backend(), "what=panic");
        Check(r.Outcome == RunOutcome.Faulted && r.Crash?.Fault.Kind == GuestFaultKind.Panic, $"{r.Outcome}: {r.Message}");
        Check(r.Crash!.Location?.Function == "check_config", "the panic is not attributed to check_config: " + Flat(r.Crash.ToString()));
        return $"{r.Backend}: panic attributed to {r.Crash.Location}";
    }

    /// <summary>Runs <paramref name="image"/> with a GDB stub on loopback and gdb in batch mode against it.</summary>
    private static (RunResult Result, string Gdb) UnderGdb(GuestImage image, string imagePath, IHypervisorBackend backend, params string[] commands)
    {
        string gdbPath = File.Exists("/usr/bin/gdb") ? "/usr/bin/gdb" : throw new ScenarioFailedException("gdb is missing (/usr/bin/gdb): the initramfs needs gdb-minimal");
        using GdbStub stub = GdbStub.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        RunResult? result = null;
        Exception? failure = null;
        var run = new Thread(() =>
        {
            try
            {
                result = Run(image, backend, debugger: stub, console: Stream.Null);
            }
#pragma warning disable CA1031 // reported by the scenario
            catch (Exception e)
#pragma warning restore CA1031
            {
                failure = e;
            }
        });
        run.Start();
        var psi = new ProcessStartInfo(gdbPath) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in (string[])["-nx", "-batch", "-ex", "set confirm off", "-ex", $"target remote {stub.EndPoint}"])
        {
            psi.ArgumentList.Add(a);
        }
        foreach (string c in commands)
        {
            psi.ArgumentList.Add("-ex");
            psi.ArgumentList.Add(c);
        }
        psi.ArgumentList.Add(imagePath);
        string output;
        using (Process gdb = Process.Start(psi)!)
        {
            gdb.StandardInput.Close();
            Task<string> stdout = gdb.StandardOutput.ReadToEndAsync();
            Task<string> stderr = gdb.StandardError.ReadToEndAsync();
            if (!gdb.WaitForExit(TimeSpan.FromSeconds(120)))
            {
                gdb.Kill();
                throw new ScenarioFailedException("gdb did not finish: " + Flat(stdout.Result + stderr.Result));
            }
            output = stdout.Result + stderr.Result;
        }
        if (!run.Join(TimeSpan.FromSeconds(60)))
        {
            throw new ScenarioFailedException("the guest did not finish after gdb: " + Flat(output));
        }
        if (failure is not null)
        {
            throw new ScenarioFailedException($"the run failed: {failure.GetType().Name}: {failure.Message}; gdb: {Flat(output)}");
        }
        return (result!, output);
    }

    private static string Flat(string text) => text.ReplaceLineEndings(" | ");
}
