using System.Globalization;
using System.Runtime.CompilerServices;
using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Tests.Kvm;

/// <summary>
/// Pins the KVM ABI the backend relies on: struct sizes and offsets, ioctl numbers, capabilities and exit reasons.
/// The literal numbers were read from linux/kvm.h (x86-64) with a C program; one test recompiles that program
/// against the installed header and compares.
/// </summary>
public sealed class KvmLayoutTests : StructLayoutTests
{
    private static int Off<T>(string field) => (int)Marshal.OffsetOf<T>(field);

    /// <summary>sizeof of every struct the backend passes to or reads from KVM (and glibc's sigaction).</summary>
    public static TheoryData<Type, int> Sizes => new()
    {
        { typeof(kvm_regs), 0x90 },
        { typeof(kvm_segment), 0x18 },
        { typeof(kvm_dtable), 0x10 },
        { typeof(kvm_sregs), 0x138 },
        { typeof(kvm_userspace_memory_region), 0x20 },
        { typeof(kvm_cpuid_entry2), 0x28 },
        { typeof(kvm_cpuid2), 0x8 },
        { typeof(kvm_msrs_one), 0x18 },
        { typeof(kvm_run), 0x930 },
        { typeof(kvm_msrs), 0x8 },
        { typeof(kvm_msr_entry), 0x10 },
        { typeof(kvm_xsave), 0x1000 },
        { typeof(kvm_xcr), 0x10 },
        { typeof(kvm_xcrs), 0x188 },
        { typeof(kvm_interrupt), 0x4 },
        { typeof(kvm_debugregs), 0x80 },
        { typeof(kvm_guest_debug), 0x48 },
        { typeof(kvm_dirty_log), 0x10 },
        { typeof(Libc.SigAction), 0x98 },
    };

    /// <summary>The offsets of the fields the backend reads or writes (kvm.h; sigaction from glibc's x86-64 layout).</summary>
    public static TheoryData<Type, string, int> Offsets => new()
    {
        { typeof(kvm_regs), nameof(kvm_regs.rdi), 0x28 },
        { typeof(kvm_regs), nameof(kvm_regs.r10), 0x50 },
        { typeof(kvm_regs), nameof(kvm_regs.rip), 0x80 },
        { typeof(kvm_regs), nameof(kvm_regs.rflags), 0x88 },
        { typeof(kvm_segment), "base", 0x0 },
        { typeof(kvm_segment), nameof(kvm_segment.limit), 0x8 },
        { typeof(kvm_segment), nameof(kvm_segment.selector), 0xC },
        { typeof(kvm_segment), nameof(kvm_segment.type), 0xE },
        { typeof(kvm_segment), nameof(kvm_segment.present), 0xF },
        { typeof(kvm_segment), nameof(kvm_segment.db), 0x11 },
        { typeof(kvm_segment), nameof(kvm_segment.l), 0x13 },
        { typeof(kvm_segment), nameof(kvm_segment.g), 0x14 },
        { typeof(kvm_segment), nameof(kvm_segment.unusable), 0x16 },
        { typeof(kvm_sregs), nameof(kvm_sregs.cs), 0x00 },
        { typeof(kvm_sregs), nameof(kvm_sregs.tr), 0x90 },
        { typeof(kvm_sregs), nameof(kvm_sregs.gdt), 0xC0 },
        { typeof(kvm_sregs), nameof(kvm_sregs.idt), 0xD0 },
        { typeof(kvm_sregs), nameof(kvm_sregs.cr0), 0xE0 },
        { typeof(kvm_sregs), nameof(kvm_sregs.cr3), 0xF0 },
        { typeof(kvm_sregs), nameof(kvm_sregs.efer), 0x108 },
        { typeof(kvm_sregs), nameof(kvm_sregs.apic_base), 0x110 },
        { typeof(kvm_sregs), nameof(kvm_sregs.interrupt_bitmap), 0x118 },
        { typeof(kvm_run), nameof(kvm_run.immediate_exit), 0x01 },
        { typeof(kvm_run), nameof(kvm_run.exit_reason), 0x08 },
        { typeof(kvm_run), nameof(kvm_run.cr8), 0x10 },
        { typeof(kvm_run), nameof(kvm_run.io_direction), 0x20 },
        { typeof(kvm_run), nameof(kvm_run.io_size), 0x21 },
        { typeof(kvm_run), nameof(kvm_run.io_port), 0x22 },
        { typeof(kvm_run), nameof(kvm_run.io_count), 0x24 },
        { typeof(kvm_run), nameof(kvm_run.io_data_offset), 0x28 },
        { typeof(kvm_run), nameof(kvm_run.mmio_phys_addr), 0x20 },
        { typeof(kvm_run), nameof(kvm_run.mmio_len), 0x30 },
        { typeof(kvm_run), nameof(kvm_run.mmio_is_write), 0x34 },
        { typeof(kvm_run), nameof(kvm_run.fail_entry_hardware_entry_failure_reason), 0x20 },
        { typeof(kvm_run), nameof(kvm_run.internal_suberror), 0x20 },
        { typeof(kvm_run), nameof(kvm_run.internal_ndata), 0x24 },
        { typeof(kvm_run), nameof(kvm_run.internal_data), 0x28 },
        { typeof(kvm_run), nameof(kvm_run.debug_exception), 0x20 },
        { typeof(kvm_run), nameof(kvm_run.debug_pc), 0x28 },
        { typeof(kvm_run), nameof(kvm_run.debug_dr6), 0x30 },
        { typeof(kvm_run), nameof(kvm_run.kvm_valid_regs), 0x120 },
        { typeof(kvm_run), nameof(kvm_run.kvm_dirty_regs), 0x128 },
        { typeof(kvm_run), nameof(kvm_run.s_regs), 0x130 },
        { typeof(Libc.SigAction), nameof(Libc.SigAction.Mask0), 0x08 },
        { typeof(Libc.SigAction), nameof(Libc.SigAction.Flags), 0x88 },
        { typeof(Libc.SigAction), nameof(Libc.SigAction.Restorer), 0x90 },
    };

