namespace Paravirt.Hypervisor.Debugging;

/// <summary>Kinds of breakpoint a debugger inserts (the <c>Z0</c>-<c>Z4</c> packets of the GDB protocol).</summary>
public enum DebugBreakpointKind
{
    /// <summary>Stop before executing an address (int3 on KVM).</summary>
    Software,
    /// <summary>Stop before executing an address, with a debug register (any number on the emulator).</summary>
    Hardware,
    /// <summary>Stop after a write to a range.</summary>
    WriteWatch,
    /// <summary>Stop after a read of a range.</summary>
    ReadWatch,
    /// <summary>Stop after a read or write of a range.</summary>
    AccessWatch,
}

/// <summary>
/// The stopped guest as a debugger sees it, handed to <see cref="IGuestDebugger.OnStop"/>: registers and state,
/// memory at linear (virtual) addresses through the guest's page tables, breakpoints and watchpoints. Backend-neutral:
/// it drives the vCPU's <see cref="IVcpuDebug"/>. Every member except <see cref="RequestStop"/> must be called from
/// inside <see cref="IGuestDebugger.OnStop"/> (the vCPU thread, guest frozen); bad addresses give short counts or
/// false, never exceptions.
/// </summary>
public sealed class GuestDebugTarget
{
    private readonly IVcpu _vcpu;
    private readonly IVcpuDebug _debug;
    private readonly GuestMemory _memory;
    private readonly bool _pageTables;
    private readonly List<ulong> _software = [];
    private readonly List<ulong> _hardware = [];
    private readonly List<GuestWatchpoint> _watchpoints = [];
    private bool _step;
    private GuestAddressSpace? _space;
    private int _stopRequested;

    internal GuestDebugTarget(IVcpu vcpu, GuestMemory memory, IHypervisorBackend backend, CancellationToken runStopping)
    {
        _vcpu = vcpu;
        _debug = vcpu.Debug ?? throw new BackendUnavailableException($"backend {backend.Name} cannot debug guests (no breakpoints or single-step); use --backend emulator or kvm");
        _memory = memory;
        _pageTables = backend.Capabilities.HasFlag(BackendCapabilities.PageTables);
        Backend = backend.Name;
        RunStopping = runStopping;
    }

    /// <summary>The backend running the guest (<c>emulator</c>, <c>kvm</c>).</summary>
    public string Backend { get; }

    /// <summary>Bytes of guest-physical memory.</summary>
    public ulong MemorySize => _memory.Size;

    /// <summary>Cancelled when the run is being stopped from outside (cancellation, timeout): a debugger waiting for its user gives up then.</summary>
    public CancellationToken RunStopping { get; }

    /// <summary>Most hardware breakpoints and watchpoints together.</summary>
    public int MaxHardwareSlots => _debug.MaxHardwareSlots;

    /// <summary>The watchpoint kinds the backend supports.</summary>
    public IReadOnlyList<WatchpointKind> WatchpointKinds => _debug.WatchpointKinds;

    /// <summary>The complete register state.</summary>
    public VcpuState GetState() => _vcpu.GetState();

    /// <summary>Loads a changed register state (e.g. a debugger's register write).</summary>
    public void SetState(VcpuState state)
    {
        _vcpu.SetState(state);
        _space = null; // control registers may have changed
    }

    /// <summary>Reads guest memory at linear <paramref name="address"/>; returns the bytes read (fewer at the first unmapped page).</summary>
    public int ReadMemory(ulong address, Span<byte> destination) => Space.Read(address, destination);

    /// <summary>Writes guest memory at linear <paramref name="address"/>; returns the bytes written (fewer at the first unmapped page).</summary>
    public int WriteMemory(ulong address, ReadOnlySpan<byte> source) => Space.Write(address, source, _debug.CodeWritten);

    /// <summary>Translates a linear address to guest-physical; false when it is not mapped.</summary>
    public bool TryTranslate(ulong address, out ulong physical)
    {
        bool ok = Space.TryTranslate(address, out PageMapping m);
        physical = m.Physical;
        return ok;
    }

