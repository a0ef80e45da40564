using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// A KVM vCPU (rust-vmm's <c>VcpuFd</c>): its fd and its mapped <c>kvm_run</c> area. Started in flat 64-bit long
/// mode. General-purpose registers travel through the sync-register area of <c>kvm_run</c>
/// (<c>KVM_SYNC_X86_REGS</c>), so a hypercall exit costs no ioctl beyond <c>KVM_RUN</c> itself.
/// </summary>
/// <remarks>
/// <para><see cref="Interrupt"/> works with <c>kvm_run.immediate_exit</c> plus a signal to the vCPU thread
/// (<see cref="KvmKickSignal"/>): if the thread is inside <c>KVM_RUN</c> the signal makes the ioctl fail with
/// <c>EINTR</c>; if it is about to enter, <c>immediate_exit</c> makes it return at once.</para>
/// <para><see cref="RequestInterrupt"/> uses the user-space interrupt controller protocol (the VM has no in-kernel
/// irqchip): the vector is queued here and the vCPU thread is kicked the same way; before each <c>KVM_RUN</c>, when
/// <c>kvm_run.ready_for_interrupt_injection</c> and <c>if_flag</c> say the guest can take it, <c>KVM_INTERRUPT</c>
/// injects it, otherwise <c>request_interrupt_window</c> asks KVM to exit with <c>KVM_EXIT_IRQ_WINDOW_OPEN</c> as
/// soon as it can. Such kicks and window exits never reach the caller of <see cref="Run"/>.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
internal sealed unsafe partial class KvmVcpu : IVcpu
{
    private readonly KvmFd _fd;
    private readonly KvmRunMapping _mapping;
    private readonly kvm_run* _run;
    private readonly int _kickSignal;

    // Interrupt state. _interruptPending is set by Interrupt() and consumed by Run(). _thread is the pthread id of
    // the thread inside Run() (0 when none), guarded by _threadLock so a signal is only ever sent to a live thread
    // that is inside Run().
    private int _interruptPending;
    private readonly Lock _threadLock = new();
    private nuint _thread;
    /// <summary>External interrupts requested and not yet injected, one bit per vector.</summary>
    private readonly ulong[] _pendingIrq = new ulong[4];

    private bool _ranOnce;
    /// <summary>Under PVM, the length of the <c>out</c> the last exit's rip was moved back over (0: none); see <see cref="HidePvmOutCompletion"/>.</summary>
    private ulong _pvmOutLength;
    private ulong _pvmOutRip;
    /// <summary>The last exit was a port write the kernel completes on the next KVM_RUN (complete_userspace_io).</summary>
    private bool _ioPending;
    private bool _disposed;

    private readonly GuestMemory _memory;
    private readonly bool _pvm;

    private KvmVcpu(KvmFd fd, KvmRunMapping mapping, int kickSignal, GuestMemory memory, bool pvm)
    {
        _memory = memory;
        _pvm = pvm;
        _fd = fd;
        _mapping = mapping;
        _run = mapping.Run;
        _kickSignal = kickSignal;
    }

    /// <summary>
    /// Maps the vCPU's <c>kvm_run</c>, sets CPUID, long-mode control and segment state (under PVM: user-accessible
    /// page tables and the PVM bootstrap, see <see cref="KvmPvm"/>), and the start registers; takes ownership of
    /// <paramref name="fd"/>.
    /// </summary>
    internal static KvmVcpu Create(KvmFd fd, int mmapSize, byte[] cpuid, GuestMemory memory, in VcpuStartState start, KvmFlavor flavor, int id)
    {
        KvmRunMapping? mapping = null;
        try
        {
            int kick = KvmKickSignal.Signal;
            mapping = KvmRunMapping.Map(fd, mmapSize);
            bool pvm = flavor == KvmFlavor.Pvm;
            var vcpu = new KvmVcpu(fd, mapping, kick, memory, pvm);
            vcpu.SetCpuid(cpuid);
            VcpuState initial = LongModeSetup.Write(memory, userPages: pvm).ToVcpuState(in start);
            vcpu.SetSpecialRegisters(initial);
            // Ask the kernel to store the general-purpose registers into kvm_run.s.regs at every exit.
            vcpu._run->kvm_valid_regs = KVM_SYNC_X86_REGS;
            vcpu._run->kvm_dirty_regs = 0;
            vcpu._run->immediate_exit = 0;
            if (pvm)
            {
                vcpu.BootstrapPvm(memory, id, initial.Registers);
            }
            vcpu.SetGeneralRegisters(initial.Registers);
            return vcpu;
        }
        catch
        {
            mapping?.Dispose();
            fd.Dispose();
            throw;
        }
    }

