using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Devices;
using Paravirt.Hypervisor.Diagnostics;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Linux;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Vcpu;

/// <summary>
/// Runs one guest image to completion: chooses the backend, builds guest memory (image, boot info, hypercall page,
/// command line), creates the VM and its vCPU, and loops over VM exits, dispatching hypercalls, until the guest
/// exits, faults, runs out of budget or time, or is cancelled. The vCPU runs on the calling thread. A static Linux
/// executable (<see cref="GuestImageKind.LinuxExecutable"/>) runs on the Linux personality, which the runner loads
/// with it (see <see cref="GuestRunOptions.Arguments"/> and <see cref="GuestRunOptions.Environment"/>).
/// </summary>
public sealed partial class GuestRunner
{
    private readonly BackendSelector _selector;
    private readonly HypercallDispatcher _dispatcher;
    private readonly ILogger _logger;
    private readonly ParavirtMetrics? _metrics;
    private readonly IDeviceFactory[] _deviceFactories;

    /// <summary>Creates a runner.</summary>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException"><paramref name="options"/> are invalid.</exception>
    public GuestRunner(
        BackendSelector selector,
        HypercallDispatcher dispatcher,
        ILogger<GuestRunner>? logger = null,
        ParavirtMetrics? metrics = null,
        Microsoft.Extensions.Options.IOptions<ParavirtOptions>? options = null,
        IEnumerable<IDeviceFactory>? deviceFactories = null)
    {
        _selector = selector ?? throw new ArgumentNullException(nameof(selector));
        _dispatcher = dispatcher ?? throw new ArgumentNullException(nameof(dispatcher));
        _logger = logger ?? NullLogger<GuestRunner>.Instance;
        _metrics = metrics;
        _deviceFactories = deviceFactories?.ToArray() ?? [];
        ParavirtOptions defaults = options?.Value ?? new ParavirtOptions(); // Value validates: bad options fail here, not mid-run
        DefaultOptions = new GuestRunOptions
        {
            Backend = defaults.DefaultBackend,
            MemorySize = defaults.DefaultMemorySize,
            Timeout = defaults.DefaultTimeout,
            InstructionBudget = defaults.DefaultInstructionBudget,
            Limits = defaults.DefaultLimits,
        };
    }

    /// <summary>Run options carrying the application's <see cref="ParavirtOptions"/>; start from these with <c>with { ... }</c>.</summary>
    public GuestRunOptions DefaultOptions { get; }

    /// <summary>The backend selector this runner uses.</summary>
    public BackendSelector Backends => _selector;

    /// <summary>Chooses the backend named in <paramref name="options"/> and runs <paramref name="image"/>.</summary>
    /// <exception cref="BackendUnavailableException">The backend cannot run here.</exception>
    /// <exception cref="ImageFormatException">The image does not fit in guest memory.</exception>
    /// <exception cref="ArgumentException">The options are invalid (memory size, command line).</exception>
    public RunResult Run(GuestImage image, GuestRunOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(image);
        return Run(image, options, _selector.Select(options.Backend, RequiredCapabilities(image)), cancellationToken);
    }

    /// <summary>What a backend must be able to do to run <paramref name="image"/>: a Linux executable needs <see cref="BackendCapabilities.SupervisorMode"/> (the Linux personality is a kernel).</summary>
    public static BackendCapabilities RequiredCapabilities(GuestImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        return image.Kind == GuestImageKind.LinuxExecutable ? BackendCapabilities.SupervisorMode : BackendCapabilities.None;
    }

    /// <summary>Runs <paramref name="image"/> on an already chosen backend.</summary>
    public RunResult Run(GuestImage image, GuestRunOptions options, BackendChoice choice, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (_deviceFactories.Length == 0)
        {
            return RunCore(image, options, choice, cancellationToken);
        }
        var created = new List<VirtualDevice>(_deviceFactories.Length);
        try
        {
            foreach (IDeviceFactory factory in _deviceFactories)
            {
                created.Add(factory.Create());
            }
            return RunCore(image, options with { Devices = [.. options.Devices, .. created] }, choice, cancellationToken);
        }
        finally
        {
            created.ForEach(static d => d.Dispose());
        }
    }

