using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Paravirt.Abi;
using Paravirt.Hypervisor.Interop;
using Paravirt.Hypervisor.Memory;
using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// A KVM vCPU (rust-vmm's <c>VcpuFd</c>): its fd and its mapped <c>kvm_run</c> area. Started in flat 64-bit long
/// mode. General-purpose registers travel through the sync-register area of <c>kvm_run</c>
/// (<c>KVM_SYNC_X86_REGS</c>), so a hypercall exit costs no ioctl beyond <c>KVM_RUN</c> itself.
/// </summary>
/// <remarks>
/// <see cref="Interrupt"/> works with <c>kvm_run.immediate_exit</c> plus a signal to the vCPU thread
/// (<see cref="KvmKickSignal"/>): if the thread is inside <c>KVM_RUN</c> the signal makes the ioctl fail with
/// <c>EINTR</c>; if it is about to enter, <c>immediate_exit</c> makes it return at once.
/// </remarks>
[SupportedOSPlatform("linux")]
internal sealed unsafe class KvmVcpu : IVcpu
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

    private bool _ranOnce;
    private bool _hypercallPending;
    private bool _disposed;

    private KvmVcpu(KvmFd fd, KvmRunMapping mapping, int kickSignal)
    {
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
            var vcpu = new KvmVcpu(fd, mapping, kick);
            vcpu.SetCpuid(cpuid);
            vcpu.SetLongMode(LongModeSetup.Write(memory, userPages: flavor == KvmFlavor.Pvm));
            // Ask the kernel to store the general-purpose registers into kvm_run.s.regs at every exit.
            vcpu._run->kvm_valid_regs = KVM_SYNC_X86_REGS;
            vcpu._run->kvm_dirty_regs = 0;
            vcpu._run->immediate_exit = 0;
            if (flavor == KvmFlavor.Pvm)
            {
                vcpu.BootstrapPvm(memory, id, start);
            }
            vcpu.SetRegisters(start);
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
                throw KvmError.Unavailable("KVM_SET_CPUID2", errno);
            }
        }
    }

    private void SetLongMode(in LongModeState state)
    {
        kvm_sregs sregs;
        // Safe: sregs is a local of the exact size the ioctl writes (pinned by a layout test).
        if (_fd.Ioctl(KVM_GET_SREGS, &sregs, out int errno) < 0)
        {
            throw KvmError.Unavailable("KVM_GET_SREGS", errno);
        }
        var code = new kvm_segment
        {
            @base = 0, limit = 0xFFFF_FFFF, selector = state.CodeSelector,
            type = 11, present = 1, dpl = 0, db = 0, s = 1, l = 1, g = 1, // execute/read, accessed; 64-bit
        };
        var data = new kvm_segment
        {
            @base = 0, limit = 0xFFFF_FFFF, selector = state.DataSelector,
            type = 3, present = 1, dpl = 0, db = 1, s = 1, l = 0, g = 1, // read/write, accessed
        };
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.ss = sregs.fs = sregs.gs = data;
        sregs.tr = new kvm_segment
        {
            @base = 0, limit = 0x67, selector = state.TssSelector,
            type = 11, present = 1, dpl = 0, db = 0, s = 0, l = 0, g = 0, // busy 64-bit TSS
        };
        sregs.gdt = new kvm_dtable { @base = state.GdtBase, limit = state.GdtLimit };
        sregs.idt = new kvm_dtable { @base = 0, limit = 0 };
        sregs.cr0 = state.Cr0;
        sregs.cr3 = state.Cr3;
        sregs.cr4 = state.Cr4;
        sregs.efer = state.Efer;
        if (_fd.Ioctl(KVM_SET_SREGS, &sregs, out errno) < 0)
        {
            throw KvmError.Unavailable("KVM_SET_SREGS (flat 64-bit long mode)", errno);
        }
    }

    /// <summary>
    /// Runs the PVM bootstrap stub (<see cref="KvmPvm.WriteBootstrap"/>) to its <c>hlt</c>: afterwards the vCPU
    /// runs natively, and <see cref="SetRegisters"/> loads the real start state. Throws
    /// <see cref="BackendUnavailableException"/> with what happened instead.
    /// </summary>
    private void BootstrapPvm(GuestMemory memory, int id, in VcpuStartState start)
    {
        ulong stub = GuestLayout.PvmBootstrap + (ulong)id * GuestLayout.PvmBootstrapStride;
        ulong vcpuStruct = GuestLayout.PvmVcpuStructs + (ulong)id * EntryConvention.PageSize;
        memory.Clear(new GuestAddress(vcpuStruct), EntryConvention.PageSize);
        int length = KvmPvm.WriteBootstrap(memory.GetSpan(new GuestAddress(stub), KvmPvm.BootstrapLength), vcpuStruct);
        SetRegisters(new VcpuStartState(stub, start.Rsp, 0));

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

        ulong halt = stub + (ulong)length;
        if (exit.Kind != VcpuExitKind.Halt || exit.Rip != halt)
        {
            string what = exit.Kind == VcpuExitKind.Interrupted ? $"did not finish within {KvmPvm.BootstrapTimeout.TotalSeconds:0} s" : $"ended with {exit.Kind} at 0x{exit.Rip:x}{(exit.Detail is null ? "" : $" ({exit.Detail})")}";
            throw new BackendUnavailableException($"KVM under PVM: the bootstrap that registers the PVM vCPU struct {what}, not with a halt at 0x{halt:x}");
        }
        if (!KvmPvm.TryGetMsr(_fd, KvmPvm.MsrVcpuStruct, out ulong registered) || (registered & ~(EntryConvention.PageSize - 1)) != vcpuStruct)
        {
            throw new BackendUnavailableException($"KVM under PVM: after the bootstrap, MSR 0x{KvmPvm.MsrVcpuStruct:x} reads 0x{registered:x}, not the vCPU struct at 0x{vcpuStruct:x}");
        }
    }

    private void SetRegisters(in VcpuStartState start)
    {
        var regs = new kvm_regs { rip = start.Rip, rsp = start.Rsp, rdi = start.Rdi, rflags = 2 };
        // Safe: regs is a local of the exact size the ioctl reads.
        if (_fd.Ioctl(KVM_SET_REGS, &regs, out int errno) < 0)
        {
            throw KvmError.Unavailable("KVM_SET_REGS", errno);
        }
    }

    /// <inheritdoc/>
    public VcpuExit Run()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        kvm_run* run = _run;
        _hypercallPending = false;
        if (Volatile.Read(ref _interruptPending) != 0)
        {
            return ConsumeInterrupt();
        }

        lock (_threadLock)
        {
            _thread = Libc.pthread_self();
        }
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
            return errno is Libc.EINTR or Libc.EAGAIN
                ? ConsumeInterrupt()
                : new VcpuExit(VcpuExitKind.InternalError, run->s_regs.rip, Detail: $"KVM_RUN failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }

        uint reason = run->exit_reason;
        ulong rip = run->s_regs.rip;
        switch (reason)
        {
            case KVM_EXIT_IO:
                if (run->io_direction == KVM_EXIT_IO_OUT && run->io_port == HypercallPage.IoPort)
                {
                    _hypercallPending = true;
                    return new VcpuExit(VcpuExitKind.Hypercall, rip, run->io_port, reason);
                }
                return new VcpuExit(VcpuExitKind.PortIo, rip, run->io_port, reason,
                    $"{(run->io_direction == KVM_EXIT_IO_OUT ? "out" : "in")} of {run->io_size} byte(s) x{run->io_count}");
            case KVM_EXIT_HLT:
                return new VcpuExit(VcpuExitKind.Halt, rip, RawReason: reason);
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
                return ConsumeInterrupt();
            default:
                return new VcpuExit(VcpuExitKind.Unsupported, rip, RawReason: reason, Detail: $"KVM exit reason {reason}");
        }
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
    public HypercallArgs GetHypercallArgs()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ref readonly kvm_regs r = ref _run->s_regs;
        return new HypercallArgs(r.rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8);
    }

    /// <inheritdoc/>
    public void CompleteHypercall(long result)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_hypercallPending)
        {
            throw new InvalidOperationException("CompleteHypercall is only valid after a Hypercall exit");
        }
        _hypercallPending = false;
        // rax goes back through the sync-register area: the kernel loads it on the next KVM_RUN and then skips the
        // `out` itself (its complete_userspace_io step), so rip is left alone.
        _run->s_regs.rax = (ulong)result;
        _run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
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
            throw KvmError.Unavailable("KVM_GET_REGS", errno);
        }
        return regs.ToRegisters();
    }

    /// <summary><c>KVM_GET_SREGS</c>: the control and segment state (for tests and diagnostics).</summary>
    internal kvm_sregs GetSpecialRegisters()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        kvm_sregs sregs;
        // Safe: sregs is a local of the exact size the ioctl writes.
        if (_fd.Ioctl(KVM_GET_SREGS, &sregs, out int errno) < 0)
        {
            throw KvmError.Unavailable("KVM_GET_SREGS", errno);
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