    private void SetCpuid(byte[] cpuid)
    {
        fixed (byte* p = cpuid)
        {
            // Safe: cpuid is a complete kvm_cpuid2 block (header + nent entries) from KVM_GET_SUPPORTED_CPUID.
            if (_fd.Ioctl(KVM_SET_CPUID2, p, out int errno) < 0)
            {
                throw KvmError.Failed("KVM_SET_CPUID2", errno);
            }
        }
    }

    /// <summary>
    /// Runs the PVM bootstrap stub (<see cref="KvmPvm.WriteBootstrap"/>) to its <c>hlt</c>: afterwards the vCPU
    /// runs natively, and the caller loads the real start registers. Throws <see cref="BackendOperationException"/>
    /// with what happened instead.
    /// </summary>
    private void BootstrapPvm(GuestMemory memory, int id, in VcpuRegisters start)
    {
        ulong stub = GuestLayout.PvmBootstrap + (ulong)id * GuestLayout.PvmBootstrapStride;
        ulong vcpuStruct = GuestLayout.PvmVcpuStructs + (ulong)id * EntryConvention.PageSize;
        memory.Clear(new GuestAddress(vcpuStruct), EntryConvention.PageSize);
        int length = KvmPvm.WriteBootstrap(memory.GetSpan(new GuestAddress(stub), KvmPvm.BootstrapLength), vcpuStruct);
        SetGeneralRegisters(start with { Rip = stub, Rdi = 0 });

        VcpuExit exit;
        var watchdog = new Timer(static v => ((KvmVcpu)v!).Interrupt(), this, KvmPvm.BootstrapTimeout, Timeout.InfiniteTimeSpan);
        try
        {
            exit = Run();
        }
        finally
        {
            // Wait for a callback that may be running, then forget any kick it made.
            using var stopped = new ManualResetEvent(false);
            if (watchdog.Dispose(stopped))
            {
                stopped.WaitOne();
            }
            _run->immediate_exit = 0;
            Volatile.Write(ref _interruptPending, 0);
        }
        _ranOnce = false;

        const string Operation = "PVM bootstrap";
        ulong halt = stub + (ulong)length;
        if (exit.Kind != VcpuExitKind.Halt || exit.Rip != halt)
        {
            string what = exit.Kind == VcpuExitKind.Interrupted ? $"did not finish within {KvmPvm.BootstrapTimeout.TotalSeconds:0} s" : $"ended with {exit.Kind} at 0x{exit.Rip:x}{(exit.Detail is null ? "" : $" ({exit.Detail})")}";
            throw new BackendOperationException(Operation, $"KVM under PVM: the bootstrap that registers the PVM vCPU struct {what}, not with a halt at 0x{halt:x}");
        }
        if (!KvmPvm.TryGetMsr(_fd, KvmPvm.MsrVcpuStruct, out ulong registered) || (registered & ~(EntryConvention.PageSize - 1)) != vcpuStruct)
        {
            throw new BackendOperationException(Operation, $"KVM under PVM: after the bootstrap, MSR 0x{KvmPvm.MsrVcpuStruct:x} reads 0x{registered:x}, not the vCPU struct at 0x{vcpuStruct:x}");
        }
    }

