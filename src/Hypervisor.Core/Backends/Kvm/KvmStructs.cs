// The structures of linux/kvm.h (x86-64) that the KVM backend passes to ioctls or reads from the kvm_run page,
// with the kernel's names. Sizes and offsets are pinned by tests (tests/Paravirt.Hypervisor.Tests/Kvm).
#pragma warning disable CA1707 // native names kept verbatim

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary><c>struct kvm_regs</c> (144 bytes): general-purpose registers, <c>rip</c>, <c>rflags</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_regs
{
    public ulong rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    public ulong r8, r9, r10, r11, r12, r13, r14, r15;
    public ulong rip, rflags;

    public readonly VcpuRegisters ToRegisters() =>
        new(rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags);

    public static kvm_regs From(in VcpuRegisters r) => new()
    {
        rax = r.Rax, rbx = r.Rbx, rcx = r.Rcx, rdx = r.Rdx, rsi = r.Rsi, rdi = r.Rdi, rsp = r.Rsp, rbp = r.Rbp,
        r8 = r.R8, r9 = r.R9, r10 = r.R10, r11 = r.R11, r12 = r.R12, r13 = r.R13, r14 = r.R14, r15 = r.R15,
        rip = r.Rip, rflags = r.Rflags,
    };
}

/// <summary><c>struct kvm_segment</c> (24 bytes): a segment register in its cached (descriptor) form.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_segment
{
    public ulong @base;
    public uint limit;
    public ushort selector;
    public byte type;
    public byte present, dpl, db, s, l, g, avl;
    public byte unusable;
    public byte padding;

    public readonly SegmentRegister ToSegment() => unusable != 0
        ? new SegmentRegister(selector, @base, limit, 0)
        : new SegmentRegister(selector, @base, limit, SegmentRegister.MakeAttributes(type, s != 0, dpl, present != 0, avl != 0, l != 0, db != 0, g != 0));

    public static kvm_segment From(in SegmentRegister r) => new()
    {
        @base = r.Base, limit = r.Limit, selector = r.Selector, type = (byte)r.Type,
        present = (byte)(r.Present ? 1 : 0), dpl = (byte)r.Dpl, db = (byte)(r.DefaultBig ? 1 : 0),
        s = (byte)(r.IsCodeOrData ? 1 : 0), l = (byte)(r.Long ? 1 : 0), g = (byte)(r.Granularity ? 1 : 0),
        avl = (byte)((r.Attributes >> 12) & 1), unusable = (byte)(r.Attributes == 0 ? 1 : 0),
    };
}

/// <summary><c>struct kvm_dtable</c> (16 bytes): GDTR / IDTR.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_dtable
{
    public ulong @base;
    public ushort limit;
    public ushort padding0, padding1, padding2;
}

/// <summary><c>struct kvm_sregs</c> (312 bytes): segment, descriptor-table and control registers.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_sregs
{
    public kvm_segment cs, ds, es, fs, gs, ss;
    public kvm_segment tr, ldt;
    public kvm_dtable gdt, idt;
    public ulong cr0, cr2, cr3, cr4, cr8;
    public ulong efer;
    public ulong apic_base;
    /// <summary><c>interrupt_bitmap[(KVM_NR_INTERRUPTS + 63) / 64]</c> with 256 interrupts.</summary>
    public fixed ulong interrupt_bitmap[4];
}

/// <summary><c>struct kvm_msrs</c> header (8 bytes); <c>nmsrs</c> entries of <see cref="kvm_msr_entry"/> follow it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_msrs
{
    public uint nmsrs;
    public uint pad;
}

/// <summary><c>struct kvm_msr_entry</c> (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_msr_entry
{
    public uint index;
    public uint reserved;
    public ulong data;
}

/// <summary><c>struct kvm_xsave</c> (4096 bytes): an XSAVE image in the standard format.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_xsave
{
    public fixed uint region[1024];
}

/// <summary><c>struct kvm_xcr</c> (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_xcr
{
    public uint xcr;
    public uint reserved;
    public ulong value;
}

/// <summary><c>struct kvm_xcrs</c> (392 bytes): up to 16 extended control registers.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_xcrs
{
    public uint nr_xcrs;
    public uint flags;
    public fixed byte xcrs[16 * 16];
    public fixed ulong padding[16];
}

/// <summary><c>struct kvm_interrupt</c> (4 bytes): the vector <c>KVM_INTERRUPT</c> injects.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_interrupt
{
    public uint irq;
}

/// <summary><c>struct kvm_debugregs</c> (128 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_debugregs
{
    public fixed ulong db[4];
    public ulong dr6;
    public ulong dr7;
    public ulong flags;
    public fixed ulong reserved[9];
}

/// <summary><c>struct kvm_guest_debug</c> (72 bytes): <c>control</c> (<c>KVM_GUESTDBG_*</c>) and <c>arch.debugreg[8]</c> (DR0-DR3 addresses, DR7 at index 7).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_guest_debug
{
    public uint control;
    public uint pad;
    public fixed ulong debugreg[8];
}