    private RunResult RunCore(GuestImage image, GuestRunOptions options, BackendChoice choice, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(choice);
        if (options.MemorySize < GuestMemory.MinSize || options.MemorySize > GuestMemory.MaxSize || options.MemorySize % EntryConvention.PageSize != 0)
        {
            throw new ArgumentException($"guest memory must be a multiple of 4 KiB between {GuestMemory.MinSize >> 20} MiB and {GuestMemory.MaxSize >> 30} GiB (got {options.MemorySize} bytes)", nameof(options));
        }
        ArgumentNullException.ThrowIfNull(options.Limits);
        options.Limits.Validate();
        byte[] commandLine = Encoding.UTF8.GetBytes(options.CommandLine);
        if (commandLine.Length >= GuestLayout.CommandLineMax || Array.IndexOf(commandLine, (byte)0) >= 0)
        {
            throw new ArgumentException($"the guest command line must be at most {GuestLayout.CommandLineMax - 1} bytes of UTF-8 without NUL", nameof(options));
        }

        var stats = new RunStatistics();
        long started = Stopwatch.GetTimestamp();
        using var memory = new GuestMemory(options.MemorySize);
        ulong entry = image.Entry;
        ulong imageEnd;
        LinuxLayout? linux = null;
        if (image.Kind == GuestImageKind.LinuxExecutable)
        {
            if (!choice.Backend.Capabilities.HasFlag(BackendCapabilities.SupervisorMode))
            {
                throw new BackendUnavailableException($"backend '{choice.Backend.Name}' cannot run a Linux executable: {BackendSelector.Lacks(choice.Backend, BackendCapabilities.SupervisorMode)}");
            }
            IReadOnlyList<string> argv = options.Arguments.Count > 0 ? options.Arguments : [image.SourcePath is { } p ? Path.GetFileName(p) : "app"];
            linux = LinuxPersonality.Load(image, memory, LinuxPersonality.EncodeArguments(argv, options.Environment));
            entry = linux.Value.Entry;
            imageEnd = linux.Value.HeapStart;
        }
        else
        {
            imageEnd = ElfLoader.LoadInto(image, memory);
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using IDisposable? deadline = options.Timeout is TimeSpan timeout ? RunDeadlines.Schedule(stop, timeout) : null;
        using var session = new GuestSession(memory, image, options.ConsoleOutput ?? Stream.Null, stop.Token)
        {
            Devices = options.Devices ?? [],
            Metrics = _metrics,
            Logger = _logger,
            Limits = options.Limits,
        };
        bool injection = choice.Backend.Capabilities.HasFlag(BackendCapabilities.InterruptInjection);
        if (injection)
        {
            session.OfferedFeatures |= FeatureBits.Timer;
        }
        PrepareMemory(memory, imageEnd, commandLine, session.OfferedFeatures, linux?.BootModules ?? 0, linux?.BootModuleCount ?? 0);
        string backendName = choice.Backend.Name;
        LogStarting(_logger, backendName, choice.Reason, image.AbiVersion.ToString(), options.MemorySize >> 20);
        if (options.InstructionBudget is ulong requested && !choice.Backend.Capabilities.HasFlag(BackendCapabilities.InstructionBudget))
        {
            LogBudgetIgnored(_logger, backendName, requested);
        }

        using IVirtualMachine vm = choice.Backend.CreateVirtualMachine(memory, new VirtualMachineOptions { InstructionBudget = options.InstructionBudget });
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(entry, memory.Size, GuestLayout.BootInfo));
        using CancellationTokenRegistration kick = stop.Token.Register(static s => ((IVcpu)s!).Interrupt(), vcpu);
        if (injection)
        {
            session.InterruptSink = vcpu.RequestInterrupt;
        }

        RunResult Finish(RunOutcome outcome, long status, string message)
        {
            session.StopTimer();
            session.Stop(DrainDeadline(outcome, started, options));
            stats.ConsoleBytesDiscarded = session.ConsoleBytesDiscarded;
            stats.Elapsed = Stopwatch.GetElapsedTime(started);
            stats.InstructionsRetired = vcpu.InstructionsRetired;
            stats.UnimplementedSyscalls = session.UnimplementedSyscalls;
            if (outcome == RunOutcome.Exited && session.FatalSignal is { } killed)
            {
                message = killed.Describe();
            }
            _metrics?.RecordRun(backendName, outcome.ToString(), stats.Elapsed);
            LogFinished(_logger, outcome, message);
            return new RunResult(outcome, status, backendName, message, stats) { TerminatingSignal = outcome == RunOutcome.Exited ? session.FatalSignal?.Signal : null };
        }

        try
        {
            while (true)
            {
                VcpuExit exit = vcpu.Run();
                stats.CountExit(exit.Kind);
                _metrics?.RecordExit(backendName, exit.Kind);
                if (HypercallTrap.IsHypercall(in exit))
                {
                    VcpuRegisters registers = vcpu.GetRegisters();
                    HypercallArgs args = HypercallTrap.ReadArguments(in registers);
                    string? name = _dispatcher.GetName(args.Code);
                    stats.CountHypercall(args.Code, registered: name is not null);
                    _metrics?.RecordHypercall(args.Code, name);
                    long result = _dispatcher.Dispatch(in args, session);
                    if (session.ExitRequested)
                    {
                        return Finish(RunOutcome.Exited, session.ExitStatus, $"guest exited with status {session.ExitStatus}");
                    }
                    vcpu.SetRegisters(registers with { Rax = unchecked((ulong)result) });
                    continue;
                }
                switch (exit.Kind)
                {
                    case VcpuExitKind.Interrupted:
                        if (cancellationToken.IsCancellationRequested)
                        {
                            return Finish(RunOutcome.Canceled, 0, "the run was cancelled");
                        }
                        if (stop.IsCancellationRequested)
                        {
                            return Finish(RunOutcome.TimedOut, 0, $"the guest did not exit within {FormatDuration(options.Timeout)}");
                        }
                        break; // spurious kick: keep running
                    case VcpuExitKind.BudgetExhausted:
                        return Finish(RunOutcome.BudgetExhausted, 0, $"the guest used its instruction budget of {options.InstructionBudget} without exiting");
                    case VcpuExitKind.Halt:
                        return Finish(RunOutcome.Faulted, 0, $"the guest executed hlt at rip 0x{exit.Rip:x}; a guest stops with the exit hypercall");
                    case VcpuExitKind.IoOut or VcpuExitKind.IoIn:
                        return Finish(RunOutcome.Faulted, 0, $"the guest {(exit.Kind == VcpuExitKind.IoOut ? "wrote to" : "read from")} I/O port 0x{exit.Address:x} at rip 0x{exit.Rip:x}; Paravirt guests do I/O through hypercalls");
                    case VcpuExitKind.Mmio:
                        return Finish(RunOutcome.Faulted, 0, $"the guest accessed guest-physical address 0x{exit.Address:x}, outside its {memory.Size >> 20} MiB of memory, at rip 0x{exit.Rip:x}");
                    case VcpuExitKind.Shutdown:
                        return Finish(RunOutcome.Faulted, 0, $"the guest shut down (triple fault) near rip 0x{exit.Rip:x}");
                    case VcpuExitKind.Fault:
                        return Finish(RunOutcome.Faulted, 0, $"the guest crashed: {exit.Detail} (rip 0x{exit.Rip:x})");
                    case VcpuExitKind.Unimplemented:
                        return Finish(RunOutcome.BackendFailed, 0, $"backend {backendName} cannot run this guest: {exit.Detail} (rip 0x{exit.Rip:x}); the guest did nothing wrong");
                    default:
                        return Finish(RunOutcome.BackendFailed, 0, $"backend {backendName} failed: {exit.Kind} {exit.Detail} (reason {exit.RawReason}, rip 0x{exit.Rip:x})");
                }
            }
        }
        finally
        {
            session.StopTimer(); // also when a backend throws: no interrupt is raised on a disposed vCPU
        }
    }

