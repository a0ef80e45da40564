using System.Diagnostics;
using System.Text;
using Paravirt.Hypervisor.Debugging;
using Paravirt.Hypervisor.Linux;

namespace Paravirt.Hypervisor.Running;

/// <summary>How <see cref="GuestMachine.Run"/> stopped.</summary>
/// <param name="Outcome">The outcome (meaningless when <paramref name="Paused"/>).</param>
/// <param name="Status">The guest's exit status for <see cref="RunOutcome.Exited"/>.</param>
/// <param name="Message">One line describing the stop.</param>
/// <param name="Paused">A hypercall handler paused the guest (a sandbox's ready or return point); the hypercall is still pending.</param>
/// <param name="StackOverflow">The guest touched the guard page below its stack (KVM: any access; the emulator: any access its MMU translates there).</param>
/// <param name="FaultAddress">The faulting guest address, for faults that have one.</param>
/// <param name="Fault">For a crash (<see cref="RunOutcome.Faulted"/>): what failed, for the crash report.</param>
/// <param name="FaultState">The registers of the crash when they are not the vCPU's current ones (a default exception handler's frame, a panic frame).</param>
internal readonly record struct MachineStop(RunOutcome Outcome, long Status, string Message, bool Paused = false, bool StackOverflow = false, ulong FaultAddress = 0,
    GuestFaultInfo? Fault = null, VcpuState? FaultState = null);

/// <summary>
/// One built guest: its memory (a Paravirt image, or a Linux executable with the Linux personality and its boot
/// modules; boot info, hypercall page, command line), its session (devices, limits, the paravirtual timer), VM and
/// vCPU, and the exit loop that runs it. The one place that builds and runs a VM: <see cref="GuestRunner"/> runs a
/// guest to its exit with it, a <see cref="Sandboxes.Sandbox"/> keeps one and runs it call by call. Not thread-safe:
/// one thread runs it.
/// </summary>
internal sealed partial class GuestMachine : IDisposable
{
    private readonly HypercallDispatcher _dispatcher;
    private readonly ILogger _logger;
    private readonly ParavirtMetrics? _metrics;
    private readonly GuestRunOptions _options;
    private bool _disposed;
    /// <summary>The attached debugger (<see cref="GuestRunOptions.Debugger"/>) until it detaches.</summary>
    private IGuestDebugger? _debugger;
    private GuestDebugTarget? _target;

    private GuestMachine(GuestImage image, GuestRunOptions options, BackendChoice choice, HypercallDispatcher dispatcher, ILogger logger, ParavirtMetrics? metrics)
    {
        Image = image;
        _options = options;
        Choice = choice;
        _dispatcher = dispatcher;
        _logger = logger;
        _metrics = metrics;
        BackendName = choice.Backend.Name;
        Capabilities = choice.Backend.Capabilities;
    }

    public GuestImage Image { get; }
    public BackendChoice Choice { get; }
    public string BackendName { get; }
    public BackendCapabilities Capabilities { get; }
    public GuestMemory Memory { get; private set; } = null!;
    public GuestSession Session { get; private set; } = null!;
    public IVirtualMachine Vm { get; private set; } = null!;
    public IVcpu Vcpu { get; private set; } = null!;
    public RunStatistics Statistics { get; } = new();

    /// <summary>True when the backend tracks the pages the guest writes (so snapshots copy only those).</summary>
    public bool TracksDirtyPages => Capabilities.HasFlag(BackendCapabilities.DirtyPageTracking);