/// <summary><c>struct kvm_userspace_memory_region</c> (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_userspace_memory_region
{
    public uint slot;
    public uint flags;
    public ulong guest_phys_addr;
    /// <summary>Bytes.</summary>
    public ulong memory_size;
    /// <summary>Host address of the start of the slot.</summary>
    public ulong userspace_addr;
}

/// <summary><c>struct kvm_dirty_log</c> (16 bytes): a slot and the user buffer its dirty bitmap is copied to.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_dirty_log
{
    public uint slot;
    public uint padding1;
    /// <summary>Host address of a bitmap of one bit per page of the slot, rounded up to 64 bits.</summary>
    public ulong dirty_bitmap;
}

/// <summary><c>struct kvm_cpuid_entry2</c> (40 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_cpuid_entry2
{
    public uint function, index, flags;
    public uint eax, ebx, ecx, edx;
    public uint padding0, padding1, padding2;
}

/// <summary><c>struct kvm_cpuid2</c> header (8 bytes); <c>nent</c> entries of <see cref="kvm_cpuid_entry2"/> follow it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_cpuid2
{
    public uint nent;
    public uint padding;
}

/// <summary>A <see cref="kvm_msrs"/> block with one entry, for <c>KVM_GET_MSRS</c> / <c>KVM_SET_MSRS</c> of a single MSR.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_msrs_one
{
    public kvm_msrs header;
    public kvm_msr_entry entry;
}

/// <summary>
/// The parts of <c>struct kvm_run</c> (the page shared with the kernel per vCPU, 2352 bytes of defined layout)
/// that the backend uses: the header, the exit union members for <c>KVM_EXIT_IO</c>, <c>KVM_EXIT_MMIO</c>,
/// <c>KVM_EXIT_FAIL_ENTRY</c>, <c>KVM_EXIT_INTERNAL_ERROR</c> (all at offset 0x20), and the sync-register area
/// <c>s.regs</c> at 0x130, whose first member on x86 is a <see cref="kvm_regs"/>.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 0x930)]
internal unsafe struct kvm_run
{
    [FieldOffset(0x00)] public byte request_interrupt_window;
    /// <summary>When nonzero, <c>KVM_RUN</c> returns <c>EINTR</c> at once instead of entering the guest.</summary>
    [FieldOffset(0x01)] public byte immediate_exit;
    [FieldOffset(0x08)] public uint exit_reason;
    [FieldOffset(0x0C)] public byte ready_for_interrupt_injection;
    [FieldOffset(0x0D)] public byte if_flag;
    [FieldOffset(0x0E)] public ushort flags;
    [FieldOffset(0x10)] public ulong cr8;
    [FieldOffset(0x18)] public ulong apic_base;

    // union, KVM_EXIT_IO
    [FieldOffset(0x20)] public byte io_direction;
    [FieldOffset(0x21)] public byte io_size;
    [FieldOffset(0x22)] public ushort io_port;
    [FieldOffset(0x24)] public uint io_count;
    /// <summary>Offset of the data from the start of this page.</summary>
    [FieldOffset(0x28)] public ulong io_data_offset;

    // union, KVM_EXIT_MMIO
    [FieldOffset(0x20)] public ulong mmio_phys_addr;
    [FieldOffset(0x28)] public ulong mmio_data;
    [FieldOffset(0x30)] public uint mmio_len;
    [FieldOffset(0x34)] public byte mmio_is_write;

    // union, KVM_EXIT_DEBUG (struct kvm_debug_exit_arch)
    /// <summary>The exception vector: 1 (#DB: single-step, debug register hit) or 3 (#BP: int3).</summary>
    [FieldOffset(0x20)] public uint debug_exception;
    [FieldOffset(0x28)] public ulong debug_pc;
    [FieldOffset(0x30)] public ulong debug_dr6;
    [FieldOffset(0x38)] public ulong debug_dr7;

    // union, KVM_EXIT_FAIL_ENTRY
    [FieldOffset(0x20)] public ulong fail_entry_hardware_entry_failure_reason;
    [FieldOffset(0x28)] public uint fail_entry_cpu;

    // union, KVM_EXIT_INTERNAL_ERROR
    [FieldOffset(0x20)] public uint internal_suberror;
    [FieldOffset(0x24)] public uint internal_ndata;
    /// <summary><c>internal.data[16]</c> (with <c>KVM_CAP_INTERNAL_ERROR_DATA</c>).</summary>
    [FieldOffset(0x28)] public fixed ulong internal_data[16];

    /// <summary>Register classes the kernel stores into <see cref="s_regs"/> at every exit (<c>KVM_SYNC_X86_*</c>).</summary>
    [FieldOffset(0x120)] public ulong kvm_valid_regs;
    /// <summary>Register classes user space changed in <see cref="s_regs"/>; the kernel loads them on the next <c>KVM_RUN</c>.</summary>
    [FieldOffset(0x128)] public ulong kvm_dirty_regs;
    /// <summary><c>s.regs.regs</c>: the synced general-purpose registers.</summary>
    [FieldOffset(0x130)] public kvm_regs s_regs;
}
