namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// The raw numbers of the KVM user-space API (<c>linux/kvm.h</c>, x86-64): ioctl requests, capabilities, exit
/// reasons and sync-register bits, all in this one table. Requests are literal values; tests check each one
/// against the kernel's <c>_IOC</c> encoding of its argument structure's size (<see cref="Encode"/>) and against
/// the numbers the installed header produces.
/// </summary>
internal static class KvmIoctls
{
    /// <summary>The only KVM API version there has ever been (<c>KVM_API_VERSION</c>).</summary>
    internal const int ApiVersion = 12;

    /// <summary>The ioctl type byte of KVM (<c>KVMIO</c>).</summary>
    internal const ulong KVMIO = 0xAE;
    /// <summary><c>_IOC_NONE</c>, <c>_IOC_WRITE</c>, <c>_IOC_READ</c>.</summary>
    internal const ulong IocNone = 0, IocWrite = 1, IocRead = 2;

    /// <summary>The kernel's <c>_IOC(dir, KVMIO, nr, size)</c> (x86: 8-bit nr, 8-bit type, 14-bit size, 2-bit dir); tests check every request below against it.</summary>
    internal static ulong Encode(ulong dir, ulong nr, ulong size) => (dir << 30) | (size << 16) | (KVMIO << 8) | nr;

    // System ioctls (on the /dev/kvm fd).
    /// <summary><c>_IO(KVMIO, 0x00)</c>.</summary>
    internal const ulong KVM_GET_API_VERSION = 0xAE00;
    /// <summary><c>_IO(KVMIO, 0x01)</c>.</summary>
    internal const ulong KVM_CREATE_VM = 0xAE01;
    /// <summary><c>_IO(KVMIO, 0x03)</c>.</summary>
    internal const ulong KVM_CHECK_EXTENSION = 0xAE03;
    /// <summary><c>_IO(KVMIO, 0x04)</c>.</summary>
    internal const ulong KVM_GET_VCPU_MMAP_SIZE = 0xAE04;
    /// <summary><c>_IOWR(KVMIO, 0x05, struct kvm_cpuid2)</c>.</summary>
    internal const ulong KVM_GET_SUPPORTED_CPUID = 0xC008_AE05;

    // VM ioctls.
    /// <summary><c>_IO(KVMIO, 0x41)</c>.</summary>
    internal const ulong KVM_CREATE_VCPU = 0xAE41;
    /// <summary><c>_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)</c>.</summary>
    internal const ulong KVM_SET_USER_MEMORY_REGION = 0x4020_AE46;
    /// <summary><c>_IO(KVMIO, 0x47)</c>.</summary>
    internal const ulong KVM_SET_TSS_ADDR = 0xAE47;
    /// <summary><c>_IOW(KVMIO, 0x42, struct kvm_dirty_log)</c>: copies and clears a memory slot's dirty bitmap.</summary>
    internal const ulong KVM_GET_DIRTY_LOG = 0x4010_AE42;
    /// <summary><c>kvm_userspace_memory_region.flags</c>: record the pages the guest writes (<c>KVM_GET_DIRTY_LOG</c>).</summary>
    internal const uint KVM_MEM_LOG_DIRTY_PAGES = 1;

