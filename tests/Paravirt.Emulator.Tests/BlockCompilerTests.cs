using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The IL translation of hot blocks must behave exactly like the interpreter (which the differential tests prove
/// against the real CPU): random programs built from the translatable forms, looped so their blocks get compiled,
/// run with translation off and with it forced on; registers, flags, memory, exits and instruction counts must match.
/// Some programs store into the page holding their own code (the translated code bails out to the interpreter) and
/// some read outside guest memory (a fault in the middle of a translated block).
/// </summary>
public sealed class BlockCompilerTests
{
    private static readonly AssemblerRegister64[] R64 = [rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11, r12, r13, r14];
    private static readonly AssemblerRegister32[] R32 = [eax, ecx, edx, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d];

    private static void RandomOp(Assembler a, Random r, Label func, bool allowFault)
    {
        int x = r.Next(R64.Length), y = r.Next(R64.Length);
        bool wide = r.Next(2) == 0;
        int imm = r.Next(4) switch { 0 => r.Next(-3, 3), 1 => int.MinValue, 2 => int.MaxValue, _ => r.Next() };
        int disp = r.Next(0, 0x700);
        switch (r.Next(19))
        {
            case 0: if (wide) a.mov(R64[x], R64[y]); else a.mov(R32[x], R32[y]); break;
            case 1: if (wide) a.mov(R64[x], (long)imm * 0x1_0001); else a.mov(R32[x], imm); break;
            case 2:
                switch (r.Next(7))
                {
                    case 0: if (wide) a.add(R64[x], R64[y]); else a.add(R32[x], R32[y]); break;
                    case 1: if (wide) a.sub(R64[x], R64[y]); else a.sub(R32[x], R32[y]); break;
                    case 2: if (wide) a.and(R64[x], R64[y]); else a.and(R32[x], R32[y]); break;
                    case 3: if (wide) a.or(R64[x], R64[y]); else a.or(R32[x], R32[y]); break;
                    case 4: if (wide) a.xor(R64[x], R64[y]); else a.xor(R32[x], R32[y]); break;
                    case 5: if (wide) a.cmp(R64[x], R64[y]); else a.cmp(R32[x], R32[y]); break;
                    default: if (wide) a.test(R64[x], R64[y]); else a.test(R32[x], R32[y]); break;
                }
                break;
            case 3:
                switch (r.Next(6))
                {
                    case 0: if (wide) a.add(R64[x], imm); else a.add(R32[x], imm); break;
                    case 1: if (wide) a.sub(R64[x], imm); else a.sub(R32[x], imm); break;
                    case 2: if (wide) a.and(R64[x], imm); else a.and(R32[x], imm); break;
                    case 3: if (wide) a.xor(R64[x], imm); else a.xor(R32[x], imm); break;
                    case 4: if (wide) a.cmp(R64[x], imm); else a.cmp(R32[x], imm); break;
                    default: if (wide) a.test(R64[x], imm); else a.test(R32[x], imm); break;
                }
                break;
            case 4: if (wide) a.neg(R64[x]); else a.neg(R32[x]); break;
            case 5: if (wide) a.not(R64[x]); else a.not(R32[x]); break;
            case 6: if (wide) a.lea(R64[x], __[R64[y] + R64[x] * (1 << r.Next(4)) + imm]); else a.lea(R32[x], __[R64[y] + imm]); break;
            case 7: if (wide) a.mov(R64[x], __qword_ptr[rbx + disp]); else a.mov(R32[x], __dword_ptr[rbx + disp]); break;
            case 8: a.movzx(R32[x], __byte_ptr[rbx + disp]); break;
            case 9: if (wide) a.mov(__qword_ptr[rbx + disp], R64[x]); else a.mov(__dword_ptr[rbx + disp], R32[x]); break;
            case 10:
            {
                int count = r.Next(1, wide ? 64 : 32);
                switch (r.Next(5))
                {
                    case 0: if (wide) a.shl(R64[x], (byte)count); else a.shl(R32[x], (byte)count); break;
                    case 1: if (wide) a.shr(R64[x], (byte)count); else a.shr(R32[x], (byte)count); break;
                    case 2: if (wide) a.sar(R64[x], (byte)count); else a.sar(R32[x], (byte)count); break;
                    case 3: if (wide) a.rol(R64[x], (byte)count); else a.rol(R32[x], (byte)count); break;
                    default: if (wide) a.ror(R64[x], (byte)count); else a.ror(R32[x], (byte)count); break;
                }
                break;
            }
            case 11: a.push(R64[x]); a.pop(R64[y]); break;
            case 12: a.movzx(R32[x], R8Of(y)); break;
            case 13: a.call(func); break;
            case 14:
            {
                Label skip = a.CreateLabel();
                if (wide) a.cmp(R64[x], R64[y]); else a.test(R32[x], R32[y]);
                switch (r.Next(4))
                {
                    case 0: a.jl(skip); break;
                    case 1: a.jbe(skip); break;
                    case 2: a.jne(skip); break;
                    default: a.js(skip); break;
                }
                a.add(R64[x], 1);
                a.Label(ref skip);
                a.nop();
                break;
            }
            case 15:
                if (allowFault && r.Next(8) == 0)
                {
                    a.mov(R64[x], __qword_ptr[rbx + 0x7FFF_F000]); // far outside the 2 MiB guest
                }
                else
                {
                    a.nop();
                }
                break;
            case 16:
                // Ops the translator hands to the interpreter one at a time.
                switch (r.Next(10))
                {
                    case 0: a.inc(R64[x]); break;
                    case 1: a.adc(R64[x], R64[y]); break;
                    case 2: a.setc(R8Of(x)); break;
                    case 3: a.imul(R64[x], R64[y]); break;
                    case 4: a.mov(__byte_ptr[rbx + disp], (byte)imm); break;
                    case 5: a.add(R64[x], __qword_ptr[rbx + disp]); break;
                    case 6: a.movq(xmm0, R64[x]); a.pxor(xmm1, xmm0); a.movq(R64[y], xmm1); break;
                    case 7: a.rdtsc(); break;
                    case 8: a.dec(R32[x]); a.cmovl(R64[y], R64[x]); break;
                    default:
                        if (allowFault && r.Next(4) == 0)
                        {
                            a.add(R64[x], __qword_ptr[rbx + 0x7FFF_F000]); // fault inside an interpreted op
                        }
                        else
                        {
                            a.xchg(R64[x], R64[y]);
                        }
                        break;
                }
                break;
            default: a.nop(); break;
        }
    }

    private static AssemblerRegister8 R8Of(int i) => new AssemblerRegister8[] { al, cl, dl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b }[i];

    private static (VcpuExit Exit, VcpuRegisters Regs, ulong Count, byte[] Data, long TranslatedRuns) Run(byte[] code, ulong[] init, int threshold, ulong dataBase)
    {
        using EmuGuest guest = EmuHarness.Create(code, budget: 5_000_000);
        var (memory, vm, vcpu) = guest;
        var cpu = (EmulatorVcpu)vcpu;
        cpu.JitThreshold = threshold;
        for (int i = 0; i < 16; i++)
        {
            if (i is not (3 or 4))
            {
                cpu.SetRegister(i, init[i]);
            }
        }
        cpu.SetRegister(3, dataBase);
        cpu.SetRegister(15, 6);
        VcpuExit exit = vcpu.Run();
        return (exit, vcpu.GetRegisters(), cpu.Retired, memory.GetSpan(new GuestAddress(EmuHarness.CodeAddress), 0x2000).ToArray(), cpu.TranslatedBlocksCompleted);
    }

    [Fact]
    public void TranslatedBlocks_MatchTheInterpreter()
    {
        var r = new Random(8086);
        const int Programs = 300;
        int ranTranslated = 0;
        for (int program = 0; program < Programs; program++)
        {
            bool allowFault = r.Next(4) == 0;
            int length = r.Next(1, 40);
            var ops = new List<int>();
            int seed = r.Next();
            byte[] code = EmuHarness.Assemble(a =>
            {
                var pr = new Random(seed);
                Label top = a.CreateLabel(), func = a.CreateLabel();
                a.Label(ref top);
                for (int k = 0; k < length; k++)
                {
                    RandomOp(a, pr, func, allowFault);
                }
                a.sub(r15, 1);
                a.jnz(top);
                a.hlt();
                a.Label(ref func);
                a.add(rax, rcx);
                a.xor(edx, 0x55);
                a.ret();
            });
            ulong[] init = new ulong[16];
            for (int i = 0; i < 16; i++)
            {
                init[i] = (ulong)r.NextInt64() ^ ((ulong)r.Next(2) << 63);
            }
            // Data in the page after the code, or (sometimes) in the code's own page: every store then bails out.
            ulong dataBase = r.Next(3) == 0 ? EmuHarness.CodeAddress + 0x800 : EmuHarness.CodeAddress + 0x1000;
            var interpreted = Run(code, init, threshold: 0, dataBase);
            var translated = Run(code, init, threshold: 1, dataBase);
            Assert.True(interpreted.Exit == translated.Exit, $"program {program}: exit {interpreted.Exit} vs {translated.Exit}");
            Assert.True(interpreted.Regs == translated.Regs, $"program {program}: registers\n{interpreted.Regs}\n{translated.Regs}");
            Assert.True(interpreted.Count == translated.Count, $"program {program}: count {interpreted.Count} vs {translated.Count}");
            Assert.True(interpreted.Data.AsSpan().SequenceEqual(translated.Data), $"program {program}: memory differs");
            Assert.True(interpreted.TranslatedRuns == 0, $"program {program}: the interpreter-only run ran translated code");
            if (translated.TranslatedRuns > 0)
            {
                ranTranslated++;
            }
        }
        // The comparison proves nothing unless the translated side really ran translated code: most programs loop
        // six times over blocks compiled on first sight (283 of 300 do with this seed); the rest fault, or store into their
        // own code page, first.
        Assert.True(ranTranslated >= Programs * 9 / 10, $"only {ranTranslated} of {Programs} programs completed a block in translated code");
    }
}
