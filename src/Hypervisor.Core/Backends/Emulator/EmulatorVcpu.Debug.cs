namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// Guest debugging on the emulator (<see cref="IVcpuDebug"/>), kept apart from the executor. While anything is set,
/// <see cref="AttentionDebug"/> stays set in the dispatcher's attention word, so the run loop's slow path (which an
/// undebugged guest takes only for kicks, interrupts, TF and interrupt shadows) runs before every block: an
/// undebugged guest pays nothing.
/// <list type="bullet">
/// <item>Breakpoints (software and hardware alike, any number, linear addresses): a decoded block ends before a
/// breakpoint address, and the run loop stops before running a block that starts at one. Changing the set drops
/// every decoded block.</item>
/// <item>Single-step: the run loop runs one instruction and stops after it; an <c>out</c> that ended a run completes,
/// and counts as the step, on the next run (as KVM reports it). An instruction that raises an exception the guest's
/// IDT takes stops at the handler's first instruction.</item>
/// <item>Write watchpoints (linear ranges): the MMU never gives a watched page write permission in the software TLB,
/// so every store to it takes the slow path, which compares it with the watched ranges; while any watchpoint is set
/// the loop runs one instruction at a time, so it stops right after the store.</item>
/// </list>
/// </summary>
internal sealed unsafe partial class EmulatorVcpu : IVcpuDebug
{
    private static readonly WatchpointKind[] SupportedWatchKinds = [WatchpointKind.Write];

    private HashSet<ulong>? _breakpoints;
    private bool _singleStep;
    private bool _watching;

    public IVcpuDebug? Debug => this;

    public int MaxHardwareSlots => int.MaxValue;

    public IReadOnlyList<WatchpointKind> WatchpointKinds => SupportedWatchKinds;

    public void SetGuestDebug(GuestDebugSettings settings)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(settings);
        foreach (GuestWatchpoint w in settings.Watchpoints)
        {
            if (w.Kind != WatchpointKind.Write)
            {
                throw new NotSupportedException($"the emulator has write watchpoints only (asked for a {w.Kind.ToString().ToLowerInvariant()} watchpoint)");
            }
            if (w.Length == 0 || w.Address + w.Length < w.Address)
            {
                throw new NotSupportedException($"a watchpoint of {w.Length} bytes at 0x{w.Address:x} is not a range");
            }
        }
        var breakpoints = new HashSet<ulong>(settings.Breakpoints);
        breakpoints.UnionWith(settings.HardwareBreakpoints);
        bool changed = !breakpoints.SetEquals(_breakpoints ?? []);
        _breakpoints = breakpoints.Count == 0 ? null : breakpoints;
        if (changed)
        {
            _code.Flush(); // block boundaries depend on the breakpoints
        }
        _mmu.SetWatchpoints(settings.Watchpoints.Count == 0 ? null : [.. settings.Watchpoints]);
        _watching = settings.Watchpoints.Count != 0;
        _singleStep = settings.SingleStep;
        if (settings.IsEmpty)
        {
            Interlocked.And(ref _s->Attention, ~AttentionDebug);
        }
        else
        {
            Interlocked.Or(ref _s->Attention, AttentionDebug);
        }
    }

    /// <summary>The host wrote guest memory a debugger changed (already seen through <see cref="Memory.IGuestMemoryWriteObserver"/> when it went through <see cref="Memory.GuestMemory"/>): decoded code from there is dropped before the guest runs on.</summary>
    public void CodeWritten(ulong physical, ulong length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (length != 0 && physical < _size)
        {
            _code.OnHostWrite(physical, Math.Min(length, _size - physical));
        }
    }

    /// <summary>True when the loop must run one instruction at a time (stepping, or watching stores).</summary>
    private bool DebugOneAtATime => _singleStep || _watching;

    /// <summary>Whether the vCPU must stop before the instruction at <paramref name="rip"/> (a breakpoint).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsBreakpoint(ulong rip) => _breakpoints is not null && _breakpoints.Contains(rip);

    /// <summary>After one instruction ran in one-at-a-time mode: the debug exit to report, if any.</summary>
    private bool DebugAfterInstruction(out VcpuExit exit)
    {
        if (_mmu.WatchHit)
        {
            _mmu.WatchHit = false;
            exit = new VcpuExit(VcpuExitKind.Debug, _s->Rip, _mmu.WatchHitAddress, DebugReason: DebugStopReason.Watchpoint);
            return true;
        }
        if (_singleStep)
        {
            exit = new VcpuExit(VcpuExitKind.Debug, _s->Rip, DebugReason: DebugStopReason.SingleStep);
            return true;
        }
        exit = default;
        return false;
    }
}
