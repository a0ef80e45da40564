using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The ISA extensions (x87, SSE floating point, SSE4.2 strings, cmpxchg16b, maskmovdqu) under the system side: their
/// memory operands go through the page tables (#PF with CR2 and the error code, FS/GS overrides), a faulting one
/// changes nothing, CR0.TS/EM and CR4.OSFXSR/OSXMMEXCPT decide #NM/#UD, #XM and #MF reach the guest's IDT, and the
/// whole state (FXSAVE region, system registers, MSRs, DR6/DR7) survives GetState/SetState.
/// </summary>
public sealed class FpSystemTests
{
    private const ulong P = 1, RW = 2;
    /// <summary>A page table for 4-6 MiB: 0x400000 maps to <see cref="Frame"/>, 0x401000 is not present.</summary>
    private const ulong Pt = 0x30_0000, Frame = 0x30_1000, Mapped = 0x40_0000, Hole = 0x40_1000;
    private const ulong Idt = 0x8000, Handlers = 0x10_8000, Scratch = 0x1F_0000;
    private const byte Fill = 0xCC;

    /// <summary>
    /// A guest with the page hole at <see cref="Hole"/>, the last page before it filled with <see cref="Fill"/>, and
    /// (when <paramref name="idt"/>) an IDT whose handler for vector v records v in r11, the faulting rip in r12, the
    /// error code (or -1) in r13, the pushed RFLAGS in r10, CR2 in r14, and halts.
    /// </summary>
    private static EmuGuest Create(Action<Assembler> build, bool idt = true)
    {
        EmuGuest guest = EmuHarness.Create(EmuHarness.Assemble(build), budget: 1_000_000, memorySize: 8UL << 20);
        GuestMemory memory = guest.Memory;
        memory.WriteUInt64(new GuestAddress(GuestLayout.FirstPd + (2 * 8)), Pt | P | RW);
        memory.WriteUInt64(new GuestAddress(Pt), Frame | P | RW);
        memory.GetSpan(new GuestAddress(Frame), 0x1000).Fill(Fill);
        if (idt)
        {
            for (int v = 0; v < 32; v++)
            {
                bool errorCode = v is 8 or 10 or 11 or 12 or 13 or 14 or 17;
                ulong stub = Handlers + (ulong)(v * 64);
                int vector = v;
                memory.Write(new GuestAddress(stub), EmuHarness.Assemble(a =>
                {
                    a.mov(r11d, vector);
                    a.mov(r12, __qword_ptr[rsp + (errorCode ? 8 : 0)]);
                    if (errorCode)
                    {
                        a.mov(r13, __qword_ptr[rsp]);
                    }
                    else
                    {
                        a.mov(r13, -1);
                    }
                    a.mov(r10, __qword_ptr[rsp + (errorCode ? 24 : 16)]);
                    a.mov(r14, cr2);
                    a.hlt();
                }, stub));
                EmuHarness.WriteInterruptGate(memory, v, stub, Idt);
            }
            VcpuState state = guest.Vcpu.GetState();
            state.Idtr = new DescriptorTableRegister(Idt, 32 * 16 - 1);
            guest.Vcpu.SetState(state);
        }
        return guest;
    }

    private static VcpuExit RunToHalt(IVcpu vcpu)
    {
        VcpuExit exit = vcpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
        return exit;
    }

    /// <summary>Each case: a preamble (ends at a hlt), then one instruction whose memory operand reaches the hole.</summary>
    public static TheoryData<string, bool> FaultingFpAccesses => new()
    {
        { "fld m80", false }, { "fstp m80", true }, { "fistp m64", true }, { "fst m32", true }, { "fadd m64", false },
        { "fnsave", true }, { "fnstenv", true }, { "frstor", false }, { "fldenv", false },
        { "fxsave", true }, { "fxrstor", false }, { "ldmxcsr", false }, { "addsd m64", false },
        { "movups store", true }, { "maskmovdqu", true }, { "pcmpistri m128", false }, { "cmpxchg16b", true },
    };

