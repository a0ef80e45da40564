using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// Guest debugging on KVM (<see cref="IVcpuDebug"/>) through <c>KVM_SET_GUEST_DEBUG</c>, as QEMU's gdbstub does it:
/// software breakpoints are <c>int3</c> bytes written into guest code (found through the guest's page tables) with
/// <c>KVM_GUESTDBG_USE_SW_BP</c>, so the #BP exits to user space with rip on the breakpoint; hardware breakpoints
/// and watchpoints use DR0-DR3 and DR7 (<c>KVM_GUESTDBG_USE_HW_BP</c>); single-step sets
/// <c>KVM_GUESTDBG_SINGLESTEP</c> (the kernel runs the guest with the trap flag and hides it from the guest).
/// </summary>
internal sealed unsafe partial class KvmVcpu : IVcpuDebug
{
    private const byte Int3 = 0xCC;
    private const ulong Dr6SingleStep = 1UL << 14;

    private static readonly WatchpointKind[] SupportedWatchKinds = [WatchpointKind.Write, WatchpointKind.Access];

    /// <summary>Software breakpoints in place: linear address -&gt; (guest-physical address, the byte the int3 replaced).</summary>
    private readonly Dictionary<ulong, (ulong Physical, byte Original)> _int3 = [];
    /// <summary>What each debug address register DR0-DR3 holds (null: free), to name the event of a #DB.</summary>
    private readonly (bool Watch, ulong Address)?[] _slots = new (bool, ulong)?[4];
    private bool _singleStep;

    public IVcpuDebug? Debug => this;

    /// <summary>Four debug registers; none under PVM, which never fires them (seen: a DR0 breakpoint gdb set was run past).</summary>
    public int MaxHardwareSlots => _pvm ? 0 : 4;

    public IReadOnlyList<WatchpointKind> WatchpointKinds => _pvm ? [] : SupportedWatchKinds;