    // vCPU ioctls.
    /// <summary><c>_IO(KVMIO, 0x80)</c>.</summary>
    internal const ulong KVM_RUN = 0xAE80;
    /// <summary><c>_IOR(KVMIO, 0x81, struct kvm_regs)</c>.</summary>
    internal const ulong KVM_GET_REGS = 0x8090_AE81;
    /// <summary><c>_IOW(KVMIO, 0x82, struct kvm_regs)</c>.</summary>
    internal const ulong KVM_SET_REGS = 0x4090_AE82;
    /// <summary><c>_IOR(KVMIO, 0x83, struct kvm_sregs)</c>.</summary>
    internal const ulong KVM_GET_SREGS = 0x8138_AE83;
    /// <summary><c>_IOW(KVMIO, 0x84, struct kvm_sregs)</c>.</summary>
    internal const ulong KVM_SET_SREGS = 0x4138_AE84;
    /// <summary><c>_IOWR(KVMIO, 0x88, struct kvm_msrs)</c>: reads the MSRs named in the entries that follow the header.</summary>
    internal const ulong KVM_GET_MSRS = 0xC008_AE88;
    /// <summary><c>_IOW(KVMIO, 0x89, struct kvm_msrs)</c>.</summary>
    internal const ulong KVM_SET_MSRS = 0x4008_AE89;
    /// <summary><c>_IOW(KVMIO, 0x86, struct kvm_interrupt)</c>: queues an external interrupt vector (no in-kernel irqchip).</summary>
    internal const ulong KVM_INTERRUPT = 0x4004_AE86;
    /// <summary><c>_IOR(KVMIO, 0xa1, struct kvm_debugregs)</c>.</summary>
    internal const ulong KVM_GET_DEBUGREGS = 0x8080_AEA1;
    /// <summary><c>_IOW(KVMIO, 0xa2, struct kvm_debugregs)</c>.</summary>
    internal const ulong KVM_SET_DEBUGREGS = 0x4080_AEA2;
    /// <summary><c>_IOW(KVMIO, 0x90, struct kvm_cpuid2)</c>.</summary>
    internal const ulong KVM_SET_CPUID2 = 0x4008_AE90;
    /// <summary><c>_IOR(KVMIO, 0xa4, struct kvm_xsave)</c>: the x87/SSE/AVX state as an XSAVE image.</summary>
    internal const ulong KVM_GET_XSAVE = 0x9000_AEA4;
    /// <summary><c>_IOW(KVMIO, 0xa5, struct kvm_xsave)</c>.</summary>
    internal const ulong KVM_SET_XSAVE = 0x5000_AEA5;
    /// <summary><c>_IOR(KVMIO, 0xa6, struct kvm_xcrs)</c>.</summary>
    internal const ulong KVM_GET_XCRS = 0x8188_AEA6;
    /// <summary><c>_IOW(KVMIO, 0xa7, struct kvm_xcrs)</c>.</summary>
    internal const ulong KVM_SET_XCRS = 0x4188_AEA7;
    /// <summary><c>_IOW(KVMIO, 0x9b, struct kvm_guest_debug)</c>: breakpoints, single-step, debug registers.</summary>
    internal const ulong KVM_SET_GUEST_DEBUG = 0x4048_AE9B;

    // Capabilities (KVM_CHECK_EXTENSION).
    /// <summary><c>KVM_CAP_USER_MEMORY</c>: <c>KVM_SET_USER_MEMORY_REGION</c>.</summary>
    internal const int KVM_CAP_USER_MEMORY = 3;
    /// <summary><c>KVM_CAP_SET_TSS_ADDR</c>.</summary>
    internal const int KVM_CAP_SET_TSS_ADDR = 4;
    /// <summary><c>KVM_CAP_EXT_CPUID</c>: <c>KVM_GET_SUPPORTED_CPUID</c>, <c>KVM_SET_CPUID2</c>.</summary>
    internal const int KVM_CAP_EXT_CPUID = 7;
    /// <summary><c>KVM_CAP_XSAVE</c>: <c>KVM_GET_XSAVE</c>/<c>KVM_SET_XSAVE</c>.</summary>
    internal const int KVM_CAP_XSAVE = 55;
    /// <summary><c>KVM_CAP_XCRS</c>: <c>KVM_GET_XCRS</c>/<c>KVM_SET_XCRS</c>.</summary>
    internal const int KVM_CAP_XCRS = 56;
    /// <summary><c>KVM_CAP_SYNC_REGS</c>: returns the supported <c>KVM_SYNC_X86_*</c> bits.</summary>
    internal const int KVM_CAP_SYNC_REGS = 74;
    /// <summary><c>KVM_CAP_IMMEDIATE_EXIT</c>: <c>kvm_run.immediate_exit</c>.</summary>
    internal const int KVM_CAP_IMMEDIATE_EXIT = 136;