    [Theory]
    [MemberData(nameof(FaultingFpAccesses))]
    public void A_floating_point_access_to_an_unmapped_page_is_a_page_fault_that_changes_nothing(string which, bool write)
    {
        using EmuGuest guest = Create(a =>
        {
            // Known state: a non-default control word and MXCSR, two x87 values, XMM values, rax/rcx/rdx, flags.
            a.mov(__dword_ptr[(long)Scratch], 0x027F);
            a.fldcw(__word_ptr[(long)Scratch]);
            a.mov(__dword_ptr[(long)Scratch], 0x7F80);
            a.ldmxcsr(__dword_ptr[(long)Scratch]);
            a.fld1();
            a.fldpi();                                    // ST0 = pi: a store to m32/m64/integer is inexact (PE, C1)
            a.mov(rax, 0x4000_0000_0000_0000);
            a.movq(xmm0, rax);
            a.pcmpeqb(xmm1, xmm1);
            a.mov(ecx, 0x1234);
            a.mov(edx, 0x5678);
            a.mov(rdi, (long)(Hole - 8));
            a.stc();
            a.hlt();
            switch (which)
            {
                case "fld m80": a.fld(__tword_ptr[(long)(Hole - 6)]); break;
                case "fstp m80": a.fstp(__tword_ptr[(long)(Hole - 6)]); break;
                case "fistp m64": a.fistp(__qword_ptr[(long)(Hole - 4)]); break;
                case "fst m32": a.fst(__dword_ptr[(long)(Hole - 2)]); break;
                case "fadd m64": a.fadd(__qword_ptr[(long)(Hole - 4)]); break;
                case "fnsave": a.fnsave(__[(long)(Hole - 0x40)]); break;        // 108 bytes
                case "fnstenv": a.fnstenv(__[(long)(Hole - 0x10)]); break;      // 28 bytes
                case "frstor": a.frstor(__[(long)(Hole - 0x40)]); break;
                case "fldenv": a.fldenv(__[(long)(Hole - 0x10)]); break;
                case "fxsave": a.fxsave64(__[(long)(Hole - 0x100)]); break;     // 512 bytes, 16-byte aligned
                case "fxrstor": a.fxrstor64(__[(long)(Hole - 0x100)]); break;
                case "ldmxcsr": a.ldmxcsr(__dword_ptr[(long)Hole]); break;
                case "addsd m64": a.addsd(xmm0, __qword_ptr[(long)(Hole - 4)]); break;
                case "movups store": a.movups(__xmmword_ptr[(long)(Hole - 8)], xmm0); break;
                case "maskmovdqu": a.maskmovdqu(xmm0, xmm1); break;                 // [rdi] = Hole - 8, all 16 bytes selected
                case "pcmpistri m128": a.pcmpistri(xmm0, __xmmword_ptr[(long)(Hole - 8)], 0); break;
                default: a.cmpxchg16b(__xmmword_ptr[(long)Hole]); break;
            }
            a.hlt();
        });
        IVcpu vcpu = guest.Vcpu;
        VcpuExit first = RunToHalt(vcpu);
        VcpuState before = vcpu.GetState();
        RunToHalt(vcpu); // in the #PF handler
        VcpuState after = vcpu.GetState();
        VcpuRegisters r = after.Registers;
        Assert.Equal(14UL, r.R11);                                   // #PF
        Assert.Equal(first.Rip, r.R12);                              // at the faulting instruction
        Assert.Equal(write ? 2UL : 0UL, r.R13);                      // not present, W for writes, supervisor
        Assert.Equal(Hole, r.R14);                                   // CR2: the first byte of the page that faulted
        Assert.Equal(before.Registers.Rflags, r.R10);                // flags as before the instruction
        Assert.Equal((before.Registers.Rax, before.Registers.Rcx, before.Registers.Rdx, before.Registers.Rdi),
            (r.Rax, r.Rcx, r.Rdx, r.Rdi));
        // x87 (control, status, tags, registers), MXCSR and every XMM register: bytes 0-415 of the FXSAVE region.
        Assert.Equal(before.ExtendedState.AsSpan(0, 416).ToArray(), after.ExtendedState.AsSpan(0, 416).ToArray());
        // Not one byte of the mapped page was written.
        Assert.True(guest.Memory.GetSpan(new GuestAddress(Frame), 0x1000).IndexOfAnyExcept(Fill) < 0, "a byte before the hole was written");
    }