    /// <inheritdoc/>
    public VcpuExit Run()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        kvm_run* run = _run;
        while (true)
        {
            if (Volatile.Read(ref _interruptPending) != 0)
            {
                return ConsumeInterrupt();
            }
            InjectPendingInterrupt();

            lock (_threadLock)
            {
                _thread = Libc.pthread_self();
            }
            _ioPending = false;
            FinishPvmOut();
            int r;
            int errno;
            try
            {
                r = _fd.Ioctl(KVM_RUN, out errno);
            }
            finally
            {
                lock (_threadLock)
                {
                    _thread = 0;
                }
            }
            _ranOnce = true;

            if (r < 0)
            {
                if (errno is not (Libc.EINTR or Libc.EAGAIN))
                {
                    return new VcpuExit(VcpuExitKind.InternalError, run->s_regs.rip, Detail: $"KVM_RUN failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
                }
                if (Volatile.Read(ref _interruptPending) != 0)
                {
                    return ConsumeInterrupt();
                }
                // A kick from RequestInterrupt: inject (or ask for a window) and go on.
                run->immediate_exit = 0;
                continue;
            }

            uint reason = run->exit_reason;
            ulong rip = run->s_regs.rip;
            switch (reason)
            {
                case KVM_EXIT_IO:
                    VcpuExit io = DecodeIo(run, _mapping.Size, rip, reason);
                    _ioPending = io.Kind == VcpuExitKind.IoOut;
                    return _pvm && _ioPending ? HidePvmOutCompletion(io) : io;
                case KVM_EXIT_IRQ_WINDOW_OPEN:
                    continue; // the guest can take the pending interrupt now
                case KVM_EXIT_HLT:
                    return new VcpuExit(VcpuExitKind.Halt, rip, RawReason: reason);
                case KVM_EXIT_DEBUG:
                    return DecodeDebugExit(run, rip);
                case KVM_EXIT_MMIO:
                    return new VcpuExit(VcpuExitKind.Mmio, rip, run->mmio_phys_addr, reason,
                        $"{(run->mmio_is_write != 0 ? "write" : "read")} of {run->mmio_len} byte(s)");
                case KVM_EXIT_SHUTDOWN:
                    return new VcpuExit(VcpuExitKind.Shutdown, rip, RawReason: reason);
                case KVM_EXIT_FAIL_ENTRY:
                    return new VcpuExit(VcpuExitKind.InternalError, rip, RawReason: reason,
                        Detail: $"KVM_EXIT_FAIL_ENTRY: hardware entry failure reason 0x{run->fail_entry_hardware_entry_failure_reason:x}");
                case KVM_EXIT_INTERNAL_ERROR:
                    return new VcpuExit(VcpuExitKind.InternalError, rip, RawReason: reason,
                        Detail: $"KVM_EXIT_INTERNAL_ERROR: suberror {run->internal_suberror}{InternalErrorName(run->internal_suberror)}{InternalErrorData(run)}");
                case KVM_EXIT_INTR:
                    if (Volatile.Read(ref _interruptPending) != 0)
                    {
                        return ConsumeInterrupt();
                    }
                    continue;
                default:
                    return new VcpuExit(VcpuExitKind.Unsupported, rip, RawReason: reason, Detail: $"KVM exit reason {reason}");
            }
        }
    }

    /// <summary>
    /// Before entering the guest: injects the highest pending vector with <c>KVM_INTERRUPT</c> when the last exit
    /// said the guest can take one, and asks for an interrupt-window exit while vectors remain pending.
    /// </summary>
    private void InjectPendingInterrupt()
    {
        kvm_run* run = _run;
        int vector = HighestPending();
        if (vector < 0)
        {
            run->request_interrupt_window = 0;
            return;
        }
        if (run->ready_for_interrupt_injection != 0 && run->if_flag != 0)
        {
            ulong mask = 1UL << (vector & 63);
            Interlocked.And(ref _pendingIrq[vector >> 6], ~mask);
            var irq = new kvm_interrupt { irq = (uint)vector };
            // Safe: irq is a local of the exact size the ioctl reads.
            if (_fd.Ioctl(KVM_INTERRUPT, &irq, out int errno) < 0)
            {
                throw KvmError.Failed($"KVM_INTERRUPT (vector {vector})", errno);
            }
            vector = HighestPending();
        }
        run->request_interrupt_window = (byte)(vector >= 0 ? 1 : 0);
    }

    private int HighestPending()
    {
        for (int w = 3; w >= 0; w--)
        {
            ulong bits = Volatile.Read(ref _pendingIrq[w]);
            if (bits != 0)
            {
                return (w * 64) + 63 - System.Numerics.BitOperations.LeadingZeroCount(bits);
            }
        }
        return -1;
    }

