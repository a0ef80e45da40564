using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Debugging;
using Paravirt.Hypervisor.Devices;
using Paravirt.Hypervisor.Diagnostics;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Vcpu;

/// <summary>
/// Runs one guest image to completion: chooses the backend, builds guest memory (image, boot info, hypercall page,
/// command line), creates the VM and its vCPU, and loops over VM exits, dispatching hypercalls, until the guest
/// exits, faults, runs out of budget or time, or is cancelled. The vCPU runs on the calling thread.
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
        return Run(image, options, _selector.Select(options.Backend), cancellationToken);
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
        byte[] commandLine = Encoding.UTF8.GetBytes(options.CommandLine);
        if (commandLine.Length >= GuestLayout.CommandLineMax || Array.IndexOf(commandLine, (byte)0) >= 0)
        {
            throw new ArgumentException($"the guest command line must be at most {GuestLayout.CommandLineMax - 1} bytes of UTF-8 without NUL", nameof(options));
        }

        var stats = new RunStatistics();
        long started = Stopwatch.GetTimestamp();
        using var memory = new GuestMemory(options.MemorySize);
        ulong imageEnd = ElfLoader.LoadInto(image, memory);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (options.Timeout is TimeSpan timeout)
        {
            stop.CancelAfter(timeout);
        }
        var session = new GuestSession(memory, image, options.ConsoleOutput ?? Stream.Null, stop.Token)
        {
            Devices = options.Devices ?? [],
            Metrics = _metrics,
            Logger = _logger,
        };
        PrepareMemory(memory, imageEnd, commandLine, session.OfferedFeatures);
        string backendName = choice.Backend.Name;
        LogStarting(_logger, backendName, choice.Reason, image.AbiVersion.ToString(), options.MemorySize >> 20);
        if (options.InstructionBudget is ulong requested && !choice.Backend.Capabilities.HasFlag(BackendCapabilities.InstructionBudget))
        {
            LogBudgetIgnored(_logger, backendName, requested);
        }

        if (options.Debugger is not null && !choice.Backend.Capabilities.HasFlag(BackendCapabilities.GuestDebug))
        {
            throw new BackendUnavailableException($"backend {backendName} cannot debug guests (no breakpoints or single-step); use --backend emulator or kvm");
        }

        using IVirtualMachine vm = choice.Backend.CreateVirtualMachine(memory, new VirtualMachineOptions { InstructionBudget = options.InstructionBudget });
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(image.Entry, memory.Size, GuestLayout.BootInfo, ExceptionTraps.Idt));
        using CancellationTokenRegistration kick = stop.Token.Register(static s => ((IVcpu)s!).Interrupt(), vcpu);
        bool pageTables = choice.Backend.Capabilities.HasFlag(BackendCapabilities.PageTables);
        IGuestDebugger? debugger = options.Debugger;
        GuestDebugTarget? target = debugger is null ? null : new GuestDebugTarget(vcpu, memory, choice.Backend, stop.Token);

        RunResult Finish(RunOutcome outcome, long status, string message, GuestFaultInfo? fault = null, VcpuState? faultState = null)
        {
            session.StopDevices();
            if (target is not null)
            {
                target.ClearAll(); // int3 bytes go back before the report reads the code
            }
            stats.Elapsed = Stopwatch.GetElapsedTime(started);
            stats.InstructionsRetired = vcpu.InstructionsRetired;
            _metrics?.RecordRun(backendName, outcome.ToString(), stats.Elapsed);
            LogFinished(_logger, outcome, message);
            var result = new RunResult(outcome, status, backendName, message, stats);
            if (fault is not null)
            {
                result = AddCrashReport(result, fault, faultState ?? vcpu.GetState(), memory, image, pageTables, options.CoreFile, session.PanicMessage);
            }
            debugger?.OnRunEnded(result);
            return result;
        }

        // Reports a stop to the debugger; returns the run's end when the debugger killed the guest.
        RunResult? DebugStop(DebugStopKind kind, ulong rip, ulong? watch = null, GuestFaultInfo? fault = null) => DebugStopCore(kind, rip, watch, fault, out _);

        RunResult? DebugStopCore(DebugStopKind kind, ulong rip, ulong? watch, GuestFaultInfo? fault, out bool deliverFault)
        {
            deliverFault = true;
            if (debugger is null || target is null)
            {
                return null;
            }
            target.BeginStop();
            DebugResume resume = debugger.OnStop(target, new DebugStop(kind, rip, watch, fault));
            deliverFault = resume.DeliverFault;
            switch (resume.Action)
            {
                case DebugResumeAction.Kill:
                    return Finish(RunOutcome.Canceled, 0, "the debugger killed the guest");
                case DebugResumeAction.Detach:
                    target.ClearAll();
                    LogDebuggerDetached(_logger);
                    debugger = null; // it closed its connection; the run ends without it
                    break;
                default:
                    target.SetStepping(resume.Action == DebugResumeAction.Step);
                    break;
            }
            return null;
        }

        // A crash: with a debugger, it sees the fault first (and may fix the state and retry); then the run ends.
        RunResult? Crash(in VcpuExit exit, RunOutcome outcome, string message, string? description = null) =>
            CrashWith(GuestFaultInfo.FromExit(in exit, description ?? message), exit.Rip, null, message);

        RunResult? CrashWith(GuestFaultInfo fault, ulong rip, VcpuState? state, string message)
        {
            if (debugger is not null)
            {
                RunResult? killed = DebugStopCore(DebugStopKind.Fault, rip, null, fault, out bool deliver);
                if (killed is not null)
                {
                    return killed;
                }
                if (!deliver)
                {
                    return null; // the debugger fixed something: run again
                }
            }
            return Finish(RunOutcome.Faulted, 0, message, fault, state);
        }

        // The default exception handlers reported a CPU exception (hardware backends): put the vCPU back on the faulting
        // instruction with the frame's rip, rsp and rflags (the stub touched no other register), then report it, or
        // hand a debugger's breakpoint or step that reached the guest (an intercept the backend lacked) to the debugger.
        RunResult? ExceptionTrap(in ExceptionFrame frame)
        {
            const ulong TrapFlag = 0x100;
            VcpuState state = vcpu.GetState();
            DebugStopKind? debugStop = null;
            ulong rip = frame.Rip, rflags = frame.Rflags;
            if (debugger is not null && target is not null)
            {
                if (frame.Vector == 3 && target.HasSoftwareBreakpoint(frame.Rip - 1))
                {
                    rip = frame.Rip - 1; // int3 is a trap: rip is past it
                    debugStop = DebugStopKind.Breakpoint;
                }
                else if (frame.Vector == 1)
                {
                    rflags &= ~TrapFlag;
                    debugStop = target.Stepping ? DebugStopKind.Step : DebugStopKind.Breakpoint;
                }
            }
            state.Registers = state.Registers with { Rip = rip, Rsp = frame.Rsp, Rflags = rflags };
            vcpu.SetState(state);
            if (debugStop is DebugStopKind kind)
            {
                return DebugStop(kind, rip);
            }
            string what = ExceptionTraps.Describe(frame.Vector) + (frame.Vector == 14 ? $": {((frame.ErrorCode & 2) != 0 ? "write" : "read")} at 0x{state.Cr2:x}" : "");
            var fault = new GuestFaultInfo(GuestFaultKind.CpuException, "the guest crashed: " + what, frame.Vector, frame.Vector == 14 ? state.Cr2 : null);
            return CrashWith(fault, rip, state, $"the guest crashed: {what} (rip 0x{rip:x})");
        }

        if (debugger is not null && DebugStop(DebugStopKind.Attach, image.Entry) is RunResult killedAtEntry)
        {
            return killedAtEntry;
        }

        while (true)
        {
            VcpuExit exit = vcpu.Run();
            stats.CountExit(exit.Kind);
            _metrics?.RecordExit(backendName, exit.Kind);
            if (ExceptionTraps.IsTrap(in exit) && ExceptionTraps.TryReadFrame(memory, vcpu.GetRegisters(), out ExceptionFrame frame))
            {
                if (ExceptionTrap(in frame) is RunResult ended)
                {
                    return ended;
                }
                continue;
            }
            if (HypercallTrap.IsHypercall(in exit))
            {
                VcpuRegisters registers = vcpu.GetRegisters();
                HypercallArgs args = HypercallTrap.ReadArguments(in registers);
                stats.CountHypercall(args.Code);
                _metrics?.RecordHypercall(args.Code, _dispatcher);
                long result = _dispatcher.Dispatch(in args, session);
                if (session.ExitRequested)
                {
                    return Finish(RunOutcome.Exited, session.ExitStatus, $"guest exited with status {session.ExitStatus}");
                }
                if (session.PanicMessage is string panic)
                {
                    (GuestFaultInfo fault, VcpuState panicState) = PanicFault(panic, session.PanicFrame, vcpu.GetState());
                    if (debugger is not null)
                    {
                        // The debugger sees the guest at its panic call; the run ends however it resumes.
                        RunResult? killed = DebugStop(DebugStopKind.Fault, registers.Rip, fault: fault);
                        if (killed is not null)
                        {
                            return killed;
                        }
                    }
                    return Finish(RunOutcome.Faulted, 0, fault.Description, fault, panicState);
                }
                vcpu.SetRegisters(registers with { Rax = unchecked((ulong)result) });
                continue;
            }
            RunResult? end;
            switch (exit.Kind)
            {
                case VcpuExitKind.Debug:
                    if (debugger is null)
                    {
                        break; // a stop asked for before a detach: nothing to report
                    }
                    DebugStopKind kind = exit.DebugReason switch
                    {
                        DebugStopReason.SingleStep => DebugStopKind.Step,
                        DebugStopReason.Watchpoint => DebugStopKind.Watchpoint,
                        _ => DebugStopKind.Breakpoint,
                    };
                    if (DebugStop(kind, exit.Rip, exit.DebugReason == DebugStopReason.Watchpoint ? exit.Address : null) is RunResult killed)
                    {
                        return killed;
                    }
                    break;
                case VcpuExitKind.Interrupted:
                    if (cancellationToken.IsCancellationRequested)
                    {
                        return Finish(RunOutcome.Canceled, 0, "the run was cancelled");
                    }
                    if (stop.IsCancellationRequested)
                    {
                        return Finish(RunOutcome.TimedOut, 0, $"the guest did not exit within {FormatDuration(options.Timeout)}");
                    }
                    if (target is not null && target.TakeStopRequest() && debugger is not null
                        && DebugStop(DebugStopKind.Interrupted, vcpu.GetRegisters().Rip) is RunResult interruptedKill)
                    {
                        return interruptedKill;
                    }
                    break; // spurious kick, or the debugger resumed: keep running
                case VcpuExitKind.BudgetExhausted:
                    return Finish(RunOutcome.BudgetExhausted, 0, $"the guest used its instruction budget of {options.InstructionBudget} without exiting");
                case VcpuExitKind.Halt:
                    end = Crash(in exit, RunOutcome.Faulted, $"the guest executed hlt at rip 0x{exit.Rip:x}; a guest stops with the exit hypercall");
                    if (end is not null)
                    {
                        return end;
                    }
                    break;
                case VcpuExitKind.IoOut or VcpuExitKind.IoIn:
                    end = Crash(in exit, RunOutcome.Faulted, $"the guest {(exit.Kind == VcpuExitKind.IoOut ? "wrote to" : "read from")} I/O port 0x{exit.Address:x} at rip 0x{exit.Rip:x}; Paravirt guests do I/O through hypercalls");
                    if (end is not null)
                    {
                        return end;
                    }
                    break;
                case VcpuExitKind.Mmio:
                    end = Crash(in exit, RunOutcome.Faulted, $"the guest accessed guest-physical address 0x{exit.Address:x}, outside its {memory.Size >> 20} MiB of memory, at rip 0x{exit.Rip:x}");
                    if (end is not null)
                    {
                        return end;
                    }
                    break;
                case VcpuExitKind.Shutdown:
                    end = Crash(in exit, RunOutcome.Faulted, $"the guest shut down (triple fault) near rip 0x{exit.Rip:x}");
                    if (end is not null)
                    {
                        return end;
                    }
                    break;
                case VcpuExitKind.Fault:
                    end = Crash(in exit, RunOutcome.Faulted, $"the guest crashed: {exit.Detail} (rip 0x{exit.Rip:x})", $"the guest crashed: {exit.Detail?.Replace($" at 0x{exit.Rip:x}", "", StringComparison.Ordinal)}");
                    if (end is not null)
                    {
                        return end;
                    }
                    break;
                case VcpuExitKind.Unimplemented:
                    return Finish(RunOutcome.BackendFailed, 0, $"backend {backendName} cannot run this guest: {exit.Detail} (rip 0x{exit.Rip:x}); the guest did nothing wrong");
                default:
                    return Finish(RunOutcome.BackendFailed, 0, $"backend {backendName} failed: {exit.Kind} {exit.Detail} (reason {exit.RawReason}, rip 0x{exit.Rip:x})");
            }
        }
    }

    /// <summary>The fault and the registers of a panic: those the guest passed in its frame, else those at the call.</summary>
    private static (GuestFaultInfo Fault, VcpuState State) PanicFault(string message, PanicFrame? frame, VcpuState atCall)
    {
        string firstLine = message.Split('\n', 2)[0];
        if (firstLine.Length > 200)
        {
            firstLine = firstLine[..200] + "...";
        }
        string description = "the guest panicked: " + firstLine;
        if (frame is not PanicFrame f)
        {
            return (new GuestFaultInfo(GuestFaultKind.Panic, description), atCall);
        }
        VcpuState state = atCall.Clone();
        state.Registers = new VcpuRegisters(f.Rax, f.Rbx, f.Rcx, f.Rdx, f.Rsi, f.Rdi, f.Rsp, f.Rbp, f.R8, f.R9, f.R10, f.R11, f.R12, f.R13, f.R14, f.R15, f.Rip, f.Rflags);
        int? vector = f.Vector == PanicConstants.NoVector ? null : (int)Math.Min(f.Vector, 255u);
        if (f.FaultAddress != 0)
        {
            state.Cr2 = f.FaultAddress;
        }
        return (new GuestFaultInfo(GuestFaultKind.Panic, description, vector, f.FaultAddress == 0 ? null : f.FaultAddress, (int)Math.Min(f.Signal, 255u)), state);
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
    internal static void PrepareMemory(GuestMemory memory, ulong imageEnd, ReadOnlySpan<byte> commandLine, FeatureBits features = FeatureBits.Console | FeatureBits.WallClock | FeatureBits.Poll)
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
        };
        memory.Write(new GuestAddress(GuestLayout.BootInfo), in bootInfo);
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "backend {Backend}: {Reason}; guest ABI {Abi}, {MemoryMiB} MiB of guest memory")]
    private static partial void LogStarting(ILogger logger, string backend, string reason, string abi, ulong memoryMiB);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "backend {Backend} does not count instructions: the instruction budget of {Budget} is ignored; the wall-clock timeout applies")]
    private static partial void LogBudgetIgnored(ILogger logger, string backend, ulong budget);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "the debugger detached; the guest runs on")]
    private static partial void LogDebuggerDetached(ILogger logger);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "cannot write the core file {Path}: {Reason}")]
    private static partial void LogCoreFileFailed(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "{Outcome}: {Message}")]
    private static partial void LogFinished(ILogger logger, RunOutcome outcome, string message);
}