    /// <summary>Inserts a breakpoint or watchpoint; false, with the reason, when the backend cannot (then nothing changed).</summary>
    public bool InsertBreakpoint(DebugBreakpointKind kind, ulong address, ulong length, out string? error)
    {
        error = null;
        switch (kind)
        {
            case DebugBreakpointKind.Software:
                if (!_software.Contains(address))
                {
                    _software.Add(address);
                    return Apply(() => _software.Remove(address), out error);
                }
                return true;
            case DebugBreakpointKind.Hardware:
                if (!_hardware.Contains(address))
                {
                    _hardware.Add(address);
                    return Apply(() => _hardware.Remove(address), out error);
                }
                return true;
            default:
                var w = new GuestWatchpoint(address, length, ToWatchKind(kind));
                if (!_watchpoints.Contains(w))
                {
                    _watchpoints.Add(w);
                    return Apply(() => _watchpoints.Remove(w), out error);
                }
                return true;
        }
    }

    /// <summary>Removes a breakpoint or watchpoint (one that is not set is fine).</summary>
    public bool RemoveBreakpoint(DebugBreakpointKind kind, ulong address, ulong length, out string? error)
    {
        error = null;
        bool removed = kind switch
        {
            DebugBreakpointKind.Software => _software.Remove(address),
            DebugBreakpointKind.Hardware => _hardware.Remove(address),
            _ => _watchpoints.Remove(new GuestWatchpoint(address, length, ToWatchKind(kind))),
        };
        return !removed || Apply(() => { }, out error);
    }

    /// <summary>Asks the running guest to stop (<see cref="DebugStopKind.Interrupted"/>) soon. Thread-safe: a debugger calls it from its own thread (e.g. gdb's Ctrl-C).</summary>
    public void RequestStop()
    {
        Volatile.Write(ref _stopRequested, 1);
        _vcpu.Interrupt();
    }

    /// <summary>True when the debugger set a software breakpoint at <paramref name="address"/>.</summary>
    internal bool HasSoftwareBreakpoint(ulong address) => _software.Contains(address);

    /// <summary>True while the debugger steps.</summary>
    internal bool Stepping => _step;

    /// <summary>Consumes a pending <see cref="RequestStop"/>.</summary>
    internal bool TakeStopRequest() => Interlocked.Exchange(ref _stopRequested, 0) != 0;

    /// <summary>A new stop: the guest ran, so its page tables may have changed.</summary>
    internal void BeginStop() => _space = null;

    /// <summary>Turns single-stepping on or off for the next run.</summary>
    internal void SetStepping(bool step)
    {
        if (_step != step)
        {
            _step = step;
            _debug.SetGuestDebug(Settings());
        }
    }

    /// <summary>Removes every breakpoint, watchpoint and the stepping (detach, end of run: int3 bytes are put back).</summary>
    internal void ClearAll()
    {
        _software.Clear();
        _hardware.Clear();
        _watchpoints.Clear();
        _step = false;
        _debug.SetGuestDebug(GuestDebugSettings.None);
    }

    private GuestAddressSpace Space => _space ??= new GuestAddressSpace(_memory, _vcpu.GetState(), _pageTables);

    private GuestDebugSettings Settings() => new()
    {
        SingleStep = _step,
        Breakpoints = [.. _software],
        HardwareBreakpoints = [.. _hardware],
        Watchpoints = [.. _watchpoints],
    };

    private bool Apply(Action undo, out string? error)
    {
        try
        {
            _debug.SetGuestDebug(Settings());
            error = null;
            return true;
        }
        catch (Exception e) when (e is NotSupportedException or BackendOperationException)
        {
            undo();
            error = e.Message;
            return false;
        }
    }

    private static WatchpointKind ToWatchKind(DebugBreakpointKind kind) => kind switch
    {
        DebugBreakpointKind.WriteWatch => WatchpointKind.Write,
        DebugBreakpointKind.ReadWatch => WatchpointKind.Read,
        _ => WatchpointKind.Access,
    };
}
