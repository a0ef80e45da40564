using System.CommandLine;
using System.CommandLine.Parsing;
using System.Runtime.InteropServices;
using Microsoft.Extensions.DependencyInjection;
using Paravirt.Hypervisor.Hypercalls;

namespace Paravirt.Cli;

/// <summary>
/// The <c>paravirt</c> command line. Every user error (bad flag, bad value, missing or broken image, unavailable
/// backend) is reported as ONE line on stderr, <c>paravirt: error: ...</c>, with a documented exit code
/// (<see cref="ExitCodes"/>); the guest's console goes to stdout and the guest's exit status becomes the process's.
/// </summary>
internal static class CliApp
{
    private const string Examples = """

        Examples:
          paravirt run artifacts/guests/hello.elf
          paravirt run hello.elf --backend emulator --memory 128M --timeout 10s
          paravirt run hello.elf --verbose --stats
          paravirt run ./app --env HOME=/ -- arg1 arg2   (a static Linux executable, on the Linux personality)
          paravirt run blk.elf --disk disk.img            (a raw image, 512-byte sectors; add ,ro for read-only)
          paravirt run net.elf net.elf --net switch:lan --cmdline role=ping --cmdline role=pong
                                                    (two VMs on one in-memory Ethernet switch)
          paravirt run net.elf --net tap:tap0             (a Linux TAP interface)
          paravirt run hello.elf --gdb 127.0.0.1:1234     (wait for gdb: target remote 127.0.0.1:1234)
          paravirt run crash.elf --core crash.core        (on a crash, an ELF core: gdb crash.elf crash.core)
          paravirt backends

        Exit codes: the guest's exit status (0-255) when it exits; 64 bad arguments; 65 bad image;
        66 a device cannot be set up (disk image missing or of a wrong size, TAP refused); 69 backend unavailable;
        70 guest crashed (a report with registers, code and backtrace on stderr; --quiet: one line); 71 the backend failed (an instruction the emulator lacks, a KVM error: not the guest's fault);
        124 timeout or instruction budget reached; 130 interrupted (SIGINT, Ctrl+C); 143 terminated (SIGTERM).
        With several images the first failure, else the first non-zero exit status.
        """;

    /// <summary>Runs the command line. <paramref name="guestOutput"/> receives the guest's console bytes.</summary>
    internal static int Run(string[] args, Stream guestOutput, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        // Everything after the first "--" is the Linux application's argv[1..]: split it off before parsing, so that
        // the application's own flags never meet paravirt's.
        int separator = Array.IndexOf(args, "--");
        string[] appArguments = separator < 0 ? [] : args[(separator + 1)..];
        if (separator >= 0)
        {
            args = args[..separator];
        }
        var image = new Argument<string[]>("image")
        {
            Description = "Path of the guest image: an ELF built with Paravirt.Guest.Sdk, or a static Linux x86-64 executable (run on the Linux personality). Several images run as several VMs at once.",
            Arity = ArgumentArity.OneOrMore,
        };
        // With several images allowed, an unknown flag would be taken for an image path: report it as unknown instead.
        image.Validators.Add(r =>
        {
            foreach (string token in r.Tokens.Select(t => t.Value).Where(t => t.StartsWith('-') && t.Length > 1))
            {
                r.AddError($"Unrecognized command or argument '{token}'.");
            }
        });
        var backend = new Option<string>("--backend", "-b")
        {
            Description = "Backend: auto (KVM or WHP when present, else the emulator), kvm, whp, emulator.",
            DefaultValueFactory = _ => BackendSelector.Auto,
        };
        var memory = new Option<string?>("--memory", "-m") { Description = $"Guest memory, e.g. 64M, 1G (default {DefaultMemory} for Paravirt images, {DefaultLinuxMemory} for Linux executables)." };
        var timeout = new Option<string?>("--timeout", "-t") { Description = "Stop the guest after this long, e.g. 500ms, 10s, 2m (default: no limit)." };
        var budget = new Option<string?>("--budget") { Description = "Stop the guest after this many instructions (emulator only)." };
        var cmdline = new Option<string[]>("--cmdline")
        {
            Description = "Command line passed to the guest. With several images, give it once (every image gets it) or once per image, in order.",
            AllowMultipleArgumentsPerToken = false,
        };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Say which backend was chosen and why, and log the run to stderr." };
        var stats = new Option<bool>("--stats") { Description = "After the run, print VM exits by kind and hypercalls by code to stderr." };
        var maxOutput = new Option<string?>("--max-output")
        {
            Description = $"Most console output one guest may produce, e.g. 256M, or 'unlimited' (default {GuestLimits.DefaultConsoleOutputLimit >> 20}M); the rest is discarded with a warning.",
        };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "On a crash, print one line instead of the report (registers, code around rip, backtrace)." };
        var gdb = new Option<string?>("--gdb")
        {
            Description = "Start a GDB remote stub on ADDRESS (HOST:PORT, or PORT for 127.0.0.1) and wait for gdb to connect before the guest's first instruction ('target remote ADDRESS'). One image only; emulator and KVM backends.",
        };
        var core = new Option<string?>("--core") { Description = "If the guest crashes, write an ELF core file here (gdb IMAGE FILE shows its registers and backtrace). One image only." };
        var disk = new Option<string[]>("--disk")
        {
            Description = $"Attach a block device: {DeviceSpecs.DiskSyntax} (a raw image, a multiple of 512 bytes; ro = read-only; names default to disk0, disk1, ...; vm = which image, default 0). Repeatable.",
            AllowMultipleArgumentsPerToken = false,
        };
        var env = new Option<string[]>("--env", "-e")
        {
            Description = "For a Linux executable: an environment variable KEY=VALUE (nothing is inherited from paravirt's own environment). Repeatable. Its arguments follow '--'.",
            AllowMultipleArgumentsPerToken = false,
        };
        var net = new Option<string[]>("--net")
        {
            Description = $"Attach a net device: {DeviceSpecs.NetSyntax} (switch: an in-memory Ethernet switch; every image gets a port unless vm= is given; tap: a Linux TAP interface, image 0 by default; names default to net0, net1, ...). Repeatable.",
            AllowMultipleArgumentsPerToken = false,
        };