    public void SetGuestDebug(GuestDebugSettings settings)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.HardwareBreakpoints.Count + settings.Watchpoints.Count > MaxHardwareSlots)
        {
            throw new NotSupportedException(_pvm
                ? "KVM under PVM does not fire debug-register breakpoints or watchpoints; use software breakpoints"
                : $"KVM has {MaxHardwareSlots} debug registers for hardware breakpoints and watchpoints together (asked for {settings.HardwareBreakpoints.Count + settings.Watchpoints.Count})");
        }
        kvm_guest_debug dbg = default;
        ulong dr7 = 0;
        var slots = new (bool Watch, ulong Address)?[4];
        int slot = 0;
        foreach (ulong address in settings.HardwareBreakpoints)
        {
            dbg.debugreg[slot] = address;
            dr7 |= 1UL << (slot * 2); // Ln; R/W = 00 (execute), LEN = 00
            slots[slot++] = (false, address);
        }
        foreach (GuestWatchpoint w in settings.Watchpoints)
        {
            ulong len = w.Length switch
            {
                1 => 0b00,
                2 => 0b01,
                4 => 0b11,
                8 => 0b10,
                _ => throw new NotSupportedException($"a KVM watchpoint covers 1, 2, 4 or 8 bytes (asked for {w.Length})"),
            };
            if ((w.Address & (w.Length - 1)) != 0)
            {
                throw new NotSupportedException($"a KVM watchpoint of {w.Length} bytes must be aligned to {w.Length} (0x{w.Address:x} is not)");
            }
            ulong rw = w.Kind switch
            {
                WatchpointKind.Write => 0b01,
                WatchpointKind.Access => 0b11,
                _ => throw new NotSupportedException("x86 debug registers cannot catch reads alone; use an access watchpoint (awatch)"),
            };
            dbg.debugreg[slot] = w.Address;
            dr7 |= (1UL << (slot * 2)) | (rw << (16 + (slot * 4))) | (len << (18 + (slot * 4)));
            slots[slot++] = (true, w.Address);
        }
        dbg.debugreg[7] = dr7;
        if (!settings.IsEmpty)
        {
            dbg.control = KVM_GUESTDBG_ENABLE
                | (settings.SingleStep ? KVM_GUESTDBG_SINGLESTEP : 0)
                | (settings.Breakpoints.Count > 0 ? KVM_GUESTDBG_USE_SW_BP : 0)
                | (slot > 0 ? KVM_GUESTDBG_USE_HW_BP : 0);
        }

        PlaceInt3(settings.Breakpoints);
        // Safe: dbg is a local of the exact size the ioctl reads (pinned by a layout test).
        if (_fd.Ioctl(KVM_SET_GUEST_DEBUG, &dbg, out int errno) < 0)
        {
            throw KvmError.Failed("KVM_SET_GUEST_DEBUG", errno);
        }
        slots.CopyTo(_slots, 0);
        _singleStep = settings.SingleStep;
    }

    /// <summary>Hardware runs what is in memory: nothing is cached to drop.</summary>
    public void CodeWritten(ulong physical, ulong length)
    {
    }

    /// <summary>Restores the bytes of int3s no longer wanted and writes int3 at the new addresses (translated through the guest's page tables now).</summary>
    private void PlaceInt3(IReadOnlyList<ulong> wanted)
    {
        var keep = new HashSet<ulong>(wanted);
        foreach ((ulong linear, (ulong physical, byte original)) in _int3.ToArray())
        {
            if (!keep.Contains(linear))
            {
                // Put the byte back only if the int3 is still there (the guest may have rewritten its code).
                if (_memory.TryRead(new GuestAddress(physical), out byte current) && current == Int3)
                {
                    _memory.TryWrite(new GuestAddress(physical), in original);
                }
                _int3.Remove(linear);
            }
        }
        if (keep.Count == _int3.Count)
        {
            return;
        }
        kvm_sregs sregs = GetSpecialRegisters();
        foreach (ulong linear in keep)
        {
            if (_int3.ContainsKey(linear))
            {
                continue;
            }
            if (!GuestPageWalker.TryTranslate(_memory, sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer, linear, out PageMapping m)
                || !_memory.TryRead(new GuestAddress(m.Physical), out byte original))
            {
                throw new NotSupportedException($"cannot set a breakpoint at 0x{linear:x}: the address is not mapped to guest memory");
            }
            _memory.TryWrite(new GuestAddress(m.Physical), Int3);
            _int3[linear] = (m.Physical, original);
        }
    }

    /// <summary><c>KVM_EXIT_DEBUG</c>: #BP (one of our int3s; rip is on it) or #DB (single-step, or DR0-DR3 hit as DR6 says).</summary>
    private VcpuExit DecodeDebugExit(kvm_run* run, ulong rip)
    {
        const uint BreakpointVector = 3;
        if (run->debug_exception == BreakpointVector)
        {
            return new VcpuExit(VcpuExitKind.Debug, rip, rip, KVM_EXIT_DEBUG, DebugReason: DebugStopReason.Breakpoint);
        }
        ulong dr6 = run->debug_dr6;
        for (int i = 0; i < 4; i++)
        {
            if ((dr6 & (1UL << i)) != 0 && _slots[i] is (bool watch, ulong address))
            {
                return new VcpuExit(VcpuExitKind.Debug, rip, address, KVM_EXIT_DEBUG,
                    DebugReason: watch ? DebugStopReason.Watchpoint : DebugStopReason.HardwareBreakpoint);
            }
        }
        if ((dr6 & Dr6SingleStep) != 0 || _singleStep)
        {
            return new VcpuExit(VcpuExitKind.Debug, rip, RawReason: KVM_EXIT_DEBUG, DebugReason: DebugStopReason.SingleStep);
        }
        return new VcpuExit(VcpuExitKind.Debug, rip, RawReason: KVM_EXIT_DEBUG, Detail: $"debug exception {run->debug_exception}, dr6 0x{dr6:x}", DebugReason: DebugStopReason.SingleStep);
    }
}
