using System.Globalization;
using System.Runtime.CompilerServices;
using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Tests.Kvm;

/// <summary>
/// Pins the KVM ABI the backend relies on: struct sizes and offsets, ioctl numbers, capabilities and exit reasons.
/// The literal numbers were read from linux/kvm.h (x86-64) with a C program; one test recompiles that program
/// against the installed header and compares.
/// </summary>
public sealed class KvmLayoutTests
{
    private static int Off<T>(string field) => (int)Marshal.OffsetOf<T>(field);

    [Fact]
    public void Struct_sizes_match_kvm_h()
    {
        Assert.Equal(0x90, Unsafe.SizeOf<kvm_regs>());
        Assert.Equal(0x18, Unsafe.SizeOf<kvm_segment>());
        Assert.Equal(0x10, Unsafe.SizeOf<kvm_dtable>());
        Assert.Equal(0x138, Unsafe.SizeOf<kvm_sregs>());
        Assert.Equal(0x20, Unsafe.SizeOf<kvm_userspace_memory_region>());
        Assert.Equal(0x28, Unsafe.SizeOf<kvm_cpuid_entry2>());
        Assert.Equal(0x8, Unsafe.SizeOf<kvm_cpuid2>());
        Assert.Equal(0x18, Unsafe.SizeOf<kvm_msrs_one>());
        Assert.Equal(0x930, Unsafe.SizeOf<kvm_run>());
        Assert.Equal(0x8, Unsafe.SizeOf<kvm_msrs>());
        Assert.Equal(0x10, Unsafe.SizeOf<kvm_msr_entry>());
        Assert.Equal(0x1000, Unsafe.SizeOf<kvm_xsave>());
        Assert.Equal(0x10, Unsafe.SizeOf<kvm_xcr>());
        Assert.Equal(0x188, Unsafe.SizeOf<kvm_xcrs>());
        Assert.Equal(0x4, Unsafe.SizeOf<kvm_interrupt>());
        Assert.Equal(0x80, Unsafe.SizeOf<kvm_debugregs>());
        Assert.Equal(0x48, Unsafe.SizeOf<kvm_guest_debug>());
        Assert.Equal(0x98, Unsafe.SizeOf<Libc.SigAction>());
    }

    [Fact]
    public void Register_offsets_match_kvm_h()
    {
        Assert.Equal(0x28, Off<kvm_regs>(nameof(kvm_regs.rdi)));
        Assert.Equal(0x50, Off<kvm_regs>(nameof(kvm_regs.r10)));
        Assert.Equal(0x80, Off<kvm_regs>(nameof(kvm_regs.rip)));
        Assert.Equal(0x88, Off<kvm_regs>(nameof(kvm_regs.rflags)));

        Assert.Equal(0x0, Off<kvm_segment>("base"));
        Assert.Equal(0x8, Off<kvm_segment>(nameof(kvm_segment.limit)));
        Assert.Equal(0xC, Off<kvm_segment>(nameof(kvm_segment.selector)));
        Assert.Equal(0xE, Off<kvm_segment>(nameof(kvm_segment.type)));
        Assert.Equal(0xF, Off<kvm_segment>(nameof(kvm_segment.present)));
        Assert.Equal(0x11, Off<kvm_segment>(nameof(kvm_segment.db)));
        Assert.Equal(0x13, Off<kvm_segment>(nameof(kvm_segment.l)));
        Assert.Equal(0x14, Off<kvm_segment>(nameof(kvm_segment.g)));
        Assert.Equal(0x16, Off<kvm_segment>(nameof(kvm_segment.unusable)));

        Assert.Equal(0x00, Off<kvm_sregs>(nameof(kvm_sregs.cs)));
        Assert.Equal(0x90, Off<kvm_sregs>(nameof(kvm_sregs.tr)));
        Assert.Equal(0xC0, Off<kvm_sregs>(nameof(kvm_sregs.gdt)));
        Assert.Equal(0xD0, Off<kvm_sregs>(nameof(kvm_sregs.idt)));
        Assert.Equal(0xE0, Off<kvm_sregs>(nameof(kvm_sregs.cr0)));
        Assert.Equal(0xF0, Off<kvm_sregs>(nameof(kvm_sregs.cr3)));
        Assert.Equal(0x108, Off<kvm_sregs>(nameof(kvm_sregs.efer)));
        Assert.Equal(0x110, Off<kvm_sregs>(nameof(kvm_sregs.apic_base)));
        Assert.Equal(0x118, Off<kvm_sregs>(nameof(kvm_sregs.interrupt_bitmap)));
    }