    /// <summary>
    /// Builds a guest: checks the options, creates guest memory (from <paramref name="snapshot"/>'s contents when
    /// given, otherwise the image — with the Linux personality for a Linux executable — boot info, hypercall page and
    /// command line), the session, the VM and the vCPU.
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid (memory size, limits, command line).</exception>
    /// <exception cref="ImageFormatException">The image does not fit in guest memory.</exception>
    /// <exception cref="BackendUnavailableException">The backend cannot run here, or cannot run this image.</exception>
    public static GuestMachine Create(
        GuestImage image,
        GuestRunOptions options,
        BackendChoice choice,
        HypercallDispatcher dispatcher,
        ILogger logger,
        ParavirtMetrics? metrics,
        Sandboxes.ISandboxChannel? sandbox = null,
        MemorySnapshot? snapshot = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(choice);
        if (!GuestMemory.IsValidSize(options.MemorySize))
        {
            throw new ArgumentException($"guest memory must be {GuestMemory.SizeRule} (got {options.MemorySize} bytes)", nameof(options));
        }
        ArgumentNullException.ThrowIfNull(options.Limits);
        options.Limits.Validate();
        // Most runs have no command line: then nothing to encode or search (cold code in a process's first VMs).
        byte[] commandLine = options.CommandLine.Length == 0 ? [] : Encoding.UTF8.GetBytes(options.CommandLine);
        if (commandLine.Length >= GuestLayout.CommandLineMax || (commandLine.Length != 0 && Array.IndexOf(commandLine, (byte)0) >= 0))
        {
            throw new ArgumentException($"the guest command line must be at most {GuestLayout.CommandLineMax - 1} bytes of UTF-8 without NUL", nameof(options));
        }
        if (snapshot is not null && snapshot.Root.Size != options.MemorySize)
        {
            throw new ArgumentException($"the snapshot holds {snapshot.Root.Size >> 20} MiB of guest memory, the options ask for {options.MemorySize >> 20} MiB", nameof(options));
        }
        if (image.Kind == GuestImageKind.LinuxExecutable && !choice.Backend.Capabilities.HasFlag(BackendCapabilities.SupervisorMode))
        {
            throw new BackendUnavailableException($"backend '{choice.Backend.Name}' cannot run a Linux executable: {BackendSelector.Lacks(choice.Backend, BackendCapabilities.SupervisorMode)}");
        }
        if (options.Debugger is not null && !choice.Backend.Capabilities.HasFlag(BackendCapabilities.GuestDebug))
        {
            throw new BackendUnavailableException($"backend {choice.Backend.Name} cannot debug guests (no breakpoints or single-step); use --backend emulator or kvm");
        }

        var machine = new GuestMachine(image, options, choice, dispatcher, logger, metrics);
        try
        {
            machine.Build(commandLine, sandbox, snapshot);
            return machine;
        }
        catch
        {
            machine.Dispose();
            throw;
        }
    }

    private void Build(byte[] commandLine, Sandboxes.ISandboxChannel? sandbox, MemorySnapshot? snapshot)
    {
        GuestRunOptions options = _options;
        ulong entry = Image.Entry;
        ulong imageEnd = Image.End;
        LinuxLayout? linux = null;
        if (snapshot is not null)
        {
            Memory = new GuestMemory(snapshot.Root);
            foreach (int page in snapshot.OverlayPages)
            {
                Memory.Write(new GuestAddress((ulong)page << 12), snapshot.Page(page));
            }
            Memory.ClearDirtyPages();
        }
        else if (Image.Kind == GuestImageKind.LinuxExecutable)
        {
            Memory = new GuestMemory(options.MemorySize);
            IReadOnlyList<string> argv = options.Arguments.Count > 0 ? options.Arguments : [Image.SourcePath is { } p ? Path.GetFileName(p) : "app"];
            linux = LinuxPersonality.Load(Image, Memory, LinuxPersonality.EncodeArguments(argv, options.Environment));
            entry = linux.Value.Entry;
            imageEnd = linux.Value.HeapStart;
        }
        else
        {
            Memory = new GuestMemory(options.MemorySize);
            imageEnd = ElfLoader.LoadInto(Image, Memory);
        }

        Session = new GuestSession(Memory, Image, options.ConsoleOutput ?? Stream.Null, CancellationToken.None)
        {
            Devices = options.Devices ?? [],
            Metrics = _metrics,
            Logger = _logger,
            Limits = options.Limits,
            Sandbox = sandbox,
        };
        if (sandbox is not null)
        {
            Session.OfferedFeatures |= FeatureBits.Sandbox;
        }
        bool injection = Capabilities.HasFlag(BackendCapabilities.InterruptInjection);
        if (injection)
        {
            Session.OfferedFeatures |= FeatureBits.Timer;
        }
        if (snapshot is null)
        {
            GuestRunner.PrepareMemory(Memory, imageEnd, commandLine, Session.OfferedFeatures, linux?.BootModules ?? 0, linux?.BootModuleCount ?? 0);
        }
        LogStarting(_logger, BackendName, Choice.Reason, Image.AbiVersion, options.MemorySize >> 20);
        if (options.InstructionBudget is ulong requested && !Capabilities.HasFlag(BackendCapabilities.InstructionBudget))
        {
            LogBudgetIgnored(_logger, BackendName, requested);
        }
        Vm = Choice.Backend.CreateVirtualMachine(Memory, new VirtualMachineOptions
        {
            InstructionBudget = options.InstructionBudget,
            GuardPages = Image.StackGuard is ulong guard ? [guard] : [],
            TrackDirtyPages = sandbox is not null,
            CodeShareKey = Image,
        });
        // The default exception handlers (ExceptionTraps, written by PrepareMemory) until the guest loads an IDT of its own.
        Vcpu = Vm.CreateVcpu(new VcpuStartState(entry, Memory.Size, GuestLayout.BootInfo, ExceptionTraps.Idt));
        _debugger = options.Debugger;
        if (injection)
        {
            Session.InterruptSink = Vcpu.RequestInterrupt;
        }
    }

