using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Diagnostics;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Vcpu;

/// <summary>How <see cref="GuestMachine.Run"/> stopped.</summary>
/// <param name="Outcome">The outcome (meaningless when <paramref name="Paused"/>).</param>
/// <param name="Status">The guest's exit status for <see cref="RunOutcome.Exited"/>.</param>
/// <param name="Message">One line describing the stop.</param>
/// <param name="Paused">A hypercall handler paused the guest (a sandbox's ready or return point); the hypercall is still pending.</param>
/// <param name="StackOverflow">The guest wrote into (emulator) or touched (KVM) the guard page below its stack.</param>
/// <param name="FaultAddress">The faulting guest address, for faults that have one.</param>
internal readonly record struct MachineStop(RunOutcome Outcome, long Status, string Message, bool Paused = false, bool StackOverflow = false, ulong FaultAddress = 0);

/// <summary>
/// One built guest: its memory (image, boot info, hypercall page, command line), session, VM and vCPU, and the exit
/// loop that runs it. The one place that builds and runs a VM: <see cref="GuestRunner"/> runs a guest to its exit with
/// it, a <see cref="Sandboxes.Sandbox"/> keeps one and runs it call by call. Not thread-safe: one thread runs it.
/// </summary>
internal sealed partial class GuestMachine : IDisposable
{
    private readonly HypercallDispatcher _dispatcher;
    private readonly ILogger _logger;
    private readonly ParavirtMetrics? _metrics;
    private readonly GuestRunOptions _options;
    private bool _disposed;

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
    /// given, otherwise the image, boot info, hypercall page and command line), the session, the VM and the vCPU.
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid (memory size, command line).</exception>
    /// <exception cref="ImageFormatException">The image does not fit in guest memory.</exception>
    /// <exception cref="BackendUnavailableException">The backend cannot run here.</exception>
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
        if (options.MemorySize < GuestMemory.MinSize || options.MemorySize > GuestMemory.MaxSize || options.MemorySize % EntryConvention.PageSize != 0)
        {
            throw new ArgumentException($"guest memory must be a multiple of 4 KiB between {GuestMemory.MinSize >> 20} MiB and {GuestMemory.MaxSize >> 30} GiB (got {options.MemorySize} bytes)", nameof(options));
        }
        byte[] commandLine = Encoding.UTF8.GetBytes(options.CommandLine);
        if (commandLine.Length >= GuestLayout.CommandLineMax || Array.IndexOf(commandLine, (byte)0) >= 0)
        {
            throw new ArgumentException($"the guest command line must be at most {GuestLayout.CommandLineMax - 1} bytes of UTF-8 without NUL", nameof(options));
        }
        if (snapshot is not null && snapshot.Root.Size != options.MemorySize)
        {
            throw new ArgumentException($"the snapshot holds {snapshot.Root.Size >> 20} MiB of guest memory, the options ask for {options.MemorySize >> 20} MiB", nameof(options));
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
        ulong imageEnd = Image.End;
        if (snapshot is null)
        {
            Memory = new GuestMemory(options.MemorySize);
            imageEnd = ElfLoader.LoadInto(Image, Memory);
        }
        else
        {
            Memory = new GuestMemory(snapshot.Root);
            foreach (int page in snapshot.OverlayPages)
            {
                snapshot.Page(page).CopyTo(Memory.GetSpan(new GuestAddress((ulong)page << 12), (ulong)GuestMemory.PageSize));
            }
            Memory.DirtyPageMap.Clear();
        }
        Session = new GuestSession(Memory, Image, options.ConsoleOutput ?? Stream.Null, CancellationToken.None)
        {
            Devices = options.Devices ?? [],
            Metrics = _metrics,
            Logger = _logger,
            Sandbox = sandbox,
        };
        if (sandbox is not null)
        {
            Session.OfferedFeatures |= FeatureBits.Sandbox;
        }
        if (snapshot is null)
        {
            GuestRunner.PrepareMemory(Memory, imageEnd, commandLine, Session.OfferedFeatures);
        }
        LogStarting(_logger, BackendName, Choice.Reason, Image.AbiVersion.ToString(), options.MemorySize >> 20);
        if (options.InstructionBudget is ulong requested && !Capabilities.HasFlag(BackendCapabilities.InstructionBudget))
        {
            LogBudgetIgnored(_logger, BackendName, requested);
        }
        Vm = Choice.Backend.CreateVirtualMachine(Memory, new VirtualMachineOptions
        {
            InstructionBudget = options.InstructionBudget,
            GuardPages = Image.StackGuard is ulong guard ? [guard] : [],
            TrackDirtyPages = sandbox is not null,
        });
        Vcpu = Vm.CreateVcpu(new VcpuStartState(Image.Entry, Memory.Size, GuestLayout.BootInfo));
    }