    [Fact]
    public void The_synced_rip_is_at_0x1B0_of_kvm_run()
    {
        Assert.Equal(0x1B0, Off<kvm_run>(nameof(kvm_run.s_regs)) + Off<kvm_regs>(nameof(kvm_regs.rip)));
    }

    /// <summary>Ioctl numbers, capabilities, exit reasons and flags, as kvm.h defines them.</summary>
    public static TheoryData<string, ulong, ulong> Constants => new()
    {
        { nameof(KVM_GET_API_VERSION), KVM_GET_API_VERSION, 0xAE00 },
        { nameof(KVM_CREATE_VM), KVM_CREATE_VM, 0xAE01 },
        { nameof(KVM_CHECK_EXTENSION), KVM_CHECK_EXTENSION, 0xAE03 },
        { nameof(KVM_GET_VCPU_MMAP_SIZE), KVM_GET_VCPU_MMAP_SIZE, 0xAE04 },
        { nameof(KVM_CREATE_VCPU), KVM_CREATE_VCPU, 0xAE41 },
        { nameof(KVM_SET_TSS_ADDR), KVM_SET_TSS_ADDR, 0xAE47 },
        { nameof(KVM_RUN), KVM_RUN, 0xAE80 },
        { nameof(KVM_SET_SREGS), KVM_SET_SREGS, 0x4138_AE84 },
        { nameof(ApiVersion), ApiVersion, 12 },
        { nameof(KVM_CAP_USER_MEMORY), KVM_CAP_USER_MEMORY, 3 },
        { nameof(KVM_CAP_SET_TSS_ADDR), KVM_CAP_SET_TSS_ADDR, 4 },
        { nameof(KVM_CAP_EXT_CPUID), KVM_CAP_EXT_CPUID, 7 },
        { nameof(KVM_CAP_SYNC_REGS), KVM_CAP_SYNC_REGS, 74 },
        { nameof(KVM_CAP_IMMEDIATE_EXIT), KVM_CAP_IMMEDIATE_EXIT, 136 },
        { nameof(KVM_EXIT_IO), KVM_EXIT_IO, 2 },
        { nameof(KVM_EXIT_HLT), KVM_EXIT_HLT, 5 },
        { nameof(KVM_EXIT_MMIO), KVM_EXIT_MMIO, 6 },
        { nameof(KVM_EXIT_SHUTDOWN), KVM_EXIT_SHUTDOWN, 8 },
        { nameof(KVM_EXIT_FAIL_ENTRY), KVM_EXIT_FAIL_ENTRY, 9 },
        { nameof(KVM_EXIT_INTR), KVM_EXIT_INTR, 10 },
        { nameof(KVM_EXIT_INTERNAL_ERROR), KVM_EXIT_INTERNAL_ERROR, 17 },
        { nameof(KVM_EXIT_IRQ_WINDOW_OPEN), KVM_EXIT_IRQ_WINDOW_OPEN, 7 },
        { nameof(KVM_EXIT_DEBUG), KVM_EXIT_DEBUG, 4 },
        { nameof(KVM_EXIT_IO_OUT), KVM_EXIT_IO_OUT, 1 },
        { nameof(KVM_SYNC_X86_REGS), KVM_SYNC_X86_REGS, 1 },
    };

