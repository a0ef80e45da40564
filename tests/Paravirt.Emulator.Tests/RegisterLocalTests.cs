using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Guest registers live in IL locals inside a translated block (BlockCompiler.Registers.cs) and reach the vCPU's
/// register file only at exits, bail-outs and helpers. Each test writes registers in translated code and then lets
/// something else look at them - a fault (the exit's state, or the guest's own #PF handler), an op handed to the
/// interpreter, a vector helper (with implicit register operands too), the next block of a chain, the budget - and
/// compares with the interpreter (proven against the real CPU by the differential tests) and with values computed here.
/// </summary>
public sealed class RegisterLocalTests
{
    private const ulong Unmapped = 0x4000_0000; // above the 2 MiB guest: not present in the identity tables

    private static (byte[] Code, Func<Label, ulong> Address) Assemble(Action<Assembler> build)
    {
        var asm = new Assembler(64);
        build(asm);
        using var ms = new MemoryStream();
        AssemblerResult result = asm.Assemble(new StreamCodeWriter(ms), EmuHarness.CodeAddress, BlockEncoderOptions.ReturnNewInstructionOffsets);
        return (ms.ToArray(), label => result.GetLabelRIP(label));
    }

    private sealed record Outcome(VcpuExit Exit, VcpuRegisters Regs, ulong Count, byte[] Data, long TranslatedRuns, long Links);

    /// <summary>Runs <paramref name="code"/> interpreted only (threshold 0) or translated after one run.</summary>
    private static Outcome Run(byte[] code, int threshold, ulong? budget = null, Action<EmuGuest>? setup = null)
    {
        // A budget far above what the programs need: a lost register write (a loop counter) fails instead of hanging.
        using EmuGuest guest = EmuHarness.Create(code, budget: budget ?? 2_000_000);
        var cpu = (EmulatorVcpu)guest.Vcpu;
        cpu.JitThreshold = threshold;
        setup?.Invoke(guest);
        VcpuExit exit = cpu.Run();
        return new(exit, cpu.GetRegisters(), cpu.Retired, guest.Memory.GetSpan(new GuestAddress(0x18_0000), 0x100).ToArray(),
            cpu.TranslatedBlocksCompleted, cpu.LinksMade);
    }

    /// <summary>The translated run must equal the interpreted one in everything the guest or the host can see, and must really have run translated code.</summary>
    private static Outcome Both(byte[] code, ulong? budget = null, Action<EmuGuest>? setup = null)
    {
        Outcome interpreted = Run(code, 0, budget, setup);
        Outcome translated = Run(code, 1, budget, setup);
        Assert.Equal(0, interpreted.TranslatedRuns);
        Assert.True(translated.TranslatedRuns > 0, "no block completed in translated code");
        Assert.Equal(interpreted.Exit.Kind, translated.Exit.Kind);
        Assert.Equal(interpreted.Exit.Rip, translated.Exit.Rip);
        Assert.Equal(interpreted.Exit.Detail, translated.Exit.Detail);
        Assert.Equal(interpreted.Regs, translated.Regs);
        Assert.Equal(interpreted.Count, translated.Count);
        Assert.True(interpreted.Data.AsSpan().SequenceEqual(translated.Data), "memory differs");
        return translated;
    }

    /// <summary>The faulting instruction of <see cref="WriteThenFault"/>: a load, a load-op, a store, or a push through a bad rsp.</summary>
    public enum FaultKind { Load, LoadOp, Store, Push }

    /// <summary>
    /// 40 rounds of a loop whose block writes rax, ecx, r8 and r9 (64-bit, 32-bit, a copy, a cmov) before a memory
    /// access, which in the last round (cmove put an unmapped address in rbx, or rsp) faults.
    /// </summary>
    private static (byte[] Code, ulong FaultRip, ulong Handler) WriteThenFault(FaultKind kind, Action<Assembler>? handler = null)
    {
        Label fault = default, h = default;
        var (code, address) = Assemble(a =>
        {
            Label top = a.CreateLabel(), idtr = a.CreateLabel();
            fault = a.CreateLabel();
            h = a.CreateLabel();
            if (handler is not null)
            {
                a.lidt(__[idtr]);
            }
            a.mov(rsp, 0x1F_0000);
            a.mov(rbx, 0x18_0000);
            a.mov(rbp, Unmapped);
            a.xor(eax, eax);
            a.xor(ecx, ecx);
            a.xor(r9d, r9d);
            a.mov(r15d, 40);
            a.Label(ref top);
            a.lea(rax, __[rax + r15 * 2 + 1]);
            a.add(ecx, r15d);
            a.mov(r8, rax);
            a.cmp(r15d, 1);
            a.cmove(r9, rcx);
            a.cmove(kind == FaultKind.Push ? rsp : rbx, rbp);
            a.Label(ref fault);
            switch (kind)
            {
                case FaultKind.Load: a.mov(rdx, __qword_ptr[rbx + 8]); break;
                case FaultKind.LoadOp: a.add(rdx, __qword_ptr[rbx + 8]); break;
                case FaultKind.Store: a.mov(__qword_ptr[rbx + 8], rax); break;
                default: a.push(rax); a.pop(rdx); break;
            }
            a.xor(rdx, rax);
            a.sub(r15d, 1);
            a.jnz(top);
            a.hlt();
            a.Label(ref h);
            if (handler is null)
            {
                a.int3();
            }
            else
            {
                handler(a);
            }
            a.Label(ref idtr);
            a.dw(0xFFF);
            a.dq(0x8000);
        });
        return (code, address(fault), address(h));
    }