        var run = new Command("run", "Run a guest image; its console goes to stdout and its exit status becomes paravirt's.")
        {
            image, backend, memory, timeout, budget, cmdline, verbose, stats, maxOutput, disk, net, env, quiet, gdb, core,
        };
        run.SetAction(parse => RunGuest(new RunArguments(
            parse.GetValue(image)!, parse.GetValue(backend)!, parse.GetValue(memory), parse.GetValue(timeout),
            parse.GetValue(budget), parse.GetValue(cmdline) ?? [], parse.GetValue(verbose), parse.GetValue(stats),
            parse.GetValue(disk) ?? [], parse.GetValue(net) ?? [], parse.GetValue(maxOutput), parse.GetValue(env) ?? [], appArguments, separator >= 0,
            parse.GetValue(quiet), parse.GetValue(gdb), parse.GetValue(core)),
            guestOutput, stdout, stderr, cancellationToken));

        var backends = new Command("backends", "List the backends and whether each can run guests here.");
        backends.SetAction(_ => ListBackends(stdout));

        var root = new RootCommand($"paravirt: run Paravirt unikernel guests (ABI {AbiVersion.Current}) on KVM, WHP or the built-in x86-64 emulator.{Examples}")
        {
            run, backends,
        };

        ParseResult result = root.Parse(args);
        if (result.Errors.Count > 0)
        {
            // Prefer the error that names what the user typed wrong over follow-on errors.
            ParseError first = result.Errors.FirstOrDefault(e => result.UnmatchedTokens.Any(t => e.Message.Contains(t, StringComparison.Ordinal))) ?? result.Errors[0];
            string helpFor = result.CommandResult.Command == root ? "paravirt --help" : $"paravirt {result.CommandResult.Command.Name} --help";
            return Fail(stderr, ExitCodes.Usage, $"{first.Message} (see '{helpFor}')");
        }
        return result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }

    private sealed record RunArguments(string[] Images, string Backend, string? Memory, string? Timeout, string? Budget, string[] CommandLines, bool Verbose, bool Stats, string[] Disks, string[] Nets, string? MaxOutput, string[] Environment, string[] AppArguments, bool HasSeparator,
        bool Quiet, string? Gdb, string? Core);

    private const string DefaultMemory = "64M";
    private const string DefaultLinuxMemory = "256M";

    private static int RunGuest(RunArguments a, Stream guestOutput, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        ulong memorySize = 0;
        if (a.Memory is not null)
        {
            if (!SizeParser.TryParseSize(a.Memory, out memorySize))
            {
                return Fail(stderr, ExitCodes.Usage, $"--memory '{a.Memory}' is not a size; use a number with K, M or G, e.g. 64M");
            }
            if (!Hypervisor.Memory.GuestMemory.IsValidSize(memorySize))
            {
                return Fail(stderr, ExitCodes.Usage, $"--memory {a.Memory} is out of range; use {Hypervisor.Memory.GuestMemory.SizeRule}");
            }
        }
        if (a.HasSeparator && a.Images.Length != 1)
        {
            return Fail(stderr, ExitCodes.Usage, "arguments after '--' go to one Linux executable; give exactly one image with them");
        }
        foreach (string e in a.Environment)
        {
            if (e.IndexOf('=', StringComparison.Ordinal) <= 0 || e.Contains('\0', StringComparison.Ordinal))
            {
                return Fail(stderr, ExitCodes.Usage, $"--env '{e}' is not KEY=VALUE");
            }
        }
        TimeSpan? timeout = null;
        if (a.Timeout is not null)
        {
            if (!SizeParser.TryParseDuration(a.Timeout, out TimeSpan t))
            {
                return Fail(stderr, ExitCodes.Usage, $"--timeout '{a.Timeout}' is not a duration; use e.g. 500ms, 10s, 2m (more than 0, at most 24h)");
            }
            timeout = t;
        }
        ulong? budget = null;
        if (a.Budget is not null)
        {
            if (!ulong.TryParse(a.Budget, NumberStyles.None, CultureInfo.InvariantCulture, out ulong b) || b == 0)
            {
                return Fail(stderr, ExitCodes.Usage, $"--budget '{a.Budget}' is not a positive whole number of instructions");
            }
            budget = b;
        }
        GuestLimits limits = GuestLimits.Default;
        if (a.MaxOutput is not null)
        {
            if (a.MaxOutput.Equals("unlimited", StringComparison.OrdinalIgnoreCase))
            {
                limits = limits with { ConsoleOutputLimit = null };
            }
            else if (SizeParser.TryParseSize(a.MaxOutput, out ulong max) && max <= long.MaxValue)
            {
                limits = limits with { ConsoleOutputLimit = (long)max };
            }
            else
            {
                return Fail(stderr, ExitCodes.Usage, $"--max-output '{a.MaxOutput}' is not a size; use e.g. 64M, 1G or unlimited");
            }
        }
        System.Net.IPEndPoint? gdbEndPoint = null;
        if (a.Gdb is not null)
        {
            if (a.Images.Length > 1)
            {
                return Fail(stderr, ExitCodes.Usage, "--gdb debugs one guest: give one image (run the others in their own paravirt)");
            }
            if (!Hypervisor.Debugging.Gdb.GdbStub.TryParseEndPoint(a.Gdb, out gdbEndPoint))
            {
                return Fail(stderr, ExitCodes.Usage, $"--gdb '{a.Gdb}' is not an address; use HOST:PORT (e.g. 127.0.0.1:1234) or a port");
            }
        }
        if (a.Core is not null && a.Images.Length > 1)
        {
            return Fail(stderr, ExitCodes.Usage, "--core writes one core file: give one image");
        }
        if (a.CommandLines.Length > 1 && a.CommandLines.Length != a.Images.Length)
        {
            return Fail(stderr, ExitCodes.Usage, $"--cmdline was given {a.CommandLines.Length} times for {a.Images.Length} image(s); give it once, or once per image");
        }
        var disks = new List<DiskSpec>();
        foreach (string value in a.Disks)
        {
            if (!DeviceSpecs.TryParseDisk(value, a.Images.Length, out DiskSpec? spec, out string error))
            {
                return Fail(stderr, ExitCodes.Usage, error);
            }
            disks.Add(spec!);
        }
        var nets = new List<NetSpec>();
        foreach (string value in a.Nets)
        {
            if (!DeviceSpecs.TryParseNet(value, a.Images.Length, out NetSpec? spec, out string error))
            {
                return Fail(stderr, ExitCodes.Usage, error);
            }
            nets.Add(spec!);
        }

        var services = new ServiceCollection();
        services.AddLogging(logging =>
        {
            logging.SetMinimumLevel(a.Verbose ? LogLevel.Information : LogLevel.Warning);
            logging.AddProvider(new StderrLoggerProvider(stderr, a.Verbose ? LogLevel.Information : LogLevel.Warning));
        });
        services.AddParavirt();
        using ServiceProvider provider = services.BuildServiceProvider();
        GuestRunner runner = provider.GetRequiredService<GuestRunner>();
        string[] backendNames = [BackendSelector.Auto, .. runner.Backends.Names];
        if (!backendNames.Contains(a.Backend, StringComparer.OrdinalIgnoreCase))
        {
            return Fail(stderr, ExitCodes.Usage, $"--backend '{a.Backend}' is not a backend; use one of: {string.Join(", ", backendNames)}");
        }

        var guests = new List<GuestImage>();
        foreach (string path in a.Images)
        {
            try
            {
                guests.Add(ElfLoader.LoadFile(path, AbiVersion.Current));
            }
            catch (Exception ex) when (ExitCodes.For(ex) is int code)
            {
                return Fail(stderr, code, ex.Message);
            }
        }
        bool anyLinux = guests.Any(g => g.Kind == GuestImageKind.LinuxExecutable);
        if ((a.HasSeparator || a.Environment.Length > 0) && !anyLinux)
        {
            return Fail(stderr, ExitCodes.Usage, "arguments after '--' and --env are for Linux executables; a Paravirt image takes --cmdline");
        }

        BackendChoice choice;
        try
        {
            choice = runner.Backends.Select(a.Backend, guests.Aggregate(BackendCapabilities.None, (c, g) => c | GuestRunner.RequiredCapabilities(g)));
        }
        catch (Exception ex) when (ExitCodes.For(ex) is int code)
        {
            return Fail(stderr, code, ex.Message);
        }
        if (budget is not null && !choice.Backend.Capabilities.HasFlag(BackendCapabilities.InstructionBudget))
        {
            stderr.WriteLine($"paravirt: warning: backend {choice.Backend.Name} does not count instructions, so --budget does not apply; use --timeout");
        }

        if (gdbEndPoint is not null && !choice.Backend.Capabilities.HasFlag(BackendCapabilities.GuestDebug))
        {
            return Fail(stderr, ExitCodes.BackendUnavailable, $"backend {choice.Backend.Name} cannot debug guests; use --backend emulator or kvm with --gdb");
        }
        Hypervisor.Debugging.Gdb.GdbStub? stub = null;
        if (gdbEndPoint is not null)
        {
            try
            {
                stub = Hypervisor.Debugging.Gdb.GdbStub.Listen(gdbEndPoint);
            }
            catch (System.Net.Sockets.SocketException ex)
            {
                return Fail(stderr, ExitCodes.Usage, $"--gdb {a.Gdb}: cannot listen there: {ex.Message}");
            }
            if (stub.IsExposed)
            {
                stderr.WriteLine($"paravirt: warning: the gdb stub listens on {stub.EndPoint}, not a loopback address: anyone who can reach it controls the guest");
            }
            stderr.WriteLine($"paravirt: gdb: waiting for a connection on {stub.EndPoint} (gdb {a.Images[0]} -ex 'target remote {stub.EndPoint}')");
            stderr.Flush();
        }
        using Hypervisor.Debugging.Gdb.GdbStub? stubScope = stub;

        // Several VMs write to one output: whole writes stay whole.
        Stream output = guests.Count > 1 ? Stream.Synchronized(guestOutput) : guestOutput;
        List<VirtualDevice>[] devices;
        try
        {
            devices = DeviceSpecs.Create(guests, disks, nets, output, guests.Any(g => g.Kind == GuestImageKind.LinuxExecutable || g.Manifest.Any(m => m.Kind == DeviceKind.Console)) ? Console.OpenStandardInput() : null);
        }
        catch (Exception ex) when (ExitCodes.For(ex) is int code)
        {
            return Fail(stderr, code, ex.Message);
        }

        // SIGINT (Ctrl+C) and SIGTERM both cancel the runs cleanly: the guests stop, devices flush and close, the
        // statistics print, and the exit code says which signal it was. A second signal is not intercepted, so it
        // ends a host that is stuck for another reason the usual way.
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        int signalled = 0; // 0, or the signal number that cancelled the runs
        void OnSignal(PosixSignalContext context)
        {
            int number = context.Signal == PosixSignal.SIGTERM ? 15 : 2;
            if (Interlocked.CompareExchange(ref signalled, number, 0) == 0)
            {
                context.Cancel = true;
                interrupt.Cancel();
            }
        }
        using PosixSignalRegistration onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using PosixSignalRegistration onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        var results = new RunResult?[guests.Count];
        var failures = new (int Code, string Message)?[guests.Count];
        try
        {
            void RunOne(int vm)
            {
                try
                {
                    bool linux = guests[vm].Kind == GuestImageKind.LinuxExecutable;
                    results[vm] = runner.Run(guests[vm], new GuestRunOptions
                    {
                        Backend = choice.Backend.Name,
                        MemorySize = memorySize != 0 ? memorySize : SizeParser.TryParseSize(linux ? DefaultLinuxMemory : DefaultMemory, out ulong d) ? d : GuestRunOptions.DefaultMemorySize,
                        Arguments = linux ? [a.Images[vm], .. a.AppArguments] : [],
                        Environment = linux ? a.Environment : [],
                        Timeout = timeout,
                        InstructionBudget = budget,
                        Limits = limits,
                        ConsoleOutput = output,
                        CommandLine = a.CommandLines.Length switch { 0 => "", 1 => a.CommandLines[0], _ => a.CommandLines[vm] },
                        Devices = devices[vm],
                        Debugger = stub,
                        CoreFile = a.Core,
                    }, choice, interrupt.Token);
                }
                catch (Exception ex) when (ExitCodes.For(ex) is int code)
                {
                    failures[vm] = (code, ex.Message);
                }
            }

            if (guests.Count == 1)
            {
                RunOne(0); // the vCPU runs on this thread
            }
            else
            {
                Thread[] threads = [.. Enumerable.Range(0, guests.Count).Select(vm => new Thread(() => RunOne(vm)) { Name = $"vcpu {vm}", IsBackground = true })];
                Array.ForEach(threads, t => t.Start());
                Array.ForEach(threads, t => t.Join());
            }
        }
        finally
        {
            foreach (List<VirtualDevice> list in devices)
            {
                list.ForEach(d => d.Dispose());
            }
            output.Flush();
        }

        // The first failure decides the exit code; without one, the first non-zero guest exit status.
        HypercallDispatcher dispatcher = provider.GetRequiredService<HypercallDispatcher>();
        int? firstFailure = null;
        int firstStatus = 0;
        for (int vm = 0; vm < guests.Count; vm++)
        {
            string prefix = guests.Count > 1 ? $"image {vm} ({a.Images[vm]}): " : "";
            if (failures[vm] is (int code, string message))
            {
                Failed(Fail(stderr, code, prefix + message));
                continue;
            }
            RunResult result = results[vm]!;
            if (a.Stats)
            {
                PrintStats(stderr, result, dispatcher);
            }
            if (result.Statistics.ConsoleBytesDiscarded > 0)
            {
                stderr.WriteLine($"paravirt: warning: {EscapeControl(prefix)}the guest's console output reached --max-output ({limits.ConsoleOutputLimit} bytes); {result.Statistics.ConsoleBytesDiscarded} more bytes were discarded");
            }
            switch (result.Outcome)
            {
                case RunOutcome.Exited:
                    int status = (int)(result.ExitStatus & 0xFF);
                    if (result.TerminatingSignal is not null)
                    {
                        // With the application's registers (the library OS passed them) the report's first line names the
                        // function and source line too, and its registers, code and backtrace follow; --quiet: one line.
                        string[] report = result.Crash is { } signalReport && !a.Quiet ? signalReport.ToString().TrimEnd('\n').Split('\n') : [result.Message];
                        stderr.WriteLine($"paravirt: {EscapeControl(prefix + report[0])}");
                        foreach (string line in report.AsSpan(1))
                        {
                            stderr.WriteLine(EscapeControl(line));
                        }
                        WriteCoreFileLine(stderr, result, a.Images[vm]);
                    }
                    firstStatus = firstStatus != 0 ? firstStatus : status;
                    break;
                case RunOutcome.Canceled when signalled == 15:
                    Failed(Fail(stderr, ExitCodes.For(result.Outcome, signalled), prefix + "the run was stopped by SIGTERM"));
                    break;
                case RunOutcome.Canceled when signalled == 2:
                    Failed(Fail(stderr, ExitCodes.For(result.Outcome, signalled), prefix + "the run was interrupted (SIGINT)"));
                    break;
                default:
                    if (result.Outcome == RunOutcome.Faulted && result.Crash is { } crash && !a.Quiet)
                    {
                        // The report's first line names the fault and where; the rest: registers, code, backtrace. Each
                        // line is escaped on its own (the report quotes the guest's panic message and symbol names).
                        string[] report = crash.ToString().TrimEnd('\n').Split('\n');
                        Failed(Fail(stderr, ExitCodes.For(result.Outcome, signalled), prefix + report[0]));
                        foreach (string line in report.AsSpan(1))
                        {
                            stderr.WriteLine(EscapeControl(line));
                        }
                    }
                    else
                    {
                        Failed(Fail(stderr, ExitCodes.For(result.Outcome, signalled), prefix + result.Message));
                    }
                    WriteCoreFileLine(stderr, result, a.Images[vm]);
                    break;
            }
        }
        return firstFailure ?? firstStatus;

        void Failed(int code) => firstFailure ??= code; // every failure is reported; the first one decides
    }

    private static int ListBackends(TextWriter stdout)
    {
        var services = new ServiceCollection();
        services.AddParavirt();
        using ServiceProvider provider = services.BuildServiceProvider();
        foreach (IHypervisorBackend b in provider.GetServices<IHypervisorBackend>())
        {
            BackendAvailability a = b.Probe();
            // the Linux personality is a kernel: it needs a backend that gives the guest its own CPL 0
            string linux = !a.IsAvailable ? "" : b.Capabilities.HasFlag(BackendCapabilities.SupervisorMode) ? " [Linux executables: yes]" : " [Linux executables: no]";
            stdout.WriteLine($"{b.Name,-9} {(a.IsAvailable ? "available  " : "unavailable")} {a.Reason}{linux}");
        }
        return 0;
    }

    private static void PrintStats(TextWriter w, RunResult result, HypercallDispatcher dispatcher)
    {
        RunStatistics s = result.Statistics;
        w.WriteLine($"paravirt: stats: backend {result.Backend}, {result.Outcome}, {s.Elapsed.TotalMilliseconds:F1} ms"
            + (s.InstructionsRetired is ulong n ? $", {n} instructions" : ""));
        w.WriteLine("  exits:");
        foreach ((VcpuExitKind kind, long count) in s.Exits.OrderByDescending(e => e.Value))
        {
            w.WriteLine($"    {kind,-16} {count,12}");
        }
        w.WriteLine("  hypercalls:");
        foreach ((uint code, long count) in s.Hypercalls.OrderBy(e => e.Key))
        {
            w.WriteLine($"    0x{code:x4} {dispatcher.GetName(code) ?? "(unknown)",-16} {count,12}");
        }
        if (s.OtherHypercalls > 0)
        {
            w.WriteLine($"    other  {"(unregistered)",-16} {s.OtherHypercalls,12}");
        }
        if (s.UnimplementedSyscalls.Count > 0)
        {
            w.WriteLine("  Linux system calls the Linux personality answered -ENOSYS:");
            w.WriteLine($"    {string.Join(", ", s.UnimplementedSyscalls.Keys.Order().Select(Hypervisor.Linux.LinuxSyscallNames.Describe))}");
        }
    }

    /// <summary>
    /// Writes the one error line. Messages quote what the user typed, which may hold line breaks or terminal escape
    /// sequences (an argument from <c>"$(cat file)"</c>): control characters are written as <c>\xNN</c> so the error
    /// stays one line and cannot drive the terminal (found by the cli fuzz harness).
    /// </summary>
    private static int Fail(TextWriter stderr, int code, string message)
    {
        stderr.WriteLine($"paravirt: error: {EscapeControl(message)}");
        return code;
    }

    private static void WriteCoreFileLine(TextWriter stderr, RunResult result, string image)
    {
        if (result.CoreFile is not null)
        {
            stderr.WriteLine($"paravirt: core file written to {EscapeControl(result.CoreFile)} (gdb {EscapeControl(image)} {EscapeControl(result.CoreFile)})");
        }
        else if (result.CoreFileError is not null)
        {
            stderr.WriteLine($"paravirt: warning: no core file: {EscapeControl(result.CoreFileError)}");
        }
    }

    internal static string EscapeControl(string text)
    {
        if (!text.Any(char.IsControl))
        {
            return text;
        }
        var b = new System.Text.StringBuilder(text.Length + 16);
        foreach (char c in text)
        {
            if (char.IsControl(c))
            {
                b.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
            }
            else
            {
                b.Append(c);
            }
        }
        return b.ToString();
    }
}