    /// <summary>
    /// Runs the vCPU until the guest exits, faults, runs out of budget, a hypercall handler pauses it,
    /// <paramref name="cancellationToken"/> fires (<see cref="RunOutcome.Canceled"/>) or <paramref name="timeout"/>
    /// passes (<see cref="RunOutcome.TimedOut"/>; timed by <see cref="RunDeadlines"/>' dedicated thread). The vCPU runs
    /// on the calling thread. <paramref name="budget"/> is named in the budget message; <paramref name="goal"/>
    /// completes "the guest did not ... within" ("exit", or "finish the call").
    /// </summary>
    public MachineStop Run(CancellationToken cancellationToken, TimeSpan? timeout, ulong? budget, string goal = "exit")
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (timeout is not TimeSpan limit)
        {
            return RunUntil(cancellationToken, cancellationToken, timeout, budget, goal);
        }
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        MachineStop end;
        using (RunDeadlines.Schedule(stop, limit))
        {
            end = RunUntil(stop.Token, cancellationToken, timeout, budget, goal);
        }
        // What runs after the run (draining the devices) still sees a stopped run as stopping.
        Session.Stopping = stop.IsCancellationRequested ? new CancellationToken(canceled: true) : cancellationToken;
        return end;
    }

    private MachineStop RunUntil(CancellationToken stop, CancellationToken cancellationToken, TimeSpan? timeout, ulong? budget, string goal)
    {
        IVcpu vcpu = Vcpu;
        GuestSession session = Session;
        session.Stopping = stop;
        using CancellationTokenRegistration kick = stop.Register(static s => ((IVcpu)s!).Interrupt(), vcpu);
        RunStatistics stats = Statistics;
        string backendName = BackendName;
        if (_debugger is not null && _target is null)
        {
            _target = new GuestDebugTarget(vcpu, Memory, Choice.Backend, stop);
            if (DebugStop(DebugStopKind.Attach, vcpu.GetRegisters().Rip) is MachineStop killedAtEntry)
            {
                return killedAtEntry;
            }
        }
        while (true)
        {
            VcpuExit exit = vcpu.Run();
            stats.CountExit(exit.Kind);
            _metrics?.RecordExit(backendName, exit.Kind);
            if (ExceptionTraps.IsTrap(in exit) && ExceptionTraps.TryReadFrame(Memory, vcpu.GetRegisters(), out ExceptionFrame frame))
            {
                if (ExceptionTrap(in frame) is MachineStop trapped)
                {
                    return trapped;
                }
                continue;
            }
            if (HypercallTrap.IsHypercall(in exit))
            {
                HypercallArgs args = HypercallTrap.ReadArguments(vcpu);
                string? name = _dispatcher.GetName(args.Code);
                stats.CountHypercall(args.Code, registered: name is not null);
                _metrics?.RecordHypercall(args.Code, name);
                long result = _dispatcher.Dispatch(in args, session);
                if (session.ExitRequested)
                {
                    if (session.FatalSignal is { Frame: PanicFrame signalFrame } killed)
                    {
                        // A Linux application killed by a signal: the exit status stays 128 + signo, and the report,
                        // core file and debugger get the application's registers at the failure.
                        (GuestFaultInfo fault, VcpuState state) = PanicFault(killed.Describe(), signalFrame, vcpu.GetState(), killed.Signal);
                        if (DebugStopAt(state, fault) is MachineStop killedAtSignal)
                        {
                            return killedAtSignal;
                        }
                        return Ended(new MachineStop(RunOutcome.Exited, session.ExitStatus, killed.Describe(), Fault: fault, FaultState: state));
                    }
                    return Ended(new MachineStop(RunOutcome.Exited, session.ExitStatus,
                        session.FatalSignal is { } signalled ? signalled.Describe() : $"guest exited with status {session.ExitStatus}"));
                }
                if (session.PanicMessage is string panic)
                {
                    (GuestFaultInfo fault, VcpuState panicState) = PanicFault("the guest panicked: " + panic, session.PanicFrame, vcpu.GetState());
                    if (DebugStopAt(panicState, fault) is MachineStop killedAtPanic)
                    {
                        return killedAtPanic;
                    }
                    return Crashed(fault.Description, fault, panicState);
                }
                if (session.PauseRequested)
                {
                    session.PauseRequested = false;
                    return new MachineStop(RunOutcome.Exited, 0, "paused", Paused: true);
                }
                HypercallTrap.WriteResult(vcpu, result);
                continue;
            }
            MachineStop? end;
            switch (exit.Kind)
            {
                case VcpuExitKind.Debug:
                    if (_debugger is null)
                    {
                        break; // a stop asked for before a detach: nothing to report
                    }
                    DebugStopKind kind = exit.DebugReason switch
                    {
                        DebugStopReason.SingleStep => DebugStopKind.Step,
                        DebugStopReason.Watchpoint => DebugStopKind.Watchpoint,
                        _ => DebugStopKind.Breakpoint,
                    };
                    if (DebugStop(kind, exit.Rip, exit.DebugReason == DebugStopReason.Watchpoint ? exit.Address : null) is MachineStop killedAtStop)
                    {
                        return killedAtStop;
                    }
                    break;
                case VcpuExitKind.Interrupted:
                    if (cancellationToken.IsCancellationRequested)
                    {
                        return Ended(new MachineStop(RunOutcome.Canceled, 0, "the run was cancelled"));
                    }
                    if (stop.IsCancellationRequested)
                    {
                        return Ended(new MachineStop(RunOutcome.TimedOut, 0, $"the guest did not {goal} within {GuestRunner.FormatDuration(timeout)}"));
                    }
                    if (_target is not null && _target.TakeStopRequest() && _debugger is not null
                        && DebugStop(DebugStopKind.Interrupted, vcpu.GetRegisters().Rip) is MachineStop killedAtInterrupt)
                    {
                        return killedAtInterrupt;
                    }
                    break; // spurious kick, or the debugger resumed: keep running
                case VcpuExitKind.BudgetExhausted:
                    return Ended(new MachineStop(RunOutcome.BudgetExhausted, 0, $"the guest used its instruction budget of {budget} without {(goal == "exit" ? "exiting" : "finishing")}"));
                case VcpuExitKind.Halt:
                    end = Crash(in exit, $"the guest executed hlt at rip 0x{exit.Rip:x}; a guest stops with the exit hypercall");
                    if (end is not null)
                    {
                        return end.Value;
                    }
                    break;
                case VcpuExitKind.IoOut or VcpuExitKind.IoIn:
                    end = Crash(in exit, $"the guest {(exit.Kind == VcpuExitKind.IoOut ? "wrote to" : "read from")} I/O port 0x{exit.Address:x} at rip 0x{exit.Rip:x}; Paravirt guests do I/O through hypercalls");
                    if (end is not null)
                    {
                        return end.Value;
                    }
                    break;
                case VcpuExitKind.Mmio or VcpuExitKind.Fault when IsGuardPage(exit.Address):
                    end = Crash(in exit, $"stack overflow: the guest touched 0x{exit.Address:x} in the guard page below its stack ({exit.Detail}) at rip 0x{exit.Rip:x}", stackOverflow: true);
                    if (end is not null)
                    {
                        return end.Value;
                    }
                    break;
                case VcpuExitKind.Mmio:
                    end = Crash(in exit, $"the guest accessed guest-physical address 0x{exit.Address:x}, outside its {Memory.Size >> 20} MiB of memory, at rip 0x{exit.Rip:x}");
                    if (end is not null)
                    {
                        return end.Value;
                    }
                    break;
                case VcpuExitKind.Shutdown:
                    end = Crash(in exit, $"the guest shut down (triple fault) near rip 0x{exit.Rip:x}");
                    if (end is not null)
                    {
                        return end.Value;
                    }
                    break;
                case VcpuExitKind.Fault:
                    end = Crash(in exit, $"the guest crashed: {exit.Detail} (rip 0x{exit.Rip:x})", description: $"the guest crashed: {exit.Detail?.Replace($" at 0x{exit.Rip:x}", "", StringComparison.Ordinal)}");
                    if (end is not null)
                    {
                        return end.Value;
                    }
                    break;
                case VcpuExitKind.Unimplemented:
                    return Ended(new MachineStop(RunOutcome.BackendFailed, 0, $"backend {backendName} cannot run this guest: {exit.Detail} (rip 0x{exit.Rip:x}); the guest did nothing wrong"));
                default:
                    return Ended(new MachineStop(RunOutcome.BackendFailed, 0, $"backend {backendName} failed: {exit.Kind} {exit.Detail} (reason {exit.RawReason}, rip 0x{exit.Rip:x})"));
            }
        }
    }

    /// <summary>The run ends (not a pause): the debugger's breakpoints come out of guest memory (int3 bytes back before a crash report reads the code).</summary>
    private MachineStop Ended(MachineStop stop)
    {
        _target?.ClearAll();
        return stop;
    }

    /// <summary>Reports a stop to the debugger; returns the run's end when the debugger killed the guest.</summary>
    private MachineStop? DebugStop(DebugStopKind kind, ulong rip, ulong? watch = null, GuestFaultInfo? fault = null) => DebugStopCore(kind, rip, watch, fault, out _);

    private MachineStop? DebugStopCore(DebugStopKind kind, ulong rip, ulong? watch, GuestFaultInfo? fault, out bool deliverFault)
    {
        deliverFault = true;
        if (_debugger is null || _target is null)
        {
            return null;
        }
        _target.BeginStop();
        DebugResume resume = _debugger.OnStop(_target, new DebugStop(kind, rip, watch, fault));
        deliverFault = resume.DeliverFault;
        switch (resume.Action)
        {
            case DebugResumeAction.Kill:
                return Ended(new MachineStop(RunOutcome.Canceled, 0, "the debugger killed the guest"));
            case DebugResumeAction.Detach:
                _target.ClearAll();
                LogDebuggerDetached(_logger);
                _debugger = null; // it closed its connection; the run goes on without it
                break;
            default:
                _target.SetStepping(resume.Action == DebugResumeAction.Step);
                break;
        }
        return null;
    }

    /// <summary>A crash: with a debugger, it sees the fault first (and may fix the state and retry: null); then the run ends.</summary>
    private MachineStop? Crash(in VcpuExit exit, string message, string? description = null, bool stackOverflow = false) =>
        CrashWith(GuestFaultInfo.FromExit(in exit, description ?? message), exit.Rip, null, message, stackOverflow, exit.Address);

    private MachineStop? CrashWith(GuestFaultInfo fault, ulong rip, VcpuState? state, string message, bool stackOverflow = false, ulong faultAddress = 0)
    {
        if (_debugger is not null)
        {
            MachineStop? killed = DebugStopCore(DebugStopKind.Fault, rip, null, fault, out bool deliver);
            if (killed is not null)
            {
                return killed;
            }
            if (!deliver)
            {
                return null; // the debugger fixed something: run again
            }
        }
        return Crashed(message, fault, state, stackOverflow, faultAddress);
    }

    private MachineStop Crashed(string message, GuestFaultInfo fault, VcpuState? state, bool stackOverflow = false, ulong faultAddress = 0) =>
        Ended(new MachineStop(RunOutcome.Faulted, 0, message, StackOverflow: stackOverflow, FaultAddress: faultAddress, Fault: fault, FaultState: state ?? Vcpu.GetState()));

    /// <summary>
    /// The default exception handlers reported a CPU exception (hardware backends): puts the vCPU back on the faulting
    /// instruction with the frame's rip, rsp and rflags (the stub touched no other register), then reports it, or
    /// hands a debugger's breakpoint or step that reached the guest (an intercept the backend lacked) to the debugger.
    /// </summary>
    private MachineStop? ExceptionTrap(in ExceptionFrame frame)
    {
        const ulong TrapFlag = 0x100;
        VcpuState state = Vcpu.GetState();
        DebugStopKind? debugStop = null;
        ulong rip = frame.Rip, rflags = frame.Rflags;
        if (_debugger is not null && _target is not null)
        {
            if (frame.Vector == 3 && _target.HasSoftwareBreakpoint(frame.Rip - 1))
            {
                rip = frame.Rip - 1; // int3 is a trap: rip is past it
                debugStop = DebugStopKind.Breakpoint;
            }
            else if (frame.Vector == 1)
            {
                rflags &= ~TrapFlag;
                debugStop = _target.Stepping ? DebugStopKind.Step : DebugStopKind.Breakpoint;
            }
        }
        state.Registers = state.Registers with { Rip = rip, Rsp = frame.Rsp, Rflags = rflags };
        Vcpu.SetState(state);
        if (debugStop is DebugStopKind kind)
        {
            return DebugStop(kind, rip);
        }
        ulong? address = frame.Vector == 14 ? state.Cr2 : null;
        string what = ExceptionTraps.Describe(frame.Vector) + (address is ulong cr2 ? $": {((frame.ErrorCode & 2) != 0 ? "write" : "read")} at 0x{cr2:x}" : "");
        var fault = new GuestFaultInfo(GuestFaultKind.CpuException, "the guest crashed: " + what, frame.Vector, address);
        if (address is ulong a && IsGuardPage(a))
        {
            return CrashWith(fault, rip, state, $"stack overflow: the guest touched 0x{a:x} in the guard page below its stack ({what}) at rip 0x{rip:x}", stackOverflow: true, faultAddress: a);
        }
        return CrashWith(fault, rip, state, $"the guest crashed: {what} (rip 0x{rip:x})", faultAddress: address ?? 0);
    }

    /// <summary>
    /// A debugger sees a panic or a fatal signal, whose run ends however it resumes, with the registers of the failure
    /// (<paramref name="state"/>: the guest's frame, or those at the call): the vCPU is loaded with them first.
    /// </summary>
    private MachineStop? DebugStopAt(VcpuState state, GuestFaultInfo fault)
    {
        if (_debugger is null)
        {
            return null;
        }
        Vcpu.SetState(state);
        return DebugStop(DebugStopKind.Fault, state.Registers.Rip, fault: fault);
    }

    /// <summary>The fault and the registers of a panic or a Linux application's fatal signal: those the guest passed in its frame, else those at the call.</summary>
    private static (GuestFaultInfo Fault, VcpuState State) PanicFault(string what, PanicFrame? frame, VcpuState atCall, int signal = 0)
    {
        string description = what.Split('\n', 2)[0];
        if (description.Length > 220)
        {
            description = description[..220] + "...";
        }
        if (frame is not PanicFrame f)
        {
            return (new GuestFaultInfo(GuestFaultKind.Panic, description, Signal: signal), atCall);
        }
        VcpuState state = atCall.Clone();
        state.Registers = new VcpuRegisters(f.Rax, f.Rbx, f.Rcx, f.Rdx, f.Rsi, f.Rdi, f.Rsp, f.Rbp, f.R8, f.R9, f.R10, f.R11, f.R12, f.R13, f.R14, f.R15, f.Rip, f.Rflags);
        int? vector = f.Vector == PanicConstants.NoVector ? null : (int)Math.Min(f.Vector, 255u);
        if (f.FaultAddress != 0)
        {
            state.Cr2 = f.FaultAddress;
        }
        return (new GuestFaultInfo(GuestFaultKind.Panic, description, vector, f.FaultAddress == 0 ? null : f.FaultAddress, signal != 0 ? signal : (int)Math.Min(f.Signal, 255u)), state);
    }

    private bool IsGuardPage(ulong address) =>
        Image.StackGuard is ulong guard && address >= guard && address - guard < SandboxConstants.GuardPageSize;

    /// <summary>
    /// The end of a run (or of a sandbox call): each device delivers what the guest produced last and the console
    /// output queue drains, waiting for slow readers until <see cref="DrainDeadline"/>; then the statistics that are
    /// read rather than counted are brought up to date. The timer keeps running (<see cref="Dispose"/> stops it).
    /// </summary>
    public void Drain(RunOutcome outcome, long started, TimeSpan? timeout)
    {
        Session.Stop(DrainDeadline(outcome, started, timeout, _options.Limits));
        RunStatistics stats = Statistics;
        stats.ConsoleBytesDiscarded = Session.ConsoleBytesDiscarded;
        stats.InstructionsRetired = Vcpu.InstructionsRetired;
        stats.UnimplementedSyscalls = Session.UnimplementedSyscalls;
    }

    /// <summary>
    /// Until when the end of a run waits for slow console readers: after an exit, up to
    /// <see cref="GuestLimits.OutputDrainTimeout"/> but never past the run's timeout; after a timeout, cancellation or
    /// fault, half of <see cref="GuestLimits.StopLatency"/> (the rest of that bound is for stopping the vCPU).
    /// </summary>
    private static long DrainDeadline(RunOutcome outcome, long started, TimeSpan? timeout, GuestLimits limits)
    {
        long now = Stopwatch.GetTimestamp();
        if (outcome != RunOutcome.Exited)
        {
            return now + Ticks(GuestLimits.StopLatency / 2);
        }
        long deadline = now + Ticks(limits.OutputDrainTimeout);
        if (timeout is TimeSpan t)
        {
            deadline = Math.Min(deadline, Math.Max(now, started + Ticks(t)));
        }
        return deadline;

        static long Ticks(TimeSpan t) => (long)Math.Min(t.TotalSeconds * Stopwatch.Frequency, long.MaxValue / 4);
    }

    /// <summary>Stops the timer (no interrupt is raised on a disposed vCPU), ends the console output, releases the vCPU, VM and memory.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Session?.StopTimer();
        Session?.Dispose();
        Vcpu?.Dispose();
        Vm?.Dispose();
        Memory?.Dispose();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "backend {Backend}: {Reason}; guest ABI {Abi}, {MemoryMiB} MiB of guest memory")]
    private static partial void LogStarting(ILogger logger, string backend, string reason, AbiVersion abi, ulong memoryMiB);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "the debugger detached; the guest runs on")]
    private static partial void LogDebuggerDetached(ILogger logger);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "backend {Backend} does not count instructions: the instruction budget of {Budget} is ignored; the wall-clock timeout applies")]
    private static partial void LogBudgetIgnored(ILogger logger, string backend, ulong budget);
}