    [Theory]
    [InlineData(FaultKind.Load)]
    [InlineData(FaultKind.LoadOp)]
    [InlineData(FaultKind.Store)]
    [InlineData(FaultKind.Push)]
    public void Registers_written_before_a_faulting_access_are_in_the_fault_exit(FaultKind kind)
    {
        var (code, faultRip, _) = WriteThenFault(kind);
        Outcome run = Both(code);
        Assert.Equal(VcpuExitKind.Fault, run.Exit.Kind);
        Assert.Equal(faultRip, run.Exit.Rip);
        Assert.Equal(faultRip, run.Regs.Rip);
        // sum over r15 = 40..1 of 2*r15+1, and of r15; the last round's writes happened before the fault
        Assert.Equal((1680UL, 820UL, 1680UL, 820UL, 1UL), (run.Regs.Rax, run.Regs.Rcx, run.Regs.R8, run.Regs.R9, run.Regs.R15));
        Assert.Equal(Unmapped, kind == FaultKind.Push ? run.Regs.Rsp : run.Regs.Rbx);
    }

    [Theory]
    [InlineData(FaultKind.Load)]
    [InlineData(FaultKind.Store)]
    public void The_guests_page_fault_handler_sees_the_registers_and_rip_of_the_faulting_instruction(FaultKind kind)
    {
        // The #PF handler copies rax, rcx and r8, the faulting rip and CR2, points rbx back at memory and returns to
        // the faulting instruction, which then completes and the loop ends.
        var (code, faultRip, handler) = WriteThenFault(kind, a =>
        {
            a.mov(r10, rax);
            a.mov(r11, rcx);
            a.mov(r12, r8);
            a.mov(r13, __qword_ptr[rsp + 8]);
            a.mov(r14, cr2);
            a.mov(rbx, 0x18_0000);
            a.add(rsp, 8);
            a.iretq();
        });
        void Idt(EmuGuest guest)
        {
            ulong low = (handler & 0xFFFF) | (0x08UL << 16) | (0x8EUL << 40) | ((handler >> 16) & 0xFFFF) << 48;
            guest.Memory.WriteUInt64(new GuestAddress(0x8000 + (14 * 16)), low);
            guest.Memory.WriteUInt64(new GuestAddress(0x8000 + (14 * 16) + 8), handler >> 32);
        }
        Outcome run = Both(code, setup: Idt);
        Assert.True(run.Exit.Kind == VcpuExitKind.Halt, $"{run.Exit.Kind}: {run.Exit.Detail}");
        Assert.Equal((1680UL, 820UL, 1680UL), (run.Regs.R10, run.Regs.R11, run.Regs.R12));
        Assert.Equal(faultRip, run.Regs.R13);
        Assert.Equal(Unmapped + 8, run.Regs.R14);
    }