    /// <summary>Each ioctl as kvm.h defines it: <c>_IO</c>/<c>_IOR</c>/<c>_IOW</c>/<c>_IOWR(KVMIO, number, argument struct)</c>.</summary>
    public static TheoryData<string, ulong, string, ulong, Type?> Ioctls => new()
    {
        { nameof(KVM_RUN), KVM_RUN, "_IO", 0x80, null },
        { nameof(KVM_GET_SUPPORTED_CPUID), KVM_GET_SUPPORTED_CPUID, "_IOWR", 0x05, typeof(kvm_cpuid2) },
        { nameof(KVM_SET_USER_MEMORY_REGION), KVM_SET_USER_MEMORY_REGION, "_IOW", 0x46, typeof(kvm_userspace_memory_region) },
        { nameof(KVM_GET_DIRTY_LOG), KVM_GET_DIRTY_LOG, "_IOW", 0x42, typeof(kvm_dirty_log) },
        { nameof(KVM_GET_REGS), KVM_GET_REGS, "_IOR", 0x81, typeof(kvm_regs) },
        { nameof(KVM_SET_REGS), KVM_SET_REGS, "_IOW", 0x82, typeof(kvm_regs) },
        { nameof(KVM_GET_SREGS), KVM_GET_SREGS, "_IOR", 0x83, typeof(kvm_sregs) },
        { nameof(KVM_SET_SREGS), KVM_SET_SREGS, "_IOW", 0x84, typeof(kvm_sregs) },
        { nameof(KVM_SET_CPUID2), KVM_SET_CPUID2, "_IOW", 0x90, typeof(kvm_cpuid2) },
        { nameof(KVM_GET_MSRS), KVM_GET_MSRS, "_IOWR", 0x88, typeof(kvm_msrs) },
        { nameof(KVM_SET_MSRS), KVM_SET_MSRS, "_IOW", 0x89, typeof(kvm_msrs) },
        { nameof(KVM_GET_XSAVE), KVM_GET_XSAVE, "_IOR", 0xA4, typeof(kvm_xsave) },
        { nameof(KVM_SET_XSAVE), KVM_SET_XSAVE, "_IOW", 0xA5, typeof(kvm_xsave) },
        { nameof(KVM_GET_XCRS), KVM_GET_XCRS, "_IOR", 0xA6, typeof(kvm_xcrs) },
        { nameof(KVM_SET_XCRS), KVM_SET_XCRS, "_IOW", 0xA7, typeof(kvm_xcrs) },
        { nameof(KVM_INTERRUPT), KVM_INTERRUPT, "_IOW", 0x86, typeof(kvm_interrupt) },
        { nameof(KVM_GET_DEBUGREGS), KVM_GET_DEBUGREGS, "_IOR", 0xA1, typeof(kvm_debugregs) },
        { nameof(KVM_SET_DEBUGREGS), KVM_SET_DEBUGREGS, "_IOW", 0xA2, typeof(kvm_debugregs) },
        { nameof(KVM_SET_GUEST_DEBUG), KVM_SET_GUEST_DEBUG, "_IOW", 0x9B, typeof(kvm_guest_debug) },
    };

    [Theory]
    [MemberData(nameof(Constants))]
    public void Constants_match_kvm_h(string name, ulong value, ulong expected) => Assert.True(value == expected, $"{name} is {value}, kvm.h says {expected}");