    /// <inheritdoc/>
    public void RequestInterrupt(int vector)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vector, 32);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(vector, 255);
        lock (_threadLock)
        {
            if (_disposed)
            {
                return;
            }
            Interlocked.Or(ref _pendingIrq[vector >> 6], 1UL << (vector & 63));
            // Safe: the mapping is alive while not disposed (Dispose takes this lock).
            Volatile.Write(ref _run->immediate_exit, 1);
            if (_thread != 0)
            {
                _ = Libc.pthread_kill(_thread, _kickSignal);
            }
        }
    }

    private static VcpuExit DecodeIo(kvm_run* run, ulong mapped, ulong rip, uint reason)
    {
        byte size = run->io_size;
        if (run->io_count != 1 || size is not (1 or 2 or 4) || run->io_data_offset > mapped - 4)
        {
            // String (ins/outs) or odd-sized port I/O: report it, without data, for the VMM to refuse.
            return new VcpuExit(run->io_direction == KVM_EXIT_IO_OUT ? VcpuExitKind.IoOut : VcpuExitKind.IoIn, rip, run->io_port, reason,
                $"string port I/O: {run->io_count} x {size} byte(s)", size);
        }
        if (run->io_direction != KVM_EXIT_IO_OUT)
        {
            return new VcpuExit(VcpuExitKind.IoIn, rip, run->io_port, reason, $"in of {size} byte(s)", size);
        }
        // Safe: the data lies inside the kvm_run mapping (offset checked above); the kernel completes the out and
        // advances rip on the next KVM_RUN (complete_userspace_io).
        byte* data = (byte*)run + run->io_data_offset;
        ulong value = size switch { 1 => *data, 2 => *(ushort*)data, _ => *(uint*)data };
        return new VcpuExit(VcpuExitKind.IoOut, rip, run->io_port, reason, Size: size, Data: value);
    }

    /// <summary>
    /// Under PVM the kernel has already executed the <c>out</c> of an <see cref="VcpuExitKind.IoOut"/> exit (see
    /// <see cref="KvmPvm.CompletedOutLength"/>). To keep the <see cref="IVcpu"/> contract (rip at the <c>out</c> until
    /// the next run completes it), the exit and the sync-register view report rip at the instruction;
    /// <see cref="FinishPvmOut"/> gives the length back before the kernel sees the registers again.
    /// </summary>
    private VcpuExit HidePvmOutCompletion(VcpuExit io)
    {
        ulong rip = io.Rip;
        if (rip < 3 || !_memory.TryGetSpan(new GuestAddress(rip - 3), 3, out Span<byte> before))
        {
            return io; // rip is not an identity-mapped address of guest memory: report PVM's rip as it is
        }
        int length = KvmPvm.CompletedOutLength(before, io.Address > ushort.MaxValue ? (ushort)0 : (ushort)io.Address, io.Size);
        if (length == 0)
        {
            return io;
        }
        _pvmOutLength = (ulong)length;
        _pvmOutRip = rip - (ulong)length;
        _run->s_regs.rip = _pvmOutRip; // the view only: kvm_dirty_regs is untouched, so the kernel keeps its own rip
        return io with { Rip = _pvmOutRip };
    }

    /// <summary>
    /// Before the kernel sees the registers again: when the VMM wrote them back (a hypercall result) with rip still
    /// at the <c>out</c>, continue after it, as the kernel's own rip does; a rip the VMM moved elsewhere stands.
    /// </summary>
    private void FinishPvmOut()
    {
        if (_pvmOutLength == 0)
        {
            return;
        }
        if ((_run->kvm_dirty_regs & KVM_SYNC_X86_REGS) != 0 && _run->s_regs.rip == _pvmOutRip)
        {
            _run->s_regs.rip += _pvmOutLength;
        }
        _pvmOutLength = 0;
    }

    /// <summary>
    /// Lets the kernel finish the port write the last run stopped at, without running a guest instruction: KVM_RUN
    /// with <c>immediate_exit</c> completes pending I/O and then returns EINTR (Documentation/virt/kvm/api.rst,
    /// KVM_EXIT_IO: "userspace can re-enter the guest ... with the immediate_exit field set to complete pending
    /// operations"). Before a state is read, so a snapshot never holds a half-done out.
    /// </summary>
    private void CompletePendingIo()
    {
        FinishPvmOut();
        if (!_ioPending)
        {
            return;
        }
        _run->immediate_exit = 1;
        int r = _fd.Ioctl(KVM_RUN, out int errno);
        // Keep a kick that arrived meanwhile: it still owes the caller an Interrupted exit.
        _run->immediate_exit = (byte)(Volatile.Read(ref _interruptPending) != 0 ? 1 : 0);
        if (r == 0 || (errno != Libc.EINTR && errno != Libc.EAGAIN))
        {
            throw KvmError.Failed("KVM_RUN (completing a port write)", r == 0 ? 0 : errno);
        }
        _ioPending = false;
    }

    private static string InternalErrorName(uint suberror) => suberror switch
    {
        1 => " (KVM_INTERNAL_ERROR_EMULATION: instruction emulation failed)",
        2 => " (KVM_INTERNAL_ERROR_SIMUL_EX: exception while delivering an exception)",
        3 => " (KVM_INTERNAL_ERROR_DELIVERY_EV: event delivery failed)",
        4 => " (KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON)",
        _ => "",
    };

    private static string InternalErrorData(kvm_run* run)
    {
        uint n = Math.Min(run->internal_ndata, 16u);
        if (n == 0)
        {
            return "";
        }
        var data = new string[n];
        for (int i = 0; i < n; i++)
        {
            data[i] = $"0x{run->internal_data[i]:x}";
        }
        return $", data [{string.Join(' ', data)}]";
    }

    private VcpuExit ConsumeInterrupt()
    {
        // Clear immediate_exit before consuming the request: an Interrupt() racing with this sets both again, and
        // at worst the next Run returns Interrupted once more (a spurious kick the run loop tolerates).
        _run->immediate_exit = 0;
        Interlocked.Exchange(ref _interruptPending, 0);
        return new VcpuExit(VcpuExitKind.Interrupted, _run->s_regs.rip, RawReason: KVM_EXIT_INTR);
    }

    /// <inheritdoc/>
    public VcpuRegisters GetRegisters()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_ranOnce)
        {
            return _run->s_regs.ToRegisters();
        }
        kvm_regs regs;
        // Safe: regs is a local of the exact size the ioctl writes.
        if (_fd.Ioctl(KVM_GET_REGS, &regs, out int errno) < 0)
        {
            throw KvmError.Failed("KVM_GET_REGS", errno);
        }
        return regs.ToRegisters();
    }

    /// <inheritdoc/>
    public void SetRegisters(in VcpuRegisters registers)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_ranOnce)
        {
            // Through the sync-register area: the kernel loads it on the next KVM_RUN, before it completes a pending
            // out (which then advances the unchanged rip), so no ioctl is needed.
            _run->s_regs = kvm_regs.From(in registers);
            _run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
            return;
        }
        SetGeneralRegisters(in registers);
    }

    private void SetGeneralRegisters(in VcpuRegisters registers)
    {
        kvm_regs regs = kvm_regs.From(in registers);
        // Safe: regs is a local of the exact size the ioctl reads.
        if (_fd.Ioctl(KVM_SET_REGS, &regs, out int errno) < 0)
        {
            throw KvmError.Failed("KVM_SET_REGS", errno);
        }
    }

    /// <inheritdoc/>
    public ulong? InstructionsRetired => null;

    /// <inheritdoc/>
    public VcpuState GetState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CompletePendingIo();
        kvm_sregs sregs = GetSpecialRegisters();
        var state = new VcpuState
        {
            Registers = GetRegisters(),
            Cs = sregs.cs.ToSegment(), Ss = sregs.ss.ToSegment(), Ds = sregs.ds.ToSegment(), Es = sregs.es.ToSegment(),
            Fs = sregs.fs.ToSegment(), Gs = sregs.gs.ToSegment(), Tr = sregs.tr.ToSegment(), Ldtr = sregs.ldt.ToSegment(),
            Gdtr = new DescriptorTableRegister(sregs.gdt.@base, sregs.gdt.limit),
            Idtr = new DescriptorTableRegister(sregs.idt.@base, sregs.idt.limit),
            Cr0 = sregs.cr0, Cr2 = sregs.cr2, Cr3 = sregs.cr3, Cr4 = sregs.cr4, Cr8 = sregs.cr8, Efer = sregs.efer,
        };
        Span<kvm_msr_entry> msrs = stackalloc kvm_msr_entry[SystemMsrs.Length];
        AccessMsrs(msrs, KVM_GET_MSRS, "KVM_GET_MSRS");
        (state.Tsc, state.Star, state.Lstar, state.Cstar, state.Sfmask, state.KernelGsBase, state.TscAux) =
            (msrs[0].data, msrs[1].data, msrs[2].data, msrs[3].data, msrs[4].data, msrs[5].data, msrs[6].data);
        kvm_xsave xsave;
        // Safe: xsave is a local of the exact size the ioctl writes.
        if (_fd.Ioctl(KVM_GET_XSAVE, &xsave, out int errno) < 0)
        {
            throw KvmError.Failed("KVM_GET_XSAVE", errno);
        }
        state.ExtendedState = new ReadOnlySpan<byte>(xsave.region, sizeof(kvm_xsave)).ToArray();
        kvm_debugregs debug;
        // Safe: debug is a local of the exact size the ioctl writes.
        if (_fd.Ioctl(KVM_GET_DEBUGREGS, &debug, out errno) < 0)
        {
            throw KvmError.Failed("KVM_GET_DEBUGREGS", errno);
        }
        (state.Dr6, state.Dr7) = (debug.dr6, debug.dr7);
        kvm_xcrs xcrs;
        // Safe: xcrs is a local of the exact size the ioctl writes; at most 16 entries are read.
        if (_fd.Ioctl(KVM_GET_XCRS, &xcrs, out errno) == 0)
        {
            var entries = new ReadOnlySpan<kvm_xcr>(xcrs.xcrs, 16);
            foreach (kvm_xcr x in entries[..(int)Math.Min(xcrs.nr_xcrs, 16u)])
            {
                if (x.xcr == 0)
                {
                    state.Xcr0 = x.value;
                }
            }
        }
        return state;
    }

    /// <inheritdoc/>
    public void SetState(VcpuState state)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(state);
        CompletePendingIo(); // a pending completion would otherwise advance the new rip
        kvm_xcrs xcrs = default;
        xcrs.nr_xcrs = 1;
        ((kvm_xcr*)xcrs.xcrs)[0] = new kvm_xcr { xcr = 0, value = state.Xcr0 };
        // Safe: xcrs is a local of the exact size the ioctl reads. XCR0 before XSAVE, which may carry its components.
        if (_fd.Ioctl(KVM_SET_XCRS, &xcrs, out int errno) < 0 && errno != Libc.EINVAL)
        {
            throw KvmError.Failed("KVM_SET_XCRS", errno);
        }
        kvm_xsave xsave = default;
        ReadOnlySpan<byte> image = state.ExtendedState;
        image[..Math.Min(image.Length, sizeof(kvm_xsave))].CopyTo(new Span<byte>(xsave.region, sizeof(kvm_xsave)));
        // Safe: xsave is a local of the exact size the ioctl reads.
        if (_fd.Ioctl(KVM_SET_XSAVE, &xsave, out errno) < 0)
        {
            throw KvmError.Failed("KVM_SET_XSAVE", errno);
        }
        Span<kvm_msr_entry> msrs = stackalloc kvm_msr_entry[SystemMsrs.Length];
        msrs[0].data = state.Tsc;
        msrs[1].data = state.Star;
        msrs[2].data = state.Lstar;
        msrs[3].data = state.Cstar;
        msrs[4].data = state.Sfmask;
        msrs[5].data = state.KernelGsBase;
        msrs[6].data = state.TscAux;
        AccessMsrs(msrs, KVM_SET_MSRS, "KVM_SET_MSRS");
        kvm_debugregs debug;
        // Safe: debug is a local of the exact size the ioctls read and write; DR0-DR3 keep their values.
        if (_fd.Ioctl(KVM_GET_DEBUGREGS, &debug, out errno) < 0)
        {
            throw KvmError.Failed("KVM_GET_DEBUGREGS", errno);
        }
        (debug.dr6, debug.dr7, debug.flags) = (state.Dr6, state.Dr7, 0);
        if (_fd.Ioctl(KVM_SET_DEBUGREGS, &debug, out errno) < 0)
        {
            throw KvmError.Failed("KVM_SET_DEBUGREGS", errno);
        }
        SetSpecialRegisters(state);
        SetGeneralRegisters(state.Registers);
        if (_ranOnce)
        {
            // KVM_SET_REGS replaced what the sync area would have loaded; keep the area in step and clean.
            _run->s_regs = kvm_regs.From(state.Registers);
            _run->kvm_dirty_regs &= ~KVM_SYNC_X86_REGS;
        }
    }

    /// <summary>MSRs of <see cref="VcpuState"/>, in the order GetState/SetState fill them.</summary>
    private static ReadOnlySpan<uint> SystemMsrs => [MSR_IA32_TSC, MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE, MSR_TSC_AUX];

    /// <summary>KVM_GET_MSRS or KVM_SET_MSRS of <see cref="SystemMsrs"/> (entries' data in/out).</summary>
    private void AccessMsrs(Span<kvm_msr_entry> entries, ulong request, string name)
    {
        int count = SystemMsrs.Length;
        int bytes = sizeof(kvm_msrs) + (count * sizeof(kvm_msr_entry));
        byte* buffer = stackalloc byte[bytes];
        ((kvm_msrs*)buffer)->nmsrs = (uint)count;
        ((kvm_msrs*)buffer)->pad = 0;
        var table = new Span<kvm_msr_entry>(buffer + sizeof(kvm_msrs), count);
        for (int i = 0; i < count; i++)
        {
            table[i] = new kvm_msr_entry { index = SystemMsrs[i], data = entries[i].data };
        }
        // Safe: the buffer holds the header and exactly nmsrs entries; the ioctl returns how many it processed.
        int done = _fd.Ioctl(request, buffer, out int errno);
        if (done < 0)
        {
            throw KvmError.Failed(name, errno);
        }
        if (done != count)
        {
            throw new BackendOperationException(name, $"KVM {name} handled {done} of {count} MSRs (MSR 0x{SystemMsrs[done]:x} refused)");
        }
        table.CopyTo(entries);
    }

    private void SetSpecialRegisters(VcpuState state)
    {
        kvm_sregs sregs = GetSpecialRegisters(); // keeps apic_base and the interrupt bitmap
        sregs.cs = kvm_segment.From(state.Cs);
        sregs.ss = kvm_segment.From(state.Ss);
        sregs.ds = kvm_segment.From(state.Ds);
        sregs.es = kvm_segment.From(state.Es);
        sregs.fs = kvm_segment.From(state.Fs);
        sregs.gs = kvm_segment.From(state.Gs);
        sregs.tr = kvm_segment.From(state.Tr);
        sregs.ldt = kvm_segment.From(state.Ldtr);
        sregs.gdt = new kvm_dtable { @base = state.Gdtr.Base, limit = state.Gdtr.Limit };
        sregs.idt = new kvm_dtable { @base = state.Idtr.Base, limit = state.Idtr.Limit };
        sregs.cr0 = state.Cr0;
        sregs.cr2 = state.Cr2;
        sregs.cr3 = state.Cr3;
        sregs.cr4 = state.Cr4;
        sregs.cr8 = state.Cr8;
        sregs.efer = state.Efer;
        // Safe: sregs is a local of the exact size the ioctl reads (pinned by a layout test).
        if (_fd.Ioctl(KVM_SET_SREGS, &sregs, out int errno) < 0)
        {
            throw KvmError.Failed("KVM_SET_SREGS", errno);
        }
    }

    /// <summary><c>KVM_GET_SREGS</c>: the control and segment state (for tests and diagnostics).</summary>
    internal kvm_sregs GetSpecialRegisters()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        kvm_sregs sregs;
        // Safe: sregs is a local of the exact size the ioctl writes.
        if (_fd.Ioctl(KVM_GET_SREGS, &sregs, out int errno) < 0)
        {
            throw KvmError.Failed("KVM_GET_SREGS", errno);
        }
        return sregs;
    }

    /// <inheritdoc/>
    public void Interrupt()
    {
        lock (_threadLock)
        {
            if (_disposed)
            {
                return;
            }
            Volatile.Write(ref _interruptPending, 1);
            // Safe: the mapping is alive while not disposed (Dispose takes this lock).
            Volatile.Write(ref _run->immediate_exit, 1);
            if (_thread != 0)
            {
                // The thread is inside Run (it clears _thread under this lock before leaving), so it is alive.
                _ = Libc.pthread_kill(_thread, _kickSignal);
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_threadLock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
        }
        _mapping.Dispose();
        _fd.Dispose();
    }
}
