using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Paravirt.Hypervisor.Debugging;

namespace Paravirt.Hypervisor.Running;

/// <summary>
/// Runs one guest image to completion: chooses the backend, builds the guest (a <see cref="GuestMachine"/>: guest
/// memory with the image, boot info, hypercall page and command line, the VM and its vCPU) and runs its exit loop,
/// dispatching hypercalls, until the guest exits, faults, runs out of budget or time, or is cancelled; then lets the
/// devices and the console output drain. The vCPU runs on the calling thread. A static Linux
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
        long started = Stopwatch.GetTimestamp();
        using GuestMachine machine = GuestMachine.Create(image, options, choice, _dispatcher, _logger, _metrics);
        MachineStop end = machine.Run(cancellationToken, options.Timeout, options.InstructionBudget);
        machine.Session.StopTimer();
        machine.Drain(end.Outcome, started, options.Timeout);
        RunStatistics stats = machine.Statistics;
        stats.Elapsed = Stopwatch.GetElapsedTime(started);
        _metrics?.RecordRun(machine.BackendName, end.Outcome.ToString(), stats.Elapsed);
        LogFinished(_logger, end.Outcome, end.Message);
        var result = new RunResult(end.Outcome, end.Status, machine.BackendName, end.Message, stats)
        {
            TerminatingSignal = end.Outcome == RunOutcome.Exited ? machine.Session.FatalSignal?.Signal : null,
        };
        if (end.Fault is GuestFaultInfo fault && end.FaultState is VcpuState state)
        {
            result = AddCrashReport(result, fault, state, machine.Memory, image, machine.Capabilities.HasFlag(BackendCapabilities.PageTables), options.CoreFile, machine.Session.PanicMessage);
        }
        options.Debugger?.OnRunEnded(result);
        return result;
    }

    /// <summary>Builds the crash report (and the core file, when asked) for a faulted run; neither can fail the run.</summary>
    private RunResult AddCrashReport(RunResult result, GuestFaultInfo fault, VcpuState state, GuestMemory memory, GuestImage image, bool pageTables, string? coreFile, string? panicMessage)
    {
        var space = new GuestAddressSpace(memory, state, pageTables);
        CrashReport report = CrashReporter.Build(fault, state, space, image.Symbols, panicMessage);
        result = result with { Crash = report };
        if (coreFile is not null)
        {
            try
            {
                ElfCoreWriter.Write(coreFile, state, space, fault, image.FileName ?? "guest");
                result = result with { CoreFile = coreFile };
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                LogCoreFileFailed(_logger, coreFile, e.Message);
                result = result with { CoreFileError = e.Message };
            }
        }
        return result;
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
    internal static void PrepareMemory(GuestMemory memory, ulong imageEnd, ReadOnlySpan<byte> commandLine, FeatureBits features = GuestSession.BaseFeatures, ulong bootModules = 0, uint bootModuleCount = 0)
    {
        ExceptionTraps.Write(memory);
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

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "cannot write the core file {Path}: {Reason}")]
    private static partial void LogCoreFileFailed(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "{Outcome}: {Message}")]
    private static partial void LogFinished(ILogger logger, RunOutcome outcome, string message);
}