    /// <summary>
    /// Until when the end of a run waits for slow console readers: after an exit, up to
    /// <see cref="GuestLimits.OutputDrainTimeout"/> but never past the run's timeout; after a timeout, cancellation or
    /// fault, half of <see cref="GuestLimits.StopLatency"/> (the rest of that bound is for stopping the vCPU).
    /// </summary>
    private static long DrainDeadline(RunOutcome outcome, long started, GuestRunOptions options)
    {
        long now = Stopwatch.GetTimestamp();
        if (outcome != RunOutcome.Exited)
        {
            return now + Ticks(GuestLimits.StopLatency / 2);
        }
        long deadline = now + Ticks(options.Limits.OutputDrainTimeout);
        if (options.Timeout is TimeSpan timeout)
        {
            deadline = Math.Min(deadline, Math.Max(now, started + Ticks(timeout)));
        }
        return deadline;

        static long Ticks(TimeSpan t) => (long)Math.Min(t.TotalSeconds * Stopwatch.Frequency, long.MaxValue / 4);
    }

    /// <summary>A timeout as people write it (<c>2s</c>, <c>1.5s</c>, <c>250ms</c>, <c>2m</c>), not <c>00:00:02</c>.</summary>
    internal static string FormatDuration(TimeSpan? duration) => duration switch
    {
        null => "no limit",
        { TotalMilliseconds: < 1000 } d => $"{d.TotalMilliseconds:0.###}ms",
        { TotalSeconds: < 60 } d => $"{d.TotalSeconds:0.###}s",
        { TotalMinutes: < 60 } d when d.Seconds == 0 && d.Milliseconds == 0 => $"{d.TotalMinutes:0}m",
        { } d when d.Minutes == 0 && d.Seconds == 0 && d.Milliseconds == 0 => $"{d.TotalHours:0}h",
        { } d => $"{d.TotalSeconds:0.###}s",
    };