    // Exit reasons (kvm_run.exit_reason).
    /// <summary><c>KVM_EXIT_UNKNOWN</c>.</summary>
    internal const uint KVM_EXIT_UNKNOWN = 0;
    /// <summary><c>KVM_EXIT_IO</c>.</summary>
    internal const uint KVM_EXIT_IO = 2;
    /// <summary><c>KVM_EXIT_DEBUG</c>: a guest-debug event (<c>KVM_SET_GUEST_DEBUG</c>): breakpoint, single-step, debug register hit.</summary>
    internal const uint KVM_EXIT_DEBUG = 4;
    /// <summary><c>KVM_EXIT_IRQ_WINDOW_OPEN</c>: the guest can take an interrupt now (after <c>request_interrupt_window</c>).</summary>
    internal const uint KVM_EXIT_IRQ_WINDOW_OPEN = 7;
    /// <summary><c>KVM_EXIT_HLT</c>.</summary>
    internal const uint KVM_EXIT_HLT = 5;
    /// <summary><c>KVM_EXIT_MMIO</c>.</summary>
    internal const uint KVM_EXIT_MMIO = 6;
    /// <summary><c>KVM_EXIT_SHUTDOWN</c>.</summary>
    internal const uint KVM_EXIT_SHUTDOWN = 8;
    /// <summary><c>KVM_EXIT_FAIL_ENTRY</c>.</summary>
    internal const uint KVM_EXIT_FAIL_ENTRY = 9;
    /// <summary><c>KVM_EXIT_INTR</c>.</summary>
    internal const uint KVM_EXIT_INTR = 10;
    /// <summary><c>KVM_EXIT_INTERNAL_ERROR</c>.</summary>
    internal const uint KVM_EXIT_INTERNAL_ERROR = 17;

    /// <summary><c>KVM_EXIT_IO_IN</c> (kvm_run.io.direction).</summary>
    internal const byte KVM_EXIT_IO_IN = 0;
    /// <summary><c>KVM_EXIT_IO_OUT</c> (kvm_run.io.direction).</summary>
    internal const byte KVM_EXIT_IO_OUT = 1;

    /// <summary><c>KVM_GUESTDBG_*</c> (kvm_guest_debug.control): enable, single-step, intercept int3, use the debug registers.</summary>
    internal const uint KVM_GUESTDBG_ENABLE = 0x1, KVM_GUESTDBG_SINGLESTEP = 0x2, KVM_GUESTDBG_USE_SW_BP = 0x1_0000, KVM_GUESTDBG_USE_HW_BP = 0x2_0000;

    /// <summary><c>KVM_SYNC_X86_REGS</c>: general-purpose registers in <c>kvm_run.s.regs</c>.</summary>
    internal const ulong KVM_SYNC_X86_REGS = 1;

    /// <summary>The system MSRs a <see cref="VcpuState"/> carries, by number (<c>MSR_STAR</c> ... <c>MSR_TSC_AUX</c>, <c>MSR_IA32_TSC</c>).</summary>
    internal const uint MSR_IA32_TSC = 0x10, MSR_STAR = 0xC000_0081, MSR_LSTAR = 0xC000_0082, MSR_CSTAR = 0xC000_0083,
        MSR_SYSCALL_MASK = 0xC000_0084, MSR_KERNEL_GS_BASE = 0xC000_0102, MSR_TSC_AUX = 0xC000_0103;

    /// <summary>Most CPUID entries asked of <c>KVM_GET_SUPPORTED_CPUID</c> (the kernel's own limit, <c>KVM_MAX_CPUID_ENTRIES</c>, is 256).</summary>
    internal const int MaxCpuidEntries = 256;
}
