using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Vcpu;

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
          paravirt backends

        Exit codes: the guest's exit status (0-255) when it exits; 64 bad arguments; 65 bad image;
        69 backend unavailable; 70 guest crashed; 124 timeout or instruction budget reached; 130 interrupted.
        """;

    /// <summary>Runs the command line. <paramref name="guestOutput"/> receives the guest's console bytes.</summary>
    internal static int Run(string[] args, Stream guestOutput, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        var image = new Argument<string>("image") { Description = "Path of the guest image (an ELF built with Paravirt.Guest.Sdk)." };
        var backend = new Option<string>("--backend", "-b")
        {
            Description = "Backend: auto (KVM or WHP when present, else the emulator), kvm, whp, emulator.",
            DefaultValueFactory = _ => BackendSelector.Auto,
        };
        var memory = new Option<string>("--memory", "-m") { Description = "Guest memory, e.g. 64M, 1G.", DefaultValueFactory = _ => "64M" };
        var timeout = new Option<string?>("--timeout", "-t") { Description = "Stop the guest after this long, e.g. 500ms, 10s, 2m (default: no limit)." };
        var budget = new Option<string?>("--budget") { Description = "Stop the guest after this many instructions (emulator only)." };
        var cmdline = new Option<string>("--cmdline") { Description = "Command line passed to the guest.", DefaultValueFactory = _ => "" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Say which backend was chosen and why, and log the run to stderr." };
        var stats = new Option<bool>("--stats") { Description = "After the run, print VM exits by kind and hypercalls by code to stderr." };

        var run = new Command("run", "Run a guest image; its console goes to stdout and its exit status becomes paravirt's.")
        {
            image, backend, memory, timeout, budget, cmdline, verbose, stats,
        };
        run.SetAction(parse => RunGuest(new RunArguments(
            parse.GetValue(image)!, parse.GetValue(backend)!, parse.GetValue(memory)!, parse.GetValue(timeout),
            parse.GetValue(budget), parse.GetValue(cmdline) ?? "", parse.GetValue(verbose), parse.GetValue(stats)),
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
            stderr.WriteLine($"paravirt: error: {first.Message} (see '{helpFor}')");
            return ExitCodes.Usage;
        }
        return result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }

    private sealed record RunArguments(string Image, string Backend, string Memory, string? Timeout, string? Budget, string CommandLine, bool Verbose, bool Stats);

    private static int RunGuest(RunArguments a, Stream guestOutput, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        if (!SizeParser.TryParseSize(a.Memory, out ulong memorySize))
        {
            return Fail(stderr, ExitCodes.Usage, $"--memory '{a.Memory}' is not a size; use a number with K, M or G, e.g. 64M");
        }
        if (memorySize < Hypervisor.Memory.GuestMemory.MinSize || memorySize > Hypervisor.Memory.GuestMemory.MaxSize || memorySize % EntryConvention.PageSize != 0)
        {
            return Fail(stderr, ExitCodes.Usage, $"--memory {a.Memory} is out of range; use a multiple of 4K between 2M and 64G");
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

        GuestImage guest;
        try
        {
            guest = ElfLoader.LoadFile(a.Image, AbiVersion.Current);
        }
        catch (ImageFormatException ex)
        {
            return Fail(stderr, ExitCodes.BadImage, ex.Message);
        }

        var services = new ServiceCollection();
        services.AddLogging(logging =>
        {
            logging.SetMinimumLevel(a.Verbose ? LogLevel.Information : LogLevel.Warning);
            logging.AddSimpleConsole(o => o.SingleLine = true);
            logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        });
        services.AddParavirt();
        using ServiceProvider provider = services.BuildServiceProvider();
        GuestRunner runner = provider.GetRequiredService<GuestRunner>();

        BackendChoice choice;
        try
        {
            choice = runner.Backends.Select(a.Backend);
        }
        catch (BackendUnavailableException ex)
        {
            return Fail(stderr, ExitCodes.BackendUnavailable, ex.Message);
        }
        if (a.Verbose)
        {
            stderr.WriteLine($"paravirt: backend {choice.Backend.Name}: {choice.Reason}");
        }
        if (budget is not null && choice.Backend.Name != "emulator")
        {
            stderr.WriteLine($"paravirt: warning: --budget only applies to the emulator backend; {choice.Backend.Name} uses --timeout");
        }

        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        RunResult result;
        try
        {
            result = runner.Run(guest, new GuestRunOptions
            {
                Backend = choice.Backend.Name,
                MemorySize = memorySize,
                Timeout = timeout,
                InstructionBudget = budget,
                ConsoleOutput = guestOutput,
                CommandLine = a.CommandLine,
            }, choice, interrupt.Token);
        }
        catch (ImageFormatException ex)
        {
            return Fail(stderr, ExitCodes.BadImage, ex.Message);
        }
        catch (BackendUnavailableException ex)
        {
            return Fail(stderr, ExitCodes.BackendUnavailable, ex.Message);
        }
        catch (ArgumentException ex)
        {
            return Fail(stderr, ExitCodes.Usage, ex.Message);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            guestOutput.Flush();
        }

        if (a.Stats)
        {
            PrintStats(stderr, result, provider.GetRequiredService<HypercallDispatcher>());
        }
        return result.Outcome switch
        {
            RunOutcome.Exited => (int)(result.ExitStatus & 0xFF),
            RunOutcome.TimedOut or RunOutcome.BudgetExhausted => Fail(stderr, ExitCodes.LimitReached, result.Message),
            RunOutcome.Canceled => Fail(stderr, ExitCodes.Interrupted, result.Message),
            _ => Fail(stderr, ExitCodes.GuestCrashed, result.Message),
        };
    }

    private static int ListBackends(TextWriter stdout)
    {
        var services = new ServiceCollection();
        services.AddParavirt();
        using ServiceProvider provider = services.BuildServiceProvider();
        foreach (IHypervisorBackend b in provider.GetServices<IHypervisorBackend>())
        {
            BackendAvailability a = b.Probe();
            stdout.WriteLine($"{b.Name,-9} {(a.IsAvailable ? "available  " : "unavailable")} {a.Reason}");
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
    }

    private static int Fail(TextWriter stderr, int code, string message)
    {
        stderr.WriteLine($"paravirt: error: {message}");
        return code;
    }
}