    [Theory]
    [MemberData(nameof(Ioctls))]
    public void Ioctl_numbers_are_the_IOC_encoding_of_their_argument_structs(string name, ulong ioctl, string macro, ulong number, Type? argument)
    {
        ulong direction = macro switch { "_IO" => IocNone, "_IOR" => IocRead, "_IOW" => IocWrite, "_IOWR" => IocRead | IocWrite, _ => throw new ArgumentException(macro) };
        ulong size = argument is null ? 0 : (ulong)RuntimeHelpers.SizeOf(argument.TypeHandle);
        Assert.True(ioctl == Encode(direction, number, size), $"{name} is 0x{ioctl:X}, not the _IOC encoding 0x{Encode(direction, number, size):X}");
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")] // pure arithmetic, but it lives in the Linux-only VM class
    public void Guard_pages_become_holes_between_memory_slots()
    {
        Assert.Equal([(0UL, 0x100_0000UL)], Paravirt.Hypervisor.Backends.Kvm.KvmVm.SlotsAround(0x100_0000, []));
        Assert.Equal([(0UL, 0x10_8000UL), (0x10_9000UL, 0x100_0000UL - 0x10_9000UL)], Paravirt.Hypervisor.Backends.Kvm.KvmVm.SlotsAround(0x100_0000, [0x10_8000]));
        Assert.Equal([(0x1000UL, 0xFFF000UL)], Paravirt.Hypervisor.Backends.Kvm.KvmVm.SlotsAround(0x100_0000, [0]));
        Assert.Equal([(0UL, 0xFFF000UL)], Paravirt.Hypervisor.Backends.Kvm.KvmVm.SlotsAround(0x100_0000, [0xFFF000, 0x1_0000_0000]));
    }

    /// <summary>Compiles a C program against the installed header and checks every number above against it.</summary>
    [KvmHeaderFact]
    public unsafe void Table_matches_the_installed_kvm_h()
    {
        var expected = new (string C, ulong Value)[]
        {
            ("KVM_GET_API_VERSION", KVM_GET_API_VERSION), ("KVM_CREATE_VM", KVM_CREATE_VM),
            ("KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION), ("KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE),
            ("KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID), ("KVM_CREATE_VCPU", KVM_CREATE_VCPU),
            ("KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION), ("KVM_SET_TSS_ADDR", KVM_SET_TSS_ADDR),
            ("KVM_GET_DIRTY_LOG", KVM_GET_DIRTY_LOG), ("KVM_MEM_LOG_DIRTY_PAGES", KVM_MEM_LOG_DIRTY_PAGES),
            ("sizeof(struct kvm_dirty_log)", (ulong)sizeof(kvm_dirty_log)),
            ("KVM_RUN", KVM_RUN), ("KVM_GET_REGS", KVM_GET_REGS), ("KVM_SET_REGS", KVM_SET_REGS),
            ("KVM_GET_SREGS", KVM_GET_SREGS), ("KVM_SET_SREGS", KVM_SET_SREGS), ("KVM_SET_CPUID2", KVM_SET_CPUID2),
            ("KVM_GET_MSRS", KVM_GET_MSRS), ("KVM_SET_MSRS", KVM_SET_MSRS), ("KVM_GET_XSAVE", KVM_GET_XSAVE),
            ("KVM_SET_XSAVE", KVM_SET_XSAVE), ("KVM_GET_XCRS", KVM_GET_XCRS), ("KVM_SET_XCRS", KVM_SET_XCRS),
            ("KVM_INTERRUPT", KVM_INTERRUPT), ("KVM_GET_DEBUGREGS", KVM_GET_DEBUGREGS), ("KVM_SET_DEBUGREGS", KVM_SET_DEBUGREGS),
            ("KVM_EXIT_IRQ_WINDOW_OPEN", KVM_EXIT_IRQ_WINDOW_OPEN), ("sizeof(struct kvm_debugregs)", (ulong)sizeof(kvm_debugregs)),
            ("offsetof(struct kvm_run, request_interrupt_window)", (ulong)Off<kvm_run>(nameof(kvm_run.request_interrupt_window))),
            ("offsetof(struct kvm_run, ready_for_interrupt_injection)", (ulong)Off<kvm_run>(nameof(kvm_run.ready_for_interrupt_injection))),
            ("offsetof(struct kvm_run, if_flag)", (ulong)Off<kvm_run>(nameof(kvm_run.if_flag))),
            ("KVM_CAP_XSAVE", KVM_CAP_XSAVE), ("KVM_CAP_XCRS", KVM_CAP_XCRS),
            ("KVM_SET_GUEST_DEBUG", KVM_SET_GUEST_DEBUG), ("sizeof(struct kvm_guest_debug)", (ulong)sizeof(kvm_guest_debug)),
            ("KVM_EXIT_DEBUG", KVM_EXIT_DEBUG), ("KVM_GUESTDBG_ENABLE", KVM_GUESTDBG_ENABLE),
            ("KVM_GUESTDBG_SINGLESTEP", KVM_GUESTDBG_SINGLESTEP), ("KVM_GUESTDBG_USE_SW_BP", KVM_GUESTDBG_USE_SW_BP),
            ("KVM_GUESTDBG_USE_HW_BP", KVM_GUESTDBG_USE_HW_BP),
            ("offsetof(struct kvm_run, debug.arch.exception)", (ulong)Off<kvm_run>(nameof(kvm_run.debug_exception))),
            ("offsetof(struct kvm_run, debug.arch.pc)", (ulong)Off<kvm_run>(nameof(kvm_run.debug_pc))),
            ("offsetof(struct kvm_run, debug.arch.dr6)", (ulong)Off<kvm_run>(nameof(kvm_run.debug_dr6))),
            ("sizeof(struct kvm_xcrs)", (ulong)sizeof(kvm_xcrs)), ("sizeof(struct kvm_msr_entry)", (ulong)sizeof(kvm_msr_entry)),
            ("sizeof(struct kvm_msrs)", (ulong)sizeof(kvm_msrs)),
            ("offsetof(struct kvm_msr_entry, data)", (ulong)Off<kvm_msr_entry>(nameof(kvm_msr_entry.data))),
            ("KVM_API_VERSION", (ulong)ApiVersion),
            ("KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY), ("KVM_CAP_SET_TSS_ADDR", KVM_CAP_SET_TSS_ADDR),
            ("KVM_CAP_EXT_CPUID", KVM_CAP_EXT_CPUID), ("KVM_CAP_SYNC_REGS", KVM_CAP_SYNC_REGS),
            ("KVM_CAP_IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT),
            ("KVM_EXIT_IO", KVM_EXIT_IO), ("KVM_EXIT_HLT", KVM_EXIT_HLT), ("KVM_EXIT_MMIO", KVM_EXIT_MMIO),
            ("KVM_EXIT_SHUTDOWN", KVM_EXIT_SHUTDOWN), ("KVM_EXIT_FAIL_ENTRY", KVM_EXIT_FAIL_ENTRY),
            ("KVM_EXIT_INTR", KVM_EXIT_INTR), ("KVM_EXIT_INTERNAL_ERROR", KVM_EXIT_INTERNAL_ERROR),
            ("KVM_EXIT_IO_OUT", KVM_EXIT_IO_OUT), ("KVM_SYNC_X86_REGS", KVM_SYNC_X86_REGS),
            ("sizeof(struct kvm_regs)", (ulong)sizeof(kvm_regs)), ("sizeof(struct kvm_sregs)", (ulong)sizeof(kvm_sregs)),
            ("sizeof(struct kvm_segment)", (ulong)sizeof(kvm_segment)), ("sizeof(struct kvm_run)", (ulong)sizeof(kvm_run)),
            ("offsetof(struct kvm_run, immediate_exit)", (ulong)Off<kvm_run>(nameof(kvm_run.immediate_exit))),
            ("offsetof(struct kvm_run, exit_reason)", (ulong)Off<kvm_run>(nameof(kvm_run.exit_reason))),
            ("offsetof(struct kvm_run, io.port)", (ulong)Off<kvm_run>(nameof(kvm_run.io_port))),
            ("offsetof(struct kvm_run, mmio.phys_addr)", (ulong)Off<kvm_run>(nameof(kvm_run.mmio_phys_addr))),
            ("offsetof(struct kvm_run, mmio.is_write)", (ulong)Off<kvm_run>(nameof(kvm_run.mmio_is_write))),
            ("offsetof(struct kvm_run, internal.data)", (ulong)Off<kvm_run>(nameof(kvm_run.internal_data))),
            ("offsetof(struct kvm_run, kvm_valid_regs)", (ulong)Off<kvm_run>(nameof(kvm_run.kvm_valid_regs))),
            ("offsetof(struct kvm_run, kvm_dirty_regs)", (ulong)Off<kvm_run>(nameof(kvm_run.kvm_dirty_regs))),
            ("offsetof(struct kvm_run, s.regs.regs)", (ulong)Off<kvm_run>(nameof(kvm_run.s_regs))),
            ("offsetof(struct kvm_sregs, efer)", (ulong)Off<kvm_sregs>(nameof(kvm_sregs.efer))),
            ("offsetof(struct kvm_sregs, interrupt_bitmap)", (ulong)Off<kvm_sregs>(nameof(kvm_sregs.interrupt_bitmap))),
        };
        string dir = Directory.CreateTempSubdirectory("paravirt-kvm-h-").FullName;
        try
        {
            string source = "#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\nint main(void)\n{\n"
                + string.Concat(expected.Select(e => $"    printf(\"%llu\\n\", (unsigned long long)({e.C}));\n"))
                + "    return 0;\n}\n";
            File.WriteAllText(Path.Combine(dir, "kvm_h.c"), source);
            ProcessRunner.RunChecked("gcc", "-o", $"{dir}/kvm_h", $"{dir}/kvm_h.c");
            string[] actual = ProcessRunner.RunChecked($"{dir}/kvm_h").Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < expected.Length; i++)
            {
                Assert.True(ulong.Parse(actual[i], CultureInfo.InvariantCulture) == expected[i].Value,
                    $"{expected[i].C}: kvm.h says {actual[i]}, the C# table says {expected[i].Value}");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }}