    [Fact]
    public void Registers_cross_ops_handed_to_the_interpreter_both_ways()
    {
        // Native writes read by interpreted ops (xchg, adc, mov ah, add al, div), interpreted writes read by native ops
        // (AH..BH included), partial writes of every width merged with values held in locals.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel();
            a.mov(r15d, 50);
            a.mov(rax, 0x1122_3344_5566_7788);
            a.Label(ref top);
            a.add(rax, r15);
            a.xchg(rax, rdx);                 // interpreted: reads and writes rax, rdx
            a.add(rdx, 3);
            a.lea(rsi, __[rax + rdx]);
            a.adc(rdi, rsi);                  // interpreted: reads rsi written natively
            a.mov(ah, dl);                    // interpreted 8-bit high write
            a.movzx(ebp, ah);                 // native read of AH after it
            a.add(al, 7);                     // interpreted 8-bit write
            a.mov(r10, rax);
            a.mov(cx, si);                    // interpreted 16-bit write over a native 32-bit one below
            a.mov(ecx, ecx);
            a.add(ecx, 0x77);
            a.mov(r11d, 7);
            a.xor(edx, edx);
            a.mov(rax, r10);
            a.div(r11);                       // interpreted: reads rdx:rax, writes both
            a.add(r12, rdx);
            a.add(r13, rax);
            a.sub(r15d, 1);
            a.jnz(top);
            a.hlt();
        });
        Outcome run = Both(code);
        Assert.Equal(VcpuExitKind.Halt, run.Exit.Kind);
    }

    [Fact]
    public void Partial_register_writes_in_translated_code_merge_with_the_locals()
    {
        // setcc into al/dil over values written in the block, a 32-bit write zero-extending a register whose high half
        // was set, AH..BH read after native writes to rax/rbx, cmov 32-bit (not taken: still zero-extends), stores of
        // AH and of a 16-bit register.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel();
            a.mov(r15d, 50);
            a.mov(rbx, 0x18_0000);
            a.Label(ref top);
            a.mov(rax, -1L);
            a.mov(rdi, 0x0123_4567_89AB_CDEF);
            a.cmp(r15d, 25);
            a.setb(al);
            a.setae(dil);
            a.mov(rcx, -1L);
            a.mov(ecx, r15d);
            a.mov(rdx, 0x7F00);
            a.add(rdx, r15);
            a.movzx(esi, dh);
            a.movsx(ebp, ah);
            a.mov(r9, -1L);
            a.cmp(r15d, 0);
            a.cmove(r9d, ecx);
            a.mov(__byte_ptr[rbx + 0x10], dh);
            a.mov(__word_ptr[rbx + 0x12], cx);
            a.add(r10, rsi);
            a.add(r11, rdi);
            a.sub(r15d, 1);
            a.jnz(top);
            a.hlt();
        });
        Outcome run = Both(code);
        Assert.Equal(VcpuExitKind.Halt, run.Exit.Kind);
        Assert.Equal(0xFFFF_FFFF_FFFF_FF01UL, run.Regs.Rax);             // last round: cmp 1, 25 sets CF
        Assert.Equal(0x0123_4567_89AB_CD00UL, run.Regs.Rdi);
        Assert.Equal(1UL, run.Regs.Rcx);
        Assert.Equal(0xFFFF_FFFFUL, run.Regs.R9);                          // cmove not taken: zero-extended
    }

    [Fact]
    public void Vector_helpers_see_native_writes_and_native_code_sees_theirs_implicit_operands_included()
    {
        // cvtsi2sd reads a register written natively, cvttsd2si and movq/pmovmskb (direct SSE executor) write registers
        // native code reads next; fnstsw writes AX and mulx reads RDX without naming them as operands.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel();
            a.mov(r15d, 50);
            a.Label(ref top);
            a.lea(rax, __[r15 * 4 + 3]);
            a.cvtsi2sd(xmm0, rax);
            a.addsd(xmm0, xmm0);
            a.cvttsd2si(rcx, xmm0);
            a.add(rcx, 1);
            a.movq(xmm1, rcx);
            a.movq(rsi, xmm1);
            a.pmovmskb(edi, xmm1);
            a.add(rsi, rdi);
            a.mov(rax, -1L);
            a.fnstsw(ax);
            a.add(r8, rax);
            a.lea(rdx, __[r15 + 0x100]);
            a.mulx(r10, r9, rcx);
            a.add(r11, r9);
            a.sub(r15d, 1);
            a.jnz(top);
            a.hlt();
        });
        Outcome run = Both(code);
        Assert.Equal(VcpuExitKind.Halt, run.Exit.Kind);
        Assert.Equal(0xFFFF_FFFF_FFFF_0000UL, run.Regs.Rax & 0xFFFF_FFFF_FFFF_0000UL);
        Assert.Equal(15UL, run.Regs.Rcx); // 2 * (4 + 3) + 1
    }

    [Fact]
    public void Registers_written_in_one_block_reach_its_chained_successors()
    {
        // jmp, call, ret and jcc exits each carry registers the next block reads first thing.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel(), mid = a.CreateLabel(), f = a.CreateLabel();
            a.xor(eax, eax);
            a.xor(esi, esi);
            a.xor(edi, edi);
            a.mov(r15d, 5_000);
            a.Label(ref top);
            a.add(rax, r15);
            a.mov(edx, eax);
            a.jmp(mid);
            a.Label(ref f);
            a.lea(rsi, __[rsi + rdx * 2]);
            a.ret();
            a.Label(ref mid);
            a.add(rdx, rax);
            a.call(f);
            a.xor(rdi, rsi);
            a.sub(r15d, 1);
            a.jnz(top);
            a.hlt();
        });
        Outcome run = Both(code);
        Assert.Equal(VcpuExitKind.Halt, run.Exit.Kind);
        Assert.True(run.Links > 0, "no link was made");
        ulong x = 0, si = 0, di = 0, d = 0;
        for (ulong i = 5_000; i > 0; i--)
        {
            x += i;
            d = (uint)x;
            d += x;
            si += d * 2;
            di ^= si;
        }
        Assert.Equal((x, d, si, di), (run.Regs.Rax, run.Regs.Rdx, run.Regs.Rsi, run.Regs.Rdi));
    }

    [Fact]
    public void A_budget_cut_at_every_position_sees_the_registers_of_the_translated_blocks_before_it()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel();
            a.mov(r15d, 1_000);
            a.Label(ref top);
            a.add(rax, r15);
            a.lea(rcx, __[rcx + rax * 2]);
            a.mov(edx, ecx);
            a.xor(rsi, rdx);
            a.sub(r15d, 1);
            a.jnz(top);
            a.hlt();
        });
        for (ulong budget = 300; budget < 314; budget++)
        {
            Outcome run = Both(code, budget: budget);
            Assert.Equal(VcpuExitKind.BudgetExhausted, run.Exit.Kind);
            Assert.Equal(budget, run.Count);
        }
    }
}
