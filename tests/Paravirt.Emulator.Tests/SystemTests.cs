using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The emulator's system side against the architecture, one behaviour at a time: paging (remapping with INVLPG,
/// 1 GiB pages, accessed/dirty bits), FS/GS bases, SWAPGS, RDTSCP, CR0.TS, CR4 and MSR checks, user mode from a
/// loaded state, interrupts held while IF=0. CPUID, one table for the whole machine, is checked by IsaBehaviourTests;
/// the floating-point units under paging and CR0/CR4 by FpSystemTests. The kernel-style guest (KernelGuestTests)
/// covers exception delivery end to end.
/// </summary>
public sealed class SystemTests
{
    private const ulong P = 1, RW = 2, A = 0x20, D = 0x40, PS = 0x80;

    [Fact]
    public void Remapping_a_code_page_and_invlpg_runs_the_code_of_the_new_frame_and_sets_accessed_and_dirty_bits()
    {
        const ulong pt = 0x30_0000, frame1 = 0x30_1000, frame2 = 0x30_2000, virt = 0x40_0000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rax, (long)(pt | P | RW));
            a.mov(rbx, (long)(GuestLayout.FirstPd + (2 * 8)));
            a.mov(__qword_ptr[rbx], rax);           // 4-6 MiB: a page table instead of a 2 MiB page
            a.mov(rax, cr3);
            a.mov(cr3, rax);
            a.mov(rbx, (long)virt);
            a.call(rbx);
            a.mov(r12d, eax);
            a.mov(rax, (long)(frame2 | P | RW));
            a.mov(__qword_ptr[(long)pt], rax);      // the same linear page, another frame
            a.invlpg(__[rbx]);
            a.call(rbx);
            a.mov(r13d, eax);
            a.mov(__byte_ptr[rbx + 0x800], 7);      // a data write to the page: dirty
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code, memorySize: 8UL << 20);
        guest.Memory.WriteUInt64(new GuestAddress(pt), frame1 | P | RW);
        guest.Memory.Write(new GuestAddress(frame1), new byte[] { 0xB8, 1, 0, 0, 0, 0xC3 });
        guest.Memory.Write(new GuestAddress(frame2), new byte[] { 0xB8, 2, 0, 0, 0, 0xC3 });
        VcpuExit exit = guest.Vcpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} {exit.Detail}");
        VcpuRegisters r = guest.Vcpu.GetRegisters();
        Assert.Equal((1UL, 2UL), (r.R12, r.R13));
        ulong pte = guest.Memory.Read<ulong>(new GuestAddress(pt));
        Assert.Equal(frame2 | P | RW | A | D, pte);
        Assert.Equal(7, guest.Memory.GetSpan(new GuestAddress(frame2 + 0x800), 1)[0]);
        Assert.NotEqual(0UL, guest.Memory.Read<ulong>(new GuestAddress(GuestLayout.FirstPd + 16)) & A);
    }

    [Fact]
    public void A_1GiB_page_translates_and_takes_its_accessed_and_dirty_bits()
    {
        const ulong pdpt = 0x30_0000, virt = 0x80_0000_0000; // PML4 slot 1
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rax, (long)(pdpt | P | RW));
            a.mov(__qword_ptr[(long)(GuestLayout.Pml4 + 8)], rax);
            a.mov(rbx, (long)virt);
            a.mov(rcx, __qword_ptr[rbx + (int)EmuHarness.CodeAddress]); // this code, through the 1 GiB page
            a.mov(__qword_ptr[rbx + 0x20_0000], rcx);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code, memorySize: 4UL << 20);
        guest.Memory.WriteUInt64(new GuestAddress(pdpt), 0 | P | RW | PS);
        Assert.Equal(VcpuExitKind.Halt, guest.Vcpu.Run().Kind);
        Assert.Equal(BitConverter.ToUInt64(code), guest.Vcpu.GetRegisters().Rcx);
        Assert.Equal(BitConverter.ToUInt64(code), guest.Memory.Read<ulong>(new GuestAddress(0x20_0000)));
        Assert.Equal(P | RW | PS | A | D, guest.Memory.Read<ulong>(new GuestAddress(pdpt)));
    }

    [Fact]
    public void Reserved_bits_in_a_paging_entry_raise_a_page_fault_with_rsvd()
    {
        const ulong pdpt = 0x30_0000, virt = 0x80_0000_0000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rax, (long)(pdpt | P | RW));
            a.mov(__qword_ptr[(long)(GuestLayout.Pml4 + 8)], rax);
            a.mov(rbx, (long)virt);
            a.mov(rcx, __qword_ptr[rbx]);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code, memorySize: 4UL << 20);
        guest.Memory.WriteUInt64(new GuestAddress(pdpt), (1UL << 45) | P | RW | PS); // above MAXPHYADDR (40)
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Equal("page fault: read of 8 bytes at 0x8000000000 (a reserved bit is set in a paging-structure entry)", exit.Detail);
    }

    [Fact]
    public void FsGsBase_Swapgs_and_Rdtscp_work_as_enabled()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            EmuHarness.SetCr4Bit(a, 16);                          // CR4.FSGSBASE
            a.mov(rax, 0x20_0000);
            a.wrfsbase(rax);
            a.mov(__qword_ptr[(long)0x20_0010], 0x1234);
            a.mov(rbx, __qword_ptr.fs[0x10]);                // FS override: base + 0x10
            a.mov(ecx, 0xC000_0102);                          // KERNEL_GS_BASE
            a.mov(eax, 0x20_0100);
            a.xor(edx, edx);
            a.wrmsr();
            a.swapgs();
            a.rdgsbase(r8);
            a.mov(ecx, 0xC000_0101);                          // GS_BASE reads the same
            a.rdmsr();
            a.mov(r9d, eax);
            a.mov(ecx, 0xC000_0103);                          // TSC_AUX
            a.mov(eax, 77);
            a.xor(edx, edx);
            a.wrmsr();
            a.rdtscp();
            a.mov(r10d, ecx);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code, memorySize: 4UL << 20);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} {exit.Detail}");
        VcpuRegisters r = guest.Vcpu.GetRegisters();
        Assert.Equal((0x1234UL, 0x20_0100UL, 0x20_0100UL, 77UL), (r.Rbx, r.R8, r.R9, r.R10));
        VcpuState state = guest.Vcpu.GetState();
        Assert.Equal((0x20_0000UL, 0x20_0100UL, 0UL, 77UL), (state.Fs.Base, state.Gs.Base, state.KernelGsBase, state.TscAux));
    }

    [Fact]
    public void A_string_op_reading_through_an_FS_override_is_an_emulator_gap_not_a_silent_read_of_DS()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(edi, 0x20_0000 - 0x100);
            a.db(0x64, 0xAA);                                 // fs stosb: ES:rDI cannot be overridden, the prefix is ignored
            a.mov(esi, 0x10);
            a.db(0x64, 0x48, 0xAD);                           // fs lodsq: reads FS:rSI
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Unimplemented, exit.Kind);
        Assert.Contains("lodsq", exit.Detail, StringComparison.Ordinal);
        Assert.Equal(0x20_0000UL - 0xFF, guest.Vcpu.GetRegisters().Rdi); // the stosb ran
    }

    [Fact]
    public void Rdfsbase_without_CR4_FSGSBASE_is_invalid()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.rdfsbase(rax);
            a.hlt();
        });
        Assert.StartsWith("invalid opcode (#UD)", EmuHarness.RunToFault(code), StringComparison.Ordinal);
    }

    [Fact]
    public void Sse_with_CR0_TS_set_raises_device_not_available_and_clts_allows_it_again()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.clts();
            a.pxor(xmm0, xmm0);                               // allowed
            a.mov(rax, cr0);
            a.or(rax, 8);                                     // CR0.TS
            a.mov(cr0, rax);
            a.pxor(xmm1, xmm1);
            a.hlt();
        });
        Assert.Equal("device not available (#NM): SSE instruction with CR0.TS set", EmuHarness.RunToFault(code));
    }

    [Fact]
    public void A_translated_SSE_block_run_after_CR0_TS_is_set_raises_device_not_available_not_an_internal_error()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label loop = a.CreateLabel(), block = a.CreateLabel();
            a.mov(ecx, 100);
            a.Label(ref loop);
            a.call(block);                                    // translated after 32 runs (the tests' threshold)
            a.dec(ecx);
            a.jnz(loop);
            a.mov(rax, cr0);
            a.or(rax, 8);                                     // CR0.TS
            a.mov(cr0, rax);
            a.call(block);
            a.hlt();
            a.Label(ref block);
            a.pxor(xmm0, xmm1);
            a.paddd(xmm2, xmm0);
            a.ret();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Equal("device not available (#NM): SSE instruction with CR0.TS set", exit.Detail);
        Assert.True(BlockCompiler.Enabled == (((EmulatorVcpu)guest.Vcpu).BlocksCompiled > 0));
    }

    [Theory]
    [InlineData(17, "CR4 value")]        // PCIDE: not implemented, not advertised
    [InlineData(20, "CR4 value")]        // SMEP
    public void Cr4_bits_the_emulator_does_not_implement_raise_GP(int bit, string expected)
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            EmuHarness.SetCr4Bit(a, (byte)bit);
            a.hlt();
        });
        Assert.StartsWith($"general protection fault (#GP): {expected}", EmuHarness.RunToFault(code), StringComparison.Ordinal);
    }

    [Fact]
    public void An_unimplemented_MSR_raises_GP()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(ecx, 0x1B); // IA32_APIC_BASE: no APIC
            a.rdmsr();
            a.hlt();
        });
        Assert.Equal("general protection fault (#GP): rdmsr of MSR 0x1b, which the emulator does not implement", EmuHarness.RunToFault(code));
    }

    [Fact]
    public void A_loaded_user_mode_state_runs_at_CPL3_and_cannot_fetch_supervisor_pages()
    {
        byte[] code = EmuHarness.Assemble(a => a.hlt());
        using EmuGuest guest = EmuHarness.Create(code);
        VcpuState state = guest.Vcpu.GetState();
        state.Cs = new SegmentRegister(0x23, 0, 0xFFFF_FFFF, SegmentRegister.MakeAttributes(11, true, 3, true, @long: true, granularity: true));
        state.Ss = new SegmentRegister(0x1B, 0, 0xFFFF_FFFF, SegmentRegister.MakeAttributes(3, true, 3, true, defaultBig: true, granularity: true));
        guest.Vcpu.SetState(state);
        Assert.Equal(3, guest.Vcpu.GetState().Cs.Dpl);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Equal($"page fault: instruction fetch at 0x{EmuHarness.CodeAddress:x} (user-mode access to a supervisor page)", exit.Detail);
    }

    [Fact]
    public void A_state_outside_64_bit_long_mode_is_refused()
    {
        using EmuGuest guest = EmuHarness.Create(EmuHarness.Assemble(a => a.hlt()));
        VcpuState state = guest.Vcpu.GetState();
        state.Cr0 &= ~(1UL << 31);
        Assert.Throws<ArgumentException>(() => guest.Vcpu.SetState(state));
    }

    [Fact]
    public void A_requested_interrupt_is_held_while_IF_is_clear_and_taken_after_sti()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label idtr = a.CreateLabel(), handler = a.CreateLabel(), spin = a.CreateLabel();
            a.lidt(__[idtr]);
            a.mov(ecx, 10_000);
            a.Label(ref spin);                                // IF=0: nothing is delivered
            a.dec(ecx);
            a.jnz(spin);
            a.mov(rdx, rbx);
            a.sti();
            a.nop();                                          // the STI shadow: this runs first
            a.mov(rsi, rbx);
            a.hlt();
            a.Label(ref handler);
            a.inc(rbx);
            a.mov(rdi, __qword_ptr[rsp]);                     // the interrupted rip
            a.iretq();
            EmuHarness.Idtr(a, ref idtr);
        });
        using EmuGuest guest = EmuHarness.Create(code);
        EmuHarness.WriteInterruptGate(guest.Memory, 0x40, EmuHarness.AddressOf(code, [0x48, 0xFF, 0xC3])); // inc rbx
        guest.Vcpu.RequestInterrupt(0x40);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} {exit.Detail}");
        VcpuRegisters r = guest.Vcpu.GetRegisters();
        Assert.Equal((0UL, 1UL), (r.Rdx, r.Rsi));                    // not before STI, once after it
        Assert.Equal(EmuHarness.AddressOf(code, [0x48, 0x89, 0xDE]), r.Rdi);   // mov rsi, rbx: after the nop in the shadow
        Assert.Equal(0x200UL, r.Rflags & 0x200);
        Assert.Throws<ArgumentOutOfRangeException>(() => guest.Vcpu.RequestInterrupt(31));
    }
}