    /// <summary>
    /// Runs the vCPU until the guest exits, faults, runs out of budget, a hypercall handler pauses it, or
    /// <paramref name="stop"/> fires (<paramref name="cancellationToken"/>: cancelled; otherwise: timed out). The vCPU
    /// runs on the calling thread. <paramref name="goal"/> completes "the guest did not ... within" ("exit", or "finish the call").
    /// </summary>
    public MachineStop Run(CancellationToken stop, CancellationToken cancellationToken, TimeSpan? timeout, ulong? budget, string goal = "exit")
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        IVcpu vcpu = Vcpu;
        GuestSession session = Session;
        session.Stopping = stop;
        using CancellationTokenRegistration kick = stop.Register(static s => ((IVcpu)s!).Interrupt(), vcpu);
        RunStatistics stats = Statistics;
        string backendName = BackendName;
        while (true)
        {
            VcpuExit exit = vcpu.Run();
            stats.CountExit(exit.Kind);
            _metrics?.RecordExit(backendName, exit.Kind);
            if (HypercallTrap.IsHypercall(in exit))
            {
                VcpuRegisters registers = vcpu.GetRegisters();
                HypercallArgs args = HypercallTrap.ReadArguments(in registers);
                stats.CountHypercall(args.Code);
                _metrics?.RecordHypercall(args.Code, _dispatcher);
                long result = _dispatcher.Dispatch(in args, session);
                if (session.ExitRequested)
                {
                    return new MachineStop(RunOutcome.Exited, session.ExitStatus, $"guest exited with status {session.ExitStatus}");
                }
                if (session.PauseRequested)
                {
                    session.PauseRequested = false;
                    return new MachineStop(RunOutcome.Exited, 0, "paused", Paused: true);
                }
                vcpu.SetRegisters(registers with { Rax = unchecked((ulong)result) });
                continue;
            }
            switch (exit.Kind)
            {
                case VcpuExitKind.Interrupted:
                    if (cancellationToken.IsCancellationRequested)
                    {
                        return new MachineStop(RunOutcome.Canceled, 0, "the run was cancelled");
                    }
                    if (stop.IsCancellationRequested)
                    {
                        return new MachineStop(RunOutcome.TimedOut, 0, $"the guest did not {goal} within {GuestRunner.FormatDuration(timeout)}");
                    }
                    break; // spurious kick: keep running
                case VcpuExitKind.BudgetExhausted:
                    return new MachineStop(RunOutcome.BudgetExhausted, 0, $"the guest used its instruction budget of {budget} without {(goal == "exit" ? "exiting" : "finishing")}");
                case VcpuExitKind.Halt:
                    return new MachineStop(RunOutcome.Faulted, 0, $"the guest executed hlt at rip 0x{exit.Rip:x}; a guest stops with the exit hypercall");
                case VcpuExitKind.IoOut or VcpuExitKind.IoIn:
                    return new MachineStop(RunOutcome.Faulted, 0, $"the guest {(exit.Kind == VcpuExitKind.IoOut ? "wrote to" : "read from")} I/O port 0x{exit.Address:x} at rip 0x{exit.Rip:x}; Paravirt guests do I/O through hypercalls");
                case VcpuExitKind.Mmio when IsGuardPage(exit.Address):
                    return new MachineStop(RunOutcome.Faulted, 0, $"stack overflow: the guest touched 0x{exit.Address:x} in the guard page below its stack ({exit.Detail}) at rip 0x{exit.Rip:x}", StackOverflow: true, FaultAddress: exit.Address);
                case VcpuExitKind.Mmio:
                    return new MachineStop(RunOutcome.Faulted, 0, $"the guest accessed guest-physical address 0x{exit.Address:x}, outside its {Memory.Size >> 20} MiB of memory, at rip 0x{exit.Rip:x}", FaultAddress: exit.Address);
                case VcpuExitKind.Shutdown:
                    return new MachineStop(RunOutcome.Faulted, 0, $"the guest shut down (triple fault) near rip 0x{exit.Rip:x}");
                case VcpuExitKind.Fault:
                    return new MachineStop(RunOutcome.Faulted, 0, $"the guest crashed: {exit.Detail} (rip 0x{exit.Rip:x})", StackOverflow: exit.Address != 0 && IsGuardPage(exit.Address), FaultAddress: exit.Address);
                case VcpuExitKind.Unimplemented:
                    return new MachineStop(RunOutcome.BackendFailed, 0, $"backend {backendName} cannot run this guest: {exit.Detail} (rip 0x{exit.Rip:x}); the guest did nothing wrong");
                default:
                    return new MachineStop(RunOutcome.BackendFailed, 0, $"backend {backendName} failed: {exit.Kind} {exit.Detail} (reason {exit.RawReason}, rip 0x{exit.Rip:x})");
            }
        }
    }

    private bool IsGuardPage(ulong address) =>
        Image.StackGuard is ulong guard && address >= guard && address - guard < SandboxConstants.GuardPageSize;

    /// <summary>Lets every device deliver what the guest produced last (the run or call ended).</summary>
    public void StopDevices() => Session.StopDevices();

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        (Vcpu as IDisposable)?.Dispose();
        Vm?.Dispose();
        Memory?.Dispose();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "backend {Backend}: {Reason}; guest ABI {Abi}, {MemoryMiB} MiB of guest memory")]
    private static partial void LogStarting(ILogger logger, string backend, string reason, string abi, ulong memoryMiB);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "backend {Backend} does not count instructions: the instruction budget of {Budget} is ignored; the wall-clock timeout applies")]
    private static partial void LogBudgetIgnored(ILogger logger, string backend, ulong budget);
}