    [Fact]
    public void Without_an_IDT_an_x87_access_past_guest_memory_is_a_page_fault_exit_and_the_stack_is_unchanged()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.fld1();
            a.fstp(__tword_ptr[0x1F_FFFA]); // the last 6 bytes of the 2 MiB guest, then nothing
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Equal("page fault: write of 10 bytes at 0x1ffffa outside guest memory", exit.Detail);
        VcpuState state = guest.Vcpu.GetState();
        Assert.Equal(7, (state.FpuStatusWord >> 11) & 7);           // TOP: fld1 pushed, fstp did not pop
        Assert.Equal(0x80, state.ExtendedState[4]);                  // abridged tags: physical register 7 in use
    }

    /// <summary>Each case: CR0 bits set and cleared (the start state has MP set), CR4 bits cleared, the instruction, and the vector it raises (-1: it runs).</summary>
    public static TheoryData<string, ulong, ulong, ulong, int> AvailabilityCases => new()
    {
        { "fld1", 8, 0, 0, 7 },                 // x87: TS -> #NM
        { "fld1", 4, 0, 0, 7 },                 // x87: EM -> #NM
        { "fxsave", 4, 0, 0, 7 },               // FXSAVE: EM -> #NM
        { "fxsave", 8, 0, 0, 7 },
        { "addsd", 8, 0, 0, 7 },                // SSE: TS -> #NM
        { "addsd", 4, 0, 0, 6 },                // SSE: EM -> #UD
        { "addsd", 0, 0, 1UL << 9, 6 },         // SSE: OSFXSR clear -> #UD
        { "ldmxcsr", 4, 0, 0, 6 },
        { "pcmpistri", 8, 0, 0, 7 },
        { "fwait", 8, 2, 0, -1 },               // WAIT: #NM only with TS and MP
        { "fwait", 8, 0, 0, 7 },
        { "fwait", 4, 0, 0, -1 },               // ... EM alone does not stop it
        { "crc32", 8 | 4, 0, 1UL << 9, -1 },    // general-purpose: no FPU state
        { "movbe", 8 | 4, 0, 0, -1 },
    };

    [Theory]
    [MemberData(nameof(AvailabilityCases))]
    public void CR0_TS_and_EM_and_CR4_OSFXSR_decide_NM_or_UD_for_each_fp_instruction(string which, ulong cr0Set, ulong cr0Clear, ulong cr4Clear, int vector)
    {
        using EmuGuest guest = Create(a =>
        {
            a.mov(rax, cr0);
            a.mov(rbx, (long)cr0Set);
            a.or(rax, rbx);
            a.mov(rbx, (long)~cr0Clear);
            a.and(rax, rbx);
            a.mov(cr0, rax);
            a.mov(rax, cr4);
            a.mov(rbx, (long)~cr4Clear);
            a.and(rax, rbx);
            a.mov(cr4, rax);
            a.mov(r11, -1);
            switch (which)
            {
                case "fld1": a.fld1(); break;
                case "fxsave": a.fxsave64(__[(long)Scratch]); break;
                case "addsd": a.addsd(xmm0, xmm1); break;
                case "ldmxcsr": a.ldmxcsr(__dword_ptr[(long)Scratch]); break;
                case "pcmpistri": a.pcmpistri(xmm0, xmm1, 0); break;
                case "fwait": a.wait(); break;
                case "crc32": a.crc32(eax, ecx); break;
                default: a.movbe(eax, __dword_ptr[(long)Scratch]); break;
            }
            a.hlt();
        });
        guest.Memory.Write(new GuestAddress(Scratch), BitConverter.GetBytes(0x1F80u));
        RunToHalt(guest.Vcpu);
        Assert.Equal(unchecked((ulong)vector), guest.Vcpu.GetRegisters().R11);
    }

    [Fact]
    public void A_translated_block_with_x87_and_sse_floating_point_raises_NM_once_CR0_TS_is_set()
    {
        using EmuGuest guest = Create(a =>
        {
            Label loop = a.CreateLabel(), block = a.CreateLabel();
            a.mov(ecx, 100);
            a.Label(ref loop);
            a.call(block);                                    // hot: translated after 32 runs where the JIT is on
            a.dec(ecx);
            a.jnz(loop);
            a.mov(rax, cr0);
            a.or(rax, 8);                                     // CR0.TS (a kernel switching tasks lazily)
            a.mov(cr0, rax);
            a.mov(r11, -1);
            a.call(block);
            a.hlt();
            a.Label(ref block);
            a.mov(rax, rcx);
            a.mov(rdx, rcx);
            a.add(rdx, 1);
            a.cvtsi2sd(xmm0, rax);
            a.mulsd(xmm0, xmm0);
            a.fld1();
            a.fstp(st0);
            a.ret();
        });
        RunToHalt(guest.Vcpu);
        VcpuRegisters r = guest.Vcpu.GetRegisters();
        Assert.Equal(7UL, r.R11); // #NM at the cvtsi2sd, delivered to the guest
    }

    [Fact]
    public void Unmasked_sse_exceptions_are_XM_through_the_IDT_and_UD_with_CR4_OSXMMEXCPT_clear()
    {
        foreach (bool osxmmexcpt in new[] { true, false })
        {
            using EmuGuest guest = Create(a =>
            {
                if (!osxmmexcpt)
                {
                    a.mov(rax, cr4);
                    a.btr(rax, 10);
                    a.mov(cr4, rax);
                }
                a.mov(__dword_ptr[(long)Scratch], 0x1F80 & ~0x200);  // unmask divide-by-zero
                a.ldmxcsr(__dword_ptr[(long)Scratch]);
                a.mov(rax, 0x3FF0_0000_0000_0000);                    // 1.0
                a.movq(xmm0, rax);
                a.xorpd(xmm1, xmm1);
                a.hlt();
                a.divsd(xmm0, xmm1);
                a.hlt();
            });
            VcpuExit first = RunToHalt(guest.Vcpu);
            RunToHalt(guest.Vcpu);
            VcpuState state = guest.Vcpu.GetState();
            Assert.Equal(osxmmexcpt ? 19UL : 6UL, state.Registers.R11);
            Assert.Equal(first.Rip, state.Registers.R12);                                     // a fault: at the divsd
            Assert.Equal(0x3FF0_0000_0000_0000UL, BitConverter.ToUInt64(state.Xmm(0)));        // destination not written
            Assert.Equal(0x1F80u & ~0x200u | 0x4u, state.Mxcsr);                              // ZE recorded either way
        }
    }

    [Fact]
    public void A_pending_x87_exception_is_MF_through_the_IDT_at_the_next_waiting_instruction()
    {
        using EmuGuest guest = Create(a =>
        {
            a.mov(__dword_ptr[(long)Scratch], 0x037B);    // unmask divide-by-zero
            a.fldcw(__word_ptr[(long)Scratch]);
            a.fld1();
            a.fldz();
            a.fdivp(st1, st0);                            // pending: no fault here
            a.mov(r9d, 1);
            a.hlt();
            a.wait();                                    // #MF
            a.hlt();
        });
        VcpuExit first = RunToHalt(guest.Vcpu);
        Assert.Equal(1UL, guest.Vcpu.GetRegisters().R9);
        RunToHalt(guest.Vcpu);
        VcpuState state = guest.Vcpu.GetState();
        Assert.Equal(16UL, state.Registers.R11);
        Assert.Equal(first.Rip, state.Registers.R12);
        Assert.NotEqual(0, state.FpuStatusWord & 0x4);    // ZE still pending for the handler to see
    }

    [Fact]
    public void Fp_memory_operands_and_maskmovdqu_honour_FS_and_GS_overrides()
    {
        const ulong fsBase = 0x1E_0000, gsBase = 0x1D_0000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(ecx, 0xC000_0100);                              // FS_BASE
            a.mov(eax, (int)fsBase);
            a.xor(edx, edx);
            a.wrmsr();
            a.mov(ecx, 0xC000_0101);                              // GS_BASE
            a.mov(eax, (int)gsBase);
            a.wrmsr();
            a.movsd(xmm0, __qword_ptr.fs[0x10]);                  // 2.0 from fs:0x10
            a.fld(__qword_ptr.fs[0x10]);
            a.fadd(st0, st0);
            a.fstp(__tword_ptr.gs[0x20]);                         // 4.0 as m80 at gs:0x20
            a.pcmpeqb(xmm1, xmm1);
            a.mov(edi, 0x40);
            a.db(0x64, 0x66, 0x0F, 0xF7, 0xC1);                   // fs maskmovdqu xmm0, xmm1: fs:[rdi]
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        guest.Memory.WriteUInt64(new GuestAddress(fsBase + 0x10), BitConverter.DoubleToUInt64Bits(2.0));
        RunToHalt(guest.Vcpu);
        var vcpu = (EmulatorVcpu)guest.Vcpu;
        Assert.Equal(2.0, System.Runtime.Intrinsics.Vector128.GetElement(System.Runtime.Intrinsics.Vector128.AsDouble(vcpu.GetXmm(0)), 0));
        Assert.Equal(0x8000_0000_0000_0000UL, guest.Memory.Read<ulong>(new GuestAddress(gsBase + 0x20)));   // 4.0: 1.0 * 2^2
        Assert.Equal((ushort)0x4001, guest.Memory.Read<ushort>(new GuestAddress(gsBase + 0x28)));
        Assert.Equal(BitConverter.DoubleToUInt64Bits(2.0), guest.Memory.Read<ulong>(new GuestAddress(fsBase + 0x40)));
        Assert.Equal(0UL, guest.Memory.Read<ulong>(new GuestAddress(0x40)));                                // not at ds:rdi
    }

    [Fact]
    public void GetState_and_SetState_carry_the_fxsave_region_system_registers_msrs_and_debug_registers()
    {
        // Phase 1 leaves state everywhere; phase 2 (after the first hlt) reads it back into registers and memory.
        byte[] code = EmuHarness.Assemble(a =>
        {
            EmuHarness.SetCr4Bit(a, 16);                          // CR4.FSGSBASE
            a.mov(rax, cr0);
            a.or(rax, 2);                                         // CR0.MP
            a.mov(cr0, rax);
            a.mov(rax, 0x1E_0000);
            a.wrfsbase(rax);
            a.mov(rax, 0x1D_0000);
            a.wrgsbase(rax);
            void Wrmsr(uint msr, ulong value)
            {
                a.mov(ecx, msr);
                a.mov(eax, (uint)value);
                a.mov(edx, (uint)(value >> 32));
                a.wrmsr();
            }
            Wrmsr(0xC000_0102, 0xFFFF_8000_0000_1000);            // KERNEL_GS_BASE
            Wrmsr(0xC000_0081, 0x0023_0010_0000_0000);            // STAR
            Wrmsr(0xC000_0082, 0xFFFF_8000_0010_0000);            // LSTAR
            Wrmsr(0xC000_0084, 0x4700);                           // SFMASK
            Wrmsr(0xC000_0103, 42);                               // TSC_AUX
            Wrmsr(0xC000_0080, 0x0D01);                           // EFER: SCE, LME, LMA, NXE
            a.mov(rax, 0x401);                                    // DR7: L0
            a.mov(dr7, rax);
            a.mov(__dword_ptr[(long)Scratch], 0x0C7F);            // x87: round toward zero, 64-bit precision
            a.fldcw(__word_ptr[(long)Scratch]);
            a.fldpi();
            a.fldl2e();
            a.fld1();
            a.fdiv(st0, st2);                                     // 1/pi, inexact: PE set in the status word
            a.mov(__dword_ptr[(long)Scratch], 0x3FC0);            // MXCSR: round down, DAZ
            a.ldmxcsr(__dword_ptr[(long)Scratch]);
            a.mov(rax, 0x0123_4567_89AB_CDEF);
            a.movq(xmm5, rax);
            a.pshufd(xmm15, xmm5, 0x1B);
            a.hlt();
            // phase 2
            a.fstp(__tword_ptr[(long)Scratch + 0x100]);
            a.fstp(__tword_ptr[(long)Scratch + 0x110]);
            a.fnstsw(ax);
            a.mov(r8d, eax);
            a.fnstcw(__word_ptr[(long)Scratch + 0x120]);
            a.stmxcsr(__dword_ptr[(long)Scratch + 0x124]);
            a.movdqu(__xmmword_ptr[(long)Scratch + 0x130], xmm15);
            a.rdfsbase(r9);
            a.rdgsbase(r10);
            a.rdtscp();
            a.mov(r11d, ecx);
            a.swapgs();
            a.rdgsbase(r12);
            a.mov(r13, dr7);
            a.mov(r14, cr0);
            a.mov(ecx, 0xC000_0080);
            a.rdmsr();
            a.mov(r15d, eax);
            a.hlt();
        });
        using EmuGuest original = EmuHarness.Create(code);
        using EmuGuest restored = EmuHarness.Create(code);
        RunToHalt(original.Vcpu);
        VcpuState saved = original.Vcpu.GetState();
        restored.Vcpu.SetState(saved.Clone());
        VcpuState reloaded = restored.Vcpu.GetState();

        // Every field the state holds comes back as it was.
        foreach (System.Reflection.PropertyInfo property in typeof(VcpuState).GetProperties())
        {
            if (property.PropertyType == typeof(byte[]))
            {
                Assert.Equal((byte[])property.GetValue(saved)!, (byte[])property.GetValue(reloaded)!);
            }
            else if (property.GetIndexParameters().Length == 0)
            {
                Assert.True(Equals(property.GetValue(saved), property.GetValue(reloaded)), $"{property.Name}: {property.GetValue(saved)} != {property.GetValue(reloaded)}");
            }
        }
        Assert.Equal(0x3UL, BitConverter.ToUInt64(saved.ExtendedState, 512));                 // XSTATE_BV = x87 | SSE
        Assert.Equal(0x3FC0u, saved.Mxcsr);
        Assert.Equal((ushort)0x0C7F, saved.FpuControlWord);
        Assert.Equal((0x401UL, 42UL, 0xFFFF_8000_0000_1000UL), (saved.Dr7, saved.TscAux, saved.KernelGsBase));

        // Both vCPUs then run phase 2 the same way.
        RunToHalt(original.Vcpu);
        RunToHalt(restored.Vcpu);
        VcpuRegisters a0 = original.Vcpu.GetRegisters(), a1 = restored.Vcpu.GetRegisters();
        Assert.Equal(a0, a1);
        Assert.Equal(original.Memory.GetSpan(new GuestAddress(Scratch + 0x100), 0x40).ToArray(),
            restored.Memory.GetSpan(new GuestAddress(Scratch + 0x100), 0x40).ToArray());
        Assert.Equal((0x1E_0000UL, 0x1D_0000UL, 42UL, 0xFFFF_8000_0000_1000UL, 0x401UL), (a1.R9, a1.R10, a1.R11, a1.R12, a1.R13));
        Assert.Equal(0xD01UL, a1.R15);
        Assert.Equal(0x3FC0u, restored.Memory.Read<uint>(new GuestAddress(Scratch + 0x124)));
        // pshufd 0x1B reversed the dwords of 0x0123456789ABCDEF:0
        Assert.Equal((0UL, 0x89AB_CDEF_0123_4567UL), (restored.Memory.Read<ulong>(new GuestAddress(Scratch + 0x130)),
            restored.Memory.Read<ulong>(new GuestAddress(Scratch + 0x138))));
    }

    [Fact]
    public void SetState_refuses_a_reserved_MXCSR_bit_before_changing_anything()
    {
        using EmuGuest guest = EmuHarness.Create(EmuHarness.Assemble(a => a.hlt()));
        VcpuState good = guest.Vcpu.GetState();
        VcpuState bad = good.Clone();
        bad.Mxcsr = 0x1_0000;                       // above MXCSR_MASK
        bad.Registers = bad.Registers with { Rax = 99 };
        bad.Cr2 = 0x1234;
        Assert.Throws<ArgumentException>(() => guest.Vcpu.SetState(bad));
        VcpuState now = guest.Vcpu.GetState();
        Assert.Equal((good.Registers.Rax, good.Cr2, good.Mxcsr), (now.Registers.Rax, now.Cr2, now.Mxcsr));
    }
}