    [Fact]
    public void Kvm_run_offsets_match_kvm_h()
    {
        Assert.Equal(0x01, Off<kvm_run>(nameof(kvm_run.immediate_exit)));
        Assert.Equal(0x08, Off<kvm_run>(nameof(kvm_run.exit_reason)));
        Assert.Equal(0x10, Off<kvm_run>(nameof(kvm_run.cr8)));
        Assert.Equal(0x20, Off<kvm_run>(nameof(kvm_run.io_direction)));
        Assert.Equal(0x21, Off<kvm_run>(nameof(kvm_run.io_size)));
        Assert.Equal(0x22, Off<kvm_run>(nameof(kvm_run.io_port)));
        Assert.Equal(0x24, Off<kvm_run>(nameof(kvm_run.io_count)));
        Assert.Equal(0x28, Off<kvm_run>(nameof(kvm_run.io_data_offset)));
        Assert.Equal(0x20, Off<kvm_run>(nameof(kvm_run.mmio_phys_addr)));
        Assert.Equal(0x30, Off<kvm_run>(nameof(kvm_run.mmio_len)));
        Assert.Equal(0x34, Off<kvm_run>(nameof(kvm_run.mmio_is_write)));
        Assert.Equal(0x20, Off<kvm_run>(nameof(kvm_run.fail_entry_hardware_entry_failure_reason)));
        Assert.Equal(0x20, Off<kvm_run>(nameof(kvm_run.internal_suberror)));
        Assert.Equal(0x24, Off<kvm_run>(nameof(kvm_run.internal_ndata)));
        Assert.Equal(0x28, Off<kvm_run>(nameof(kvm_run.internal_data)));
        Assert.Equal(0x120, Off<kvm_run>(nameof(kvm_run.kvm_valid_regs)));
        Assert.Equal(0x128, Off<kvm_run>(nameof(kvm_run.kvm_dirty_regs)));
        Assert.Equal(0x130, Off<kvm_run>(nameof(kvm_run.s_regs)));
        Assert.Equal(0x1B0, Off<kvm_run>(nameof(kvm_run.s_regs)) + Off<kvm_regs>(nameof(kvm_regs.rip)));
    }

    [Fact]
    public void Sigaction_offsets_match_glibc()
    {
        Assert.Equal(0x08, Off<Libc.SigAction>(nameof(Libc.SigAction.Mask0)));
        Assert.Equal(0x88, Off<Libc.SigAction>(nameof(Libc.SigAction.Flags)));
        Assert.Equal(0x90, Off<Libc.SigAction>(nameof(Libc.SigAction.Restorer)));
    }

