using System.Runtime.CompilerServices;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// Guest debugging on the emulator (<see cref="IVcpuDebug"/>), kept apart from the executor:
/// <list type="bullet">
/// <item>Breakpoints (software and hardware alike, any number): a decoded block ends before a breakpoint address, and
/// the run loop stops before running a block that starts at one. Changing the set drops every decoded block.</item>
/// <item>Single-step: the run loop runs blocks of one instruction and stops after each; an <c>out</c> that ended a
/// run completes, and counts as the step, on the next run (as KVM reports it).</item>
/// <item>Write watchpoints: the per-page byte map the store path already consults for self-modifying code carries a
/// second bit, <see cref="WatchPageFlag"/>; a store to a flagged page compares itself with the watched ranges, and
/// while any watchpoint is set the loop runs one instruction at a time, so it stops right after the store.</item>
/// </list>
/// Addresses are linear; the emulator maps linear = guest-physical (no paging yet).
/// </summary>
internal sealed unsafe partial class EmulatorVcpu : IVcpuDebug
{
    /// <summary>Bit of the per-page map: the page holds decoded code (self-modifying-code check).</summary>
    internal const byte CodePageFlag = 1;
    /// <summary>Bit of the per-page map: a write watchpoint covers part of the page.</summary>
    internal const byte WatchPageFlag = 2;

    private static readonly WatchpointKind[] SupportedWatchKinds = [WatchpointKind.Write];

    private HashSet<ulong>? _breakpoints;
    private bool _singleStep;
    private GuestWatchpoint[]? _watches;
    private bool _watchHit;
    private ulong _watchHitAddress;
    /// <summary>Any debug setting is on: the one flag the run loop tests per block while nobody debugs.</summary>
    private bool _debugActive;

    public IVcpuDebug? Debug => this;

    public int MaxHardwareSlots => int.MaxValue;

    public IReadOnlyList<WatchpointKind> WatchpointKinds => SupportedWatchKinds;

    public void SetGuestDebug(GuestDebugSettings settings)
    {
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
            FlushBlocks(); // block boundaries depend on the breakpoints
        }
        SetWatchFlags(false);
        _watches = settings.Watchpoints.Count == 0 ? null : [.. settings.Watchpoints];
        SetWatchFlags(true);
        _watchHit = false;
        _singleStep = settings.SingleStep;
        _debugActive = !settings.IsEmpty;
    }

    public void CodeWritten(ulong physical, ulong length)
    {
        if (length == 0 || physical >= _size)
        {
            return;
        }
        ulong last = Math.Min(physical + Math.Min(length, _size) - 1, _size - 1);
        for (ulong page = physical >> 12; page <= last >> 12; page++)
        {
            if ((_codePage[page] & CodePageFlag) != 0)
            {
                FlushBlocks(); // between runs no block is executing: drop them all
                return;
            }
        }
    }

    /// <summary>True when the loop must run one instruction at a time (stepping, or watching stores).</summary>
    private bool DebugOneAtATime => _singleStep || _watches is not null;

    /// <summary>Whether the vCPU must stop before the instruction at <paramref name="rip"/> (a breakpoint).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsBreakpoint(ulong rip) => _breakpoints is not null && _breakpoints.Contains(rip);

    /// <summary>After one instruction ran in one-at-a-time mode: the debug exit to report, if any.</summary>
    private bool DebugAfterInstruction(out VcpuExit exit)
    {
        if (_watchHit)
        {
            _watchHit = false;
            exit = new VcpuExit(VcpuExitKind.Debug, _rip, _watchHitAddress, DebugReason: DebugStopReason.Watchpoint);
            return true;
        }
        if (_singleStep)
        {
            exit = new VcpuExit(VcpuExitKind.Debug, _rip, DebugReason: DebugStopReason.SingleStep);
            return true;
        }
        exit = default;
        return false;
    }

    /// <summary>A store hit a page flagged in the per-page map: check the watchpoints, then self-modifying code.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void OnFlaggedStore(ulong address, int size)
    {
        if (_watches is not null)
        {
            ulong end = address + (ulong)size;
            foreach (GuestWatchpoint w in _watches)
            {
                if (address < w.Address + w.Length && w.Address < end)
                {
                    _watchHit = true;
                    _watchHitAddress = w.Address;
                    break;
                }
            }
        }
        if (((_codePage[address >> 12] | _codePage[(address + (ulong)size - 1) >> 12]) & CodePageFlag) != 0)
        {
            InvalidateCode(address, size);
        }
    }

    /// <summary>Sets (or clears) <see cref="WatchPageFlag"/> on every page a watchpoint covers.</summary>
    private void SetWatchFlags(bool set)
    {
        if (_watches is null)
        {
            return;
        }
        foreach (GuestWatchpoint w in _watches)
        {
            if (w.Address >= _size)
            {
                continue; // a store there faults before it could hit the watchpoint
            }
            ulong last = Math.Min(w.Address + w.Length - 1, _size - 1);
            for (ulong page = w.Address >> 12; page <= last >> 12; page++)
            {
                _codePage[page] = set ? (byte)(_codePage[page] | WatchPageFlag) : (byte)(_codePage[page] & ~WatchPageFlag);
            }
        }
    }

    /// <summary>Puts the watch bits back after the map was cleared (the block cache was flushed).</summary>
    private void RestoreWatchFlags() => SetWatchFlags(true);
}