    /// <summary>Writes the hypercall page, the command line and the boot info into <paramref name="memory"/>.</summary>
    internal static void PrepareMemory(GuestMemory memory, ulong imageEnd, ReadOnlySpan<byte> commandLine, FeatureBits features = FeatureBits.Console | FeatureBits.WallClock | FeatureBits.Poll, ulong bootModules = 0, uint bootModuleCount = 0)
    {
        Span<byte> page = memory.GetSpan(new GuestAddress(GuestLayout.HypercallPage), HypercallPage.Size);
        page.Clear();
        HypercallStub.Bytes.CopyTo(page[(int)HypercallPage.EntryOffset..]);
        BinaryPrimitives.WriteUInt32LittleEndian(page[(int)HypercallPage.MagicOffset..], HypercallPage.Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(page[(int)HypercallPage.VersionOffset..], AbiVersion.Current.Packed);

        Span<byte> cmd = memory.GetSpan(new GuestAddress(GuestLayout.CommandLine), (ulong)GuestLayout.CommandLineMax);
        cmd.Clear();
        commandLine.CopyTo(cmd);

        ulong heapStart = (imageEnd + EntryConvention.PageSize - 1) & ~(EntryConvention.PageSize - 1);
        var bootInfo = new BootInfo
        {
            Size = BootInfo.CurrentSize,
            AbiMajor = AbiVersion.Current.Major,
            AbiMinor = AbiVersion.Current.Minor,
            HypercallPage = GuestLayout.HypercallPage,
            MemorySize = memory.Size,
            HeapStart = heapStart,
            CommandLine = commandLine.Length == 0 ? 0 : GuestLayout.CommandLine,
            CommandLineLength = (uint)commandLine.Length,
            VcpuCount = 1,
            Features0 = (ulong)features,
            BootModules = bootModules,
            BootModuleCount = bootModuleCount,
        };
        memory.Write(new GuestAddress(GuestLayout.BootInfo), in bootInfo);
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "backend {Backend}: {Reason}; guest ABI {Abi}, {MemoryMiB} MiB of guest memory")]
    private static partial void LogStarting(ILogger logger, string backend, string reason, string abi, ulong memoryMiB);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "backend {Backend} does not count instructions: the instruction budget of {Budget} is ignored; the wall-clock timeout applies")]
    private static partial void LogBudgetIgnored(ILogger logger, string backend, ulong budget);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "{Outcome}: {Message}")]
    private static partial void LogFinished(ILogger logger, RunOutcome outcome, string message);
}