    [Fact]
    public unsafe void Ioctl_numbers_are_the_IOC_encoding_of_their_argument_structs()
    {
        Assert.Equal(0xAE00UL, KVM_GET_API_VERSION);
        Assert.Equal(0xAE01UL, KVM_CREATE_VM);
        Assert.Equal(0xAE03UL, KVM_CHECK_EXTENSION);
        Assert.Equal(0xAE04UL, KVM_GET_VCPU_MMAP_SIZE);
        Assert.Equal(0xAE41UL, KVM_CREATE_VCPU);
        Assert.Equal(0xAE47UL, KVM_SET_TSS_ADDR);
        Assert.Equal(0xAE80UL, KVM_RUN);
        Assert.Equal(KVM_RUN, Encode(IocNone, 0x80, 0));
        Assert.Equal(KVM_GET_SUPPORTED_CPUID, Encode(IocRead | IocWrite, 0x05, (ulong)sizeof(kvm_cpuid2)));
        Assert.Equal(KVM_SET_USER_MEMORY_REGION, Encode(IocWrite, 0x46, (ulong)sizeof(kvm_userspace_memory_region)));
        Assert.Equal(KVM_GET_DIRTY_LOG, Encode(IocWrite, 0x42, (ulong)sizeof(kvm_dirty_log)));
        Assert.Equal(16, sizeof(kvm_dirty_log));
        Assert.Equal(KVM_GET_REGS, Encode(IocRead, 0x81, (ulong)sizeof(kvm_regs)));
        Assert.Equal(KVM_SET_REGS, Encode(IocWrite, 0x82, (ulong)sizeof(kvm_regs)));
        Assert.Equal(KVM_GET_SREGS, Encode(IocRead, 0x83, (ulong)sizeof(kvm_sregs)));
        Assert.Equal(KVM_SET_SREGS, Encode(IocWrite, 0x84, (ulong)sizeof(kvm_sregs)));
        Assert.Equal(KVM_SET_CPUID2, Encode(IocWrite, 0x90, (ulong)sizeof(kvm_cpuid2)));
        Assert.Equal(KVM_GET_MSRS, Encode(IocRead | IocWrite, 0x88, (ulong)sizeof(kvm_msrs)));
        Assert.Equal(KVM_SET_MSRS, Encode(IocWrite, 0x89, (ulong)sizeof(kvm_msrs)));
        Assert.Equal(KVM_GET_XSAVE, Encode(IocRead, 0xA4, (ulong)sizeof(kvm_xsave)));
        Assert.Equal(KVM_SET_XSAVE, Encode(IocWrite, 0xA5, (ulong)sizeof(kvm_xsave)));
        Assert.Equal(KVM_GET_XCRS, Encode(IocRead, 0xA6, (ulong)sizeof(kvm_xcrs)));
        Assert.Equal(KVM_SET_XCRS, Encode(IocWrite, 0xA7, (ulong)sizeof(kvm_xcrs)));
        Assert.Equal(KVM_INTERRUPT, Encode(IocWrite, 0x86, (ulong)sizeof(kvm_interrupt)));
        Assert.Equal(KVM_GET_DEBUGREGS, Encode(IocRead, 0xA1, (ulong)sizeof(kvm_debugregs)));
        Assert.Equal(KVM_SET_DEBUGREGS, Encode(IocWrite, 0xA2, (ulong)sizeof(kvm_debugregs)));
        Assert.Equal(KVM_SET_GUEST_DEBUG, Encode(IocWrite, 0x9B, (ulong)sizeof(kvm_guest_debug)));
        Assert.Equal(0x4138_AE84UL, KVM_SET_SREGS);
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

    [Fact]
    public void Capabilities_and_exit_reasons_match_kvm_h()
    {
        Assert.Equal(12, ApiVersion);
        Assert.Equal(3, KVM_CAP_USER_MEMORY);
        Assert.Equal(4, KVM_CAP_SET_TSS_ADDR);
        Assert.Equal(7, KVM_CAP_EXT_CPUID);
        Assert.Equal(74, KVM_CAP_SYNC_REGS);
        Assert.Equal(136, KVM_CAP_IMMEDIATE_EXIT);
        Assert.Equal(2u, KVM_EXIT_IO);
        Assert.Equal(5u, KVM_EXIT_HLT);
        Assert.Equal(6u, KVM_EXIT_MMIO);
        Assert.Equal(8u, KVM_EXIT_SHUTDOWN);
        Assert.Equal(9u, KVM_EXIT_FAIL_ENTRY);
        Assert.Equal(10u, KVM_EXIT_INTR);
        Assert.Equal(17u, KVM_EXIT_INTERNAL_ERROR);
        Assert.Equal(7u, KVM_EXIT_IRQ_WINDOW_OPEN);
        Assert.Equal(4u, KVM_EXIT_DEBUG);
        Assert.Equal(0x20, Off<kvm_run>(nameof(kvm_run.debug_exception)));
        Assert.Equal(0x28, Off<kvm_run>(nameof(kvm_run.debug_pc)));
        Assert.Equal(0x30, Off<kvm_run>(nameof(kvm_run.debug_dr6)));
        Assert.Equal(1, KVM_EXIT_IO_OUT);
        Assert.Equal(1UL, KVM_SYNC_X86_REGS);
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
