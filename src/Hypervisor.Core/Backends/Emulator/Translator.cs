using Iced.Intel;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// Turns one Iced <see cref="Instruction"/> into a <see cref="MicroOp"/>. Returns false for anything the emulator
/// does not implement, so that the block ends in an <see cref="OpKind.Unsupported"/> op that faults with the
/// instruction's text instead of computing a wrong result.
/// </summary>
internal static partial class Translator
{
    public const byte NoReg = 0xFF;

    public static bool Translate(in Instruction ins, ref MicroOp op)
    {
        if (!TranslateGeneric(in ins, ref op))
        {
            return false;
        }
        Specialize(ref op);
        return true;
    }

    /// <summary>Rewrites the hottest shapes to dedicated op kinds with no operand-kind or size switches.</summary>
    private static void Specialize(ref MicroOp op)
    {
        bool wide = op.Size is 4 or 8;
        bool regA = op.A == Loc.Reg && op.RegA < 16;
        bool regB = op.B == Loc.Reg && op.RegB < 16;
        int w = op.Size == 8 ? 0 : 1;
        if (wide && regA && (regB || op.B == Loc.Imm))
        {
            int baseKind = op.Kind switch
            {
                OpKind.Mov => (int)OpKind.MovRR64,
                OpKind.Add => (int)OpKind.AddRR64,
                OpKind.Sub => (int)OpKind.SubRR64,
                OpKind.And => (int)OpKind.AndRR64,
                OpKind.Or => (int)OpKind.OrRR64,
                OpKind.Xor => (int)OpKind.XorRR64,
                OpKind.Cmp => (int)OpKind.CmpRR64,
                OpKind.Test => (int)OpKind.TestRR64,
                _ => -1,
            };
            if (baseKind >= 0)
            {
                // Layout per op: RR64, RR32, RI64, RI32.
                op.Kind = (OpKind)(baseKind + (op.B == Loc.Imm ? 2 : 0) + w);
                if (op.B == Loc.Imm && op.Size == 4)
                {
                    op.Imm = (uint)op.Imm;
                }
                return;
            }
        }
        if (op.Kind == OpKind.Mov && wide && regA && op.B == Loc.Mem)
        {
            op.Kind = op.Size == 8 ? OpKind.LoadRM64 : OpKind.LoadRM32;
        }
        else if (op.Kind == OpKind.Mov && wide && regB && op.A == Loc.Mem)
        {
            op.Kind = op.Size == 8 ? OpKind.StoreMR64 : OpKind.StoreMR32;
        }
        else if (op.Kind == OpKind.Movzx && wide && regA && op.Size2 == 1 && op.B == Loc.Mem)
        {
            op.Kind = OpKind.MovzxLoad8;
        }
        else if (op.Kind == OpKind.Movzx && wide && regA && op.Size2 == 1 && regB)
        {
            op.Kind = OpKind.MovzxRR8;
        }
        else if (op.Kind == OpKind.Lea && wide && regA)
        {
            op.Kind = op.Size == 8 ? OpKind.Lea64 : OpKind.Lea32;
        }
        else if (op.Kind is OpKind.Shl or OpKind.Shr or OpKind.Sar or OpKind.Rol or OpKind.Ror && wide && regA && op.B == Loc.Imm
            && (op.Imm & (op.Size == 8 ? 63UL : 31UL)) != 0)
        {
            op.Cond = (byte)op.Kind;
            op.Imm &= op.Size == 8 ? 63UL : 31UL;
            op.Kind = OpKind.ShiftRI;
        }
    }

    private static bool TranslateGeneric(in Instruction ins, ref MicroOp op)
    {
        op.Rip = ins.IP;
        op.Next = ins.NextIP;
        op.Base = NoReg;
        op.Index = NoReg;
        op.RegC = NoReg;
        Mnemonic m = ins.Mnemonic;
        switch (m)
        {
            case Mnemonic.Nop:
            case Mnemonic.Endbr64:
            case Mnemonic.Endbr32:
            case Mnemonic.Pause:
            case Mnemonic.Lfence:
            case Mnemonic.Sfence:
            case Mnemonic.Mfence:
            case Mnemonic.Prefetchnta:
            case Mnemonic.Prefetcht0:
            case Mnemonic.Prefetcht1:
            case Mnemonic.Prefetcht2:
            case Mnemonic.Prefetchw:
                op.Kind = OpKind.Nop;
                return true;

            case Mnemonic.Mov:
                if (TrySystemMov(in ins, ref op, out bool systemMov))
                {
                    return systemMov; // control, debug or segment register
                }
                return Binary(in ins, ref op, OpKind.Mov);
            case Mnemonic.Cli: return Fixed(ref op, OpKind.Cli, 0);
            case Mnemonic.Sti: return Fixed(ref op, OpKind.Sti, 0);
            case Mnemonic.Clflush: case Mnemonic.Clflushopt:
                op.Kind = OpKind.Nop;
                return true;
            case Mnemonic.Lgdt:
            case Mnemonic.Lidt:
                return MemoryOperand0(in ins, ref op) && Fixed(ref op, m == Mnemonic.Lgdt ? OpKind.Lgdt : OpKind.Lidt, 10);
            case Mnemonic.Add: return Binary(in ins, ref op, OpKind.Add);
            case Mnemonic.Or: return Binary(in ins, ref op, OpKind.Or);
            case Mnemonic.Adc: return Binary(in ins, ref op, OpKind.Adc);
            case Mnemonic.Sbb: return Binary(in ins, ref op, OpKind.Sbb);
            case Mnemonic.And: return Binary(in ins, ref op, OpKind.And);
            case Mnemonic.Sub: return Binary(in ins, ref op, OpKind.Sub);
            case Mnemonic.Xor: return Binary(in ins, ref op, OpKind.Xor);
            case Mnemonic.Cmp: return Binary(in ins, ref op, OpKind.Cmp);
            case Mnemonic.Test: return Binary(in ins, ref op, OpKind.Test);
            case Mnemonic.Xchg: return Binary(in ins, ref op, OpKind.Xchg);
            case Mnemonic.Cmpxchg: return Binary(in ins, ref op, OpKind.Cmpxchg);
            case Mnemonic.Xadd: return Binary(in ins, ref op, OpKind.Xadd);
            case Mnemonic.Bt: return Binary(in ins, ref op, OpKind.Bt);
            case Mnemonic.Bts: return Binary(in ins, ref op, OpKind.Bts);
            case Mnemonic.Btr: return Binary(in ins, ref op, OpKind.Btr);
            case Mnemonic.Btc: return Binary(in ins, ref op, OpKind.Btc);
            case Mnemonic.Bsf: return Binary(in ins, ref op, OpKind.Bsf);
            case Mnemonic.Bsr: return Binary(in ins, ref op, OpKind.Bsr);
            case Mnemonic.Tzcnt: return Binary(in ins, ref op, OpKind.Tzcnt);
            case Mnemonic.Lzcnt: return Binary(in ins, ref op, OpKind.Lzcnt);
            case Mnemonic.Popcnt: return Binary(in ins, ref op, OpKind.Popcnt);
            case Mnemonic.Blsi: return Binary(in ins, ref op, OpKind.Blsi);
            case Mnemonic.Blsr: return Binary(in ins, ref op, OpKind.Blsr);
            case Mnemonic.Blsmsk: return Binary(in ins, ref op, OpKind.Blsmsk);
            case Mnemonic.Andn:
                // andn dst, src1 (vvvv), src2 (r/m): A = dst, RegC = src1, B = src2.
                if (ins.OpCount != 3 || !Gpr(ins.Op1Register, out op.RegC, out _) || !Operand(in ins, 0, ref op.A, ref op.RegA, ref op) || !Operand(in ins, 2, ref op.B, ref op.RegB, ref op))
                {
                    return false;
                }
                op.Kind = OpKind.Andn;
                op.Size = (byte)ins.Op0Register.GetSize();
                return true;
            case Mnemonic.Bextr:
                // bextr dst, src (r/m), control (vvvv)
                if (ins.OpCount != 3 || ins.Op2Kind != OpKind_Register || !Gpr(ins.Op2Register, out op.RegC, out _) || !Operand(in ins, 0, ref op.A, ref op.RegA, ref op) || !Operand(in ins, 1, ref op.B, ref op.RegB, ref op))
                {
                    return false;
                }
                op.Kind = OpKind.Bextr;
                op.Size = (byte)ins.Op0Register.GetSize();
                return true;

            case Mnemonic.Movzx:
            case Mnemonic.Movsx:
            case Mnemonic.Movsxd:
                if (!Binary(in ins, ref op, m == Mnemonic.Movzx ? OpKind.Movzx : OpKind.Movsx))
                {
                    return false;
                }
                op.Size2 = (byte)(ins.Op1Kind == OpKind_Register ? ins.Op1Register.GetSize() : ins.MemorySize.GetSize());
                return true;
            case Mnemonic.Lea:
                if (ins.Op1Kind != Iced.Intel.OpKind.Memory)
                {
                    return false;
                }
                return Binary(in ins, ref op, OpKind.Lea);

            case Mnemonic.Push:
                if (ins.OpCount == 1 && ins.Op0Kind == OpKind_Register && ins.Op0Register.IsSegmentRegister())
                {
                    return SegmentPushPop(in ins, ref op, push: true);
                }
                if (ins.OpCount != 1 || !Operand(in ins, 0, ref op.B, ref op.RegB, ref op) || OperandSize(in ins, 0) == 2)
                {
                    return false;
                }
                op.Kind = OpKind.Push;
                op.Size = 8;
                return true;
            case Mnemonic.Pop:
                if (ins.OpCount == 1 && ins.Op0Kind == OpKind_Register && ins.Op0Register.IsSegmentRegister())
                {
                    return SegmentPushPop(in ins, ref op, push: false);
                }
                if (ins.OpCount != 1 || !Operand(in ins, 0, ref op.A, ref op.RegA, ref op) || OperandSize(in ins, 0) != 8)
                {
                    return false;
                }
                op.Kind = OpKind.Pop;
                op.Size = 8;
                return true;

            case Mnemonic.Inc: return Unary(in ins, ref op, OpKind.Inc);
            case Mnemonic.Dec: return Unary(in ins, ref op, OpKind.Dec);
            case Mnemonic.Neg: return Unary(in ins, ref op, OpKind.Neg);
            case Mnemonic.Not: return Unary(in ins, ref op, OpKind.Not);

            case Mnemonic.Mul: return OneSource(in ins, ref op, OpKind.Mul1);
            case Mnemonic.Div: return OneSource(in ins, ref op, OpKind.Div);
            case Mnemonic.Idiv: return OneSource(in ins, ref op, OpKind.Idiv);
            case Mnemonic.Imul:
                if (ins.OpCount == 1)
                {
                    return OneSource(in ins, ref op, OpKind.Imul1);
                }
                if (ins.OpCount == 2)
                {
                    return Binary(in ins, ref op, OpKind.Imul2);
                }
                if (!Binary(in ins, ref op, OpKind.Imul3))
                {
                    return false;
                }
                op.Imm = ins.GetImmediate(2);
                return true;

            case Mnemonic.Shl: case Mnemonic.Sal: return Binary(in ins, ref op, OpKind.Shl);
            case Mnemonic.Shr: return Binary(in ins, ref op, OpKind.Shr);
            case Mnemonic.Sar: return Binary(in ins, ref op, OpKind.Sar);
            case Mnemonic.Rol: return Binary(in ins, ref op, OpKind.Rol);
            case Mnemonic.Ror: return Binary(in ins, ref op, OpKind.Ror);
            case Mnemonic.Rcl: return Binary(in ins, ref op, OpKind.Rcl);
            case Mnemonic.Rcr: return Binary(in ins, ref op, OpKind.Rcr);
            case Mnemonic.Shld:
            case Mnemonic.Shrd:
                if (ins.OpCount != 3 || !Binary(in ins, ref op, m == Mnemonic.Shld ? OpKind.Shld : OpKind.Shrd))
                {
                    return false;
                }
                if (ins.Op2Kind == OpKind_Register)
                {
                    op.Rep = 1;
                }
                else
                {
                    op.Imm = ins.GetImmediate(2);
                }
                return true;

            case Mnemonic.Jmp:
            case Mnemonic.Call:
                if (ins.Op0Kind == Iced.Intel.OpKind.NearBranch64)
                {
                    op.Kind = m == Mnemonic.Jmp ? OpKind.Jmp : OpKind.Call;
                    op.Imm = ins.NearBranch64;
                    return true;
                }
                if ((ins.Op0Kind != OpKind_Register && ins.Op0Kind != Iced.Intel.OpKind.Memory) || OperandSize(in ins, 0) != 8)
                {
                    return false;
                }
                op.Kind = m == Mnemonic.Jmp ? OpKind.JmpInd : OpKind.CallInd;
                op.Size = 8;
                return Operand(in ins, 0, ref op.B, ref op.RegB, ref op);
            case Mnemonic.Ret:
                op.Kind = OpKind.Ret;
                op.Imm = ins.OpCount > 0 ? ins.GetImmediate(0) & 0xFFFF : 0;
                return true;
            case Mnemonic.Loop:
            case Mnemonic.Loope:
            case Mnemonic.Loopne:
            case Mnemonic.Jrcxz:
                if (ins.Op0Kind != Iced.Intel.OpKind.NearBranch64 || (m != Mnemonic.Jrcxz && ins.Code != Code.Loop_rel8_64_RCX && ins.Code != Code.Loope_rel8_64_RCX && ins.Code != Code.Loopne_rel8_64_RCX))
                {
                    return false;
                }
                op.Kind = m switch { Mnemonic.Loop => OpKind.Loop, Mnemonic.Loope => OpKind.Loope, Mnemonic.Loopne => OpKind.Loopne, _ => OpKind.Jrcxz };
                op.Imm = ins.NearBranch64;
                return true;

            case Mnemonic.Movsb: case Mnemonic.Movsw: case Mnemonic.Movsq:
                return StringOp(in ins, ref op, OpKind.Movs);
            case Mnemonic.Movsd:
                return ins.Code == Code.Movsd_m32_m32 ? StringOp(in ins, ref op, OpKind.Movs) : SseScalarMove(in ins, ref op, 8);
            case Mnemonic.Stosb: case Mnemonic.Stosw: case Mnemonic.Stosd: case Mnemonic.Stosq:
                return StringOp(in ins, ref op, OpKind.Stos);
            case Mnemonic.Lodsb: case Mnemonic.Lodsw: case Mnemonic.Lodsd: case Mnemonic.Lodsq:
                return StringOp(in ins, ref op, OpKind.Lods);
            case Mnemonic.Cmpsb: case Mnemonic.Cmpsw: case Mnemonic.Cmpsq:
                return StringOp(in ins, ref op, OpKind.Cmps);
            case Mnemonic.Cmpsd:
                return ins.Code == Code.Cmpsd_m32_m32 ? StringOp(in ins, ref op, OpKind.Cmps) : TranslateIsa(in ins, ref op);
            case Mnemonic.Scasb: case Mnemonic.Scasw: case Mnemonic.Scasd: case Mnemonic.Scasq:
                return StringOp(in ins, ref op, OpKind.Scas);

            case Mnemonic.Cmpxchg8b:
            case Mnemonic.Cmpxchg16b:
                if (!MemoryOperand0(in ins, ref op))
                {
                    return false;
                }
                op.Kind = m == Mnemonic.Cmpxchg8b ? OpKind.Cmpxchg8b : OpKind.Cmpxchg16b;
                op.Aligned = m == Mnemonic.Cmpxchg16b;
                return true;
            case Mnemonic.Bswap: return Unary(in ins, ref op, OpKind.Bswap);
            case Mnemonic.Cbw: return Fixed(ref op, OpKind.SignExtendAcc, 2);
            case Mnemonic.Cwde: return Fixed(ref op, OpKind.SignExtendAcc, 4);
            case Mnemonic.Cdqe: return Fixed(ref op, OpKind.SignExtendAcc, 8);
            case Mnemonic.Cwd: return Fixed(ref op, OpKind.SignExtendToDx, 2);
            case Mnemonic.Cdq: return Fixed(ref op, OpKind.SignExtendToDx, 4);
            case Mnemonic.Cqo: return Fixed(ref op, OpKind.SignExtendToDx, 8);
            case Mnemonic.Leave: return ins.Code == Code.Leaveq && Fixed(ref op, OpKind.Leave, 8);
            case Mnemonic.Hlt: return Fixed(ref op, OpKind.Hlt, 0);
            case Mnemonic.Cpuid: return Fixed(ref op, OpKind.Cpuid, 0);
            case Mnemonic.Rdtsc: return Fixed(ref op, OpKind.Rdtsc, 0);
            case Mnemonic.Cld: return Fixed(ref op, OpKind.Cld, 0);
            case Mnemonic.Std: return Fixed(ref op, OpKind.Std, 0);
            case Mnemonic.Clc: return Fixed(ref op, OpKind.Clc, 0);
            case Mnemonic.Stc: return Fixed(ref op, OpKind.Stc, 0);
            case Mnemonic.Cmc: return Fixed(ref op, OpKind.Cmc, 0);
            case Mnemonic.Lahf: return Fixed(ref op, OpKind.Lahf, 0);
            case Mnemonic.Sahf: return Fixed(ref op, OpKind.Sahf, 0);
            case Mnemonic.Pushfq: return Fixed(ref op, OpKind.Pushf, 8);
            case Mnemonic.Popfq: return Fixed(ref op, OpKind.Popf, 8);
            case Mnemonic.Out:
            case Mnemonic.In:
            {
                int portOp = m == Mnemonic.Out ? 0 : 1;
                Register data = m == Mnemonic.Out ? ins.Op1Register : ins.Op0Register;
                op.Kind = m == Mnemonic.Out ? OpKind.Out : OpKind.In;
                op.Size = (byte)data.GetSize();
                if (ins.GetOpKind(portOp) == OpKind_Register)
                {
                    op.B = Loc.Reg;
                    op.RegB = 2; // dx
                }
                else
                {
                    op.B = Loc.Imm;
                    op.Imm = ins.GetImmediate(portOp) & 0xFF;
                }
                return true;
            }

            // SSE / SSE2
            case Mnemonic.Movdqa: case Mnemonic.Movaps: case Mnemonic.Movapd:
                return Sse(in ins, ref op, OpKind.MovX128, aligned: true);
            case Mnemonic.Movdqu: case Mnemonic.Movups: case Mnemonic.Movupd:
                return Sse(in ins, ref op, OpKind.MovX128, aligned: false);
            case Mnemonic.Movd:
            case Mnemonic.Movq:
                return MovdMovq(in ins, ref op);
            case Mnemonic.Movss: return SseScalarMove(in ins, ref op, 4);
            case Mnemonic.Movlps: case Mnemonic.Movlpd:
                return Sse(in ins, ref op, ins.Op0Kind == Iced.Intel.OpKind.Memory ? OpKind.MovLowStore : OpKind.MovLowLoad, aligned: false);
            case Mnemonic.Movhps: case Mnemonic.Movhpd:
                return Sse(in ins, ref op, ins.Op0Kind == Iced.Intel.OpKind.Memory ? OpKind.MovHighStore : OpKind.MovHighLoad, aligned: false);
            case Mnemonic.Movhlps: return Sse(in ins, ref op, OpKind.Movhlps, aligned: false);
            case Mnemonic.Movlhps: return Sse(in ins, ref op, OpKind.Movlhps, aligned: false);
            case Mnemonic.Pxor: case Mnemonic.Xorps: case Mnemonic.Xorpd: return Sse(in ins, ref op, OpKind.Pxor, aligned: true);
            case Mnemonic.Pand: case Mnemonic.Andps: case Mnemonic.Andpd: return Sse(in ins, ref op, OpKind.Pand, aligned: true);
            case Mnemonic.Por: case Mnemonic.Orps: case Mnemonic.Orpd: return Sse(in ins, ref op, OpKind.Por, aligned: true);
            case Mnemonic.Pandn: case Mnemonic.Andnps: case Mnemonic.Andnpd: return Sse(in ins, ref op, OpKind.Pandn, aligned: true);
            case Mnemonic.Pcmpeqb: return Sse(in ins, ref op, OpKind.Pcmpeqb, aligned: true);
            case Mnemonic.Pcmpeqw: return Sse(in ins, ref op, OpKind.Pcmpeqw, aligned: true);
            case Mnemonic.Pcmpeqd: return Sse(in ins, ref op, OpKind.Pcmpeqd, aligned: true);
            case Mnemonic.Pcmpgtb: return Sse(in ins, ref op, OpKind.Pcmpgtb, aligned: true);
            case Mnemonic.Pcmpgtw: return Sse(in ins, ref op, OpKind.Pcmpgtw, aligned: true);
            case Mnemonic.Pcmpgtd: return Sse(in ins, ref op, OpKind.Pcmpgtd, aligned: true);
            case Mnemonic.Pmovmskb: return SseToGpr(in ins, ref op, OpKind.Pmovmskb);
            case Mnemonic.Movmskps: return SseToGpr(in ins, ref op, OpKind.Movmskps);
            case Mnemonic.Movmskpd: return SseToGpr(in ins, ref op, OpKind.Movmskpd);
            case Mnemonic.Punpcklbw: return Sse(in ins, ref op, OpKind.Punpcklbw, aligned: true);
            case Mnemonic.Punpcklwd: return Sse(in ins, ref op, OpKind.Punpcklwd, aligned: true);
            case Mnemonic.Punpckldq: case Mnemonic.Unpcklps: return Sse(in ins, ref op, OpKind.Punpckldq, aligned: true);
            case Mnemonic.Punpcklqdq: case Mnemonic.Unpcklpd: return Sse(in ins, ref op, OpKind.Punpcklqdq, aligned: true);
            case Mnemonic.Punpckhbw: return Sse(in ins, ref op, OpKind.Punpckhbw, aligned: true);
            case Mnemonic.Punpckhwd: return Sse(in ins, ref op, OpKind.Punpckhwd, aligned: true);
            case Mnemonic.Punpckhdq: case Mnemonic.Unpckhps: return Sse(in ins, ref op, OpKind.Punpckhdq, aligned: true);
            case Mnemonic.Punpckhqdq: case Mnemonic.Unpckhpd: return Sse(in ins, ref op, OpKind.Punpckhqdq, aligned: true);
            case Mnemonic.Pshufd: return SseImm(in ins, ref op, OpKind.Pshufd);
            case Mnemonic.Pshuflw: return SseImm(in ins, ref op, OpKind.Pshuflw);
            case Mnemonic.Pshufhw: return SseImm(in ins, ref op, OpKind.Pshufhw);
            case Mnemonic.Shufps: return SseImm(in ins, ref op, OpKind.Shufps);
            case Mnemonic.Paddb: return Sse(in ins, ref op, OpKind.Paddb, aligned: true);
            case Mnemonic.Paddw: return Sse(in ins, ref op, OpKind.Paddw, aligned: true);
            case Mnemonic.Paddd: return Sse(in ins, ref op, OpKind.Paddd, aligned: true);
            case Mnemonic.Paddq: return Sse(in ins, ref op, OpKind.Paddq, aligned: true);
            case Mnemonic.Psubb: return Sse(in ins, ref op, OpKind.Psubb, aligned: true);
            case Mnemonic.Psubw: return Sse(in ins, ref op, OpKind.Psubw, aligned: true);
            case Mnemonic.Psubd: return Sse(in ins, ref op, OpKind.Psubd, aligned: true);
            case Mnemonic.Psubq: return Sse(in ins, ref op, OpKind.Psubq, aligned: true);
            case Mnemonic.Pmuludq: return Sse(in ins, ref op, OpKind.Pmuludq, aligned: true);
            case Mnemonic.Pmullw: return Sse(in ins, ref op, OpKind.Pmullw, aligned: true);
            case Mnemonic.Pminub: return Sse(in ins, ref op, OpKind.Pminub, aligned: true);
            case Mnemonic.Pmaxub: return Sse(in ins, ref op, OpKind.Pmaxub, aligned: true);
            case Mnemonic.Pminsw: return Sse(in ins, ref op, OpKind.Pminsw, aligned: true);
            case Mnemonic.Pmaxsw: return Sse(in ins, ref op, OpKind.Pmaxsw, aligned: true);
            case Mnemonic.Psllw: return SseShift(in ins, ref op, OpKind.PsllwI, OpKind.Psllw);
            case Mnemonic.Pslld: return SseShift(in ins, ref op, OpKind.PslldI, OpKind.Pslld);
            case Mnemonic.Psllq: return SseShift(in ins, ref op, OpKind.PsllqI, OpKind.Psllq);
            case Mnemonic.Psrlw: return SseShift(in ins, ref op, OpKind.PsrlwI, OpKind.Psrlw);
            case Mnemonic.Psrld: return SseShift(in ins, ref op, OpKind.PsrldI, OpKind.Psrld);
            case Mnemonic.Psrlq: return SseShift(in ins, ref op, OpKind.PsrlqI, OpKind.Psrlq);
            case Mnemonic.Psraw: return SseShift(in ins, ref op, OpKind.PsrawI, OpKind.Psraw);
            case Mnemonic.Psrad: return SseShift(in ins, ref op, OpKind.PsradI, OpKind.Psrad);
            case Mnemonic.Pslldq: return SseShift(in ins, ref op, OpKind.PslldqI, OpKind.Unsupported);
            case Mnemonic.Psrldq: return SseShift(in ins, ref op, OpKind.PsrldqI, OpKind.Unsupported);
            case Mnemonic.Packuswb: return Sse(in ins, ref op, OpKind.Packuswb, aligned: true);
            case Mnemonic.Packsswb: return Sse(in ins, ref op, OpKind.Packsswb, aligned: true);
            case Mnemonic.Packssdw: return Sse(in ins, ref op, OpKind.Packssdw, aligned: true);
            case Mnemonic.Paddusb: return Sse(in ins, ref op, OpKind.Paddusb, aligned: true);
            case Mnemonic.Paddusw: return Sse(in ins, ref op, OpKind.Paddusw, aligned: true);
            case Mnemonic.Psubusb: return Sse(in ins, ref op, OpKind.Psubusb, aligned: true);
            case Mnemonic.Psubusw: return Sse(in ins, ref op, OpKind.Psubusw, aligned: true);
            case Mnemonic.Paddsb: return Sse(in ins, ref op, OpKind.Paddsb, aligned: true);
            case Mnemonic.Paddsw: return Sse(in ins, ref op, OpKind.Paddsw, aligned: true);
            case Mnemonic.Psubsb: return Sse(in ins, ref op, OpKind.Psubsb, aligned: true);
            case Mnemonic.Psubsw: return Sse(in ins, ref op, OpKind.Psubsw, aligned: true);
            case Mnemonic.Pavgb: return Sse(in ins, ref op, OpKind.Pavgb, aligned: true);
            case Mnemonic.Pavgw: return Sse(in ins, ref op, OpKind.Pavgw, aligned: true);
            case Mnemonic.Pmulhw: return Sse(in ins, ref op, OpKind.Pmulhw, aligned: true);
            case Mnemonic.Pmulhuw: return Sse(in ins, ref op, OpKind.Pmulhuw, aligned: true);
            case Mnemonic.Pmaddwd: return Sse(in ins, ref op, OpKind.Pmaddwd, aligned: true);
            case Mnemonic.Psadbw: return Sse(in ins, ref op, OpKind.Psadbw, aligned: true);
            case Mnemonic.Movntdq: case Mnemonic.Movntps: case Mnemonic.Movntpd:
                return Sse(in ins, ref op, OpKind.MovX128, aligned: true);
            case Mnemonic.Movnti:
                return Binary(in ins, ref op, OpKind.Mov);
            case Mnemonic.Pextrw:
                // pextrw r32/r64, xmm, imm8 (the SSE4.1 memory form is an ISA extension)
                if (ins.Op0Kind == Iced.Intel.OpKind.Memory)
                {
                    return TranslateIsa(in ins, ref op);
                }
                if (ins.OpCount != 3 || ins.Op0Kind != OpKind_Register || ins.Op1Kind != OpKind_Register || ins.Op2Kind != Iced.Intel.OpKind.Immediate8
                    || !Gpr(ins.Op0Register, out op.RegA, out int ps) || ps < 4 || !Xmm(ins.Op1Register, out op.RegB))
                {
                    return false;
                }
                op.Kind = OpKind.Pextrw;
                op.A = Loc.Reg;
                op.B = Loc.Reg;
                op.Size = (byte)ps;
                op.Imm = ins.GetImmediate(2) & 7;
                return true;
            case Mnemonic.Pinsrw:
                // pinsrw xmm, r32/m16, imm8
                if (ins.OpCount != 3 || ins.Op0Kind != OpKind_Register || !Xmm(ins.Op0Register, out op.RegA) || ins.Op2Kind != Iced.Intel.OpKind.Immediate8
                    || !Operand(in ins, 1, ref op.B, ref op.RegB, ref op) || op.B == Loc.Imm)
                {
                    return false;
                }
                op.Kind = OpKind.Pinsrw;
                op.A = Loc.Reg;
                op.Size = 2;
                op.Imm = ins.GetImmediate(2) & 7;
                return true;
            default:
                ConditionalFamily family = ConditionalFamilies[(int)m];
                return family != ConditionalFamily.None
                    ? TranslateConditional(in ins, ref op, family)
                    : TranslateSystem(in ins, ref op) || TranslateIsa(in ins, ref op);
        }
    }

    /// <summary>Which of the condition-code families a mnemonic belongs to (<see cref="ConditionalFamilies"/>).</summary>
    private enum ConditionalFamily : byte
    {
        None,
        Jcc,
        Setcc,
        Cmovcc,
    }

    /// <summary>
    /// The family of every jcc, setcc and cmovcc mnemonic, indexed by <see cref="Mnemonic"/>: built from the sixteen
    /// condition suffixes (in <see cref="ConditionCode"/> order) once, instead of three sixteen-case lists.
    /// </summary>
    private static readonly ConditionalFamily[] ConditionalFamilies = BuildConditionalFamilies();

    private static ConditionalFamily[] BuildConditionalFamilies()
    {
        Mnemonic[] all = Enum.GetValues<Mnemonic>();
        var table = new ConditionalFamily[(int)all.Max() + 1];
        string[] suffixes = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];
        foreach (string cc in suffixes)
        {
            table[(int)Enum.Parse<Mnemonic>("J" + cc)] = ConditionalFamily.Jcc;
            table[(int)Enum.Parse<Mnemonic>("Set" + cc)] = ConditionalFamily.Setcc;
            table[(int)Enum.Parse<Mnemonic>("Cmov" + cc)] = ConditionalFamily.Cmovcc;
        }
        return table;
    }

    private static bool TranslateConditional(in Instruction ins, ref MicroOp op, ConditionalFamily family)
    {
        op.Cond = (byte)(ins.ConditionCode - 1); // 0 = o ... 15 = g, the x86 encoding
        switch (family)
        {
            case ConditionalFamily.Jcc:
                if (ins.Op0Kind != Iced.Intel.OpKind.NearBranch64)
                {
                    return false;
                }
                op.Kind = OpKind.Jcc;
                op.Imm = ins.NearBranch64;
                return true;
            case ConditionalFamily.Setcc:
                return Unary(in ins, ref op, OpKind.Setcc);
            default:
                return Binary(in ins, ref op, OpKind.Cmovcc);
        }
    }

    private const Iced.Intel.OpKind OpKind_Register = Iced.Intel.OpKind.Register;

    private static bool Fixed(ref MicroOp op, OpKind kind, byte size)
    {
        op.Kind = kind;
        op.Size = size;
        return true;
    }

    /// <summary>A general-purpose register: index 0-15, or 16-19 for AH, CH, DH, BH.</summary>
    public static bool Gpr(Register r, out byte index, out int size)
    {
        index = NoReg;
        size = 0;
        if (r == Register.None || !r.IsGPR())
        {
            return false;
        }
        size = r.GetSize();
        if (r >= Register.AH && r <= Register.BH)
        {
            index = (byte)(16 + (r - Register.AH));
            return true;
        }
        index = (byte)(r.GetFullRegister() - Register.RAX);
        return index < 16;
    }

    private static int OperandSize(in Instruction ins, int i)
    {
        Iced.Intel.OpKind k = ins.GetOpKind(i);
        if (k == OpKind_Register)
        {
            return ins.GetOpRegister(i).GetSize();
        }
        if (k == Iced.Intel.OpKind.Memory)
        {
            return ins.MemorySize.GetSize();
        }
        return k switch
        {
            Iced.Intel.OpKind.Immediate8 => 1,
            Iced.Intel.OpKind.Immediate16 or Iced.Intel.OpKind.Immediate8to16 => 2,
            Iced.Intel.OpKind.Immediate32 or Iced.Intel.OpKind.Immediate8to32 => 4,
            _ => 8,
        };
    }

    private static bool Memory(in Instruction ins, ref MicroOp op)
    {
        Register b = ins.MemoryBase;
        Register x = ins.MemoryIndex;
        op.Disp = ins.MemoryDisplacement64;
        op.Shift = (byte)System.Numerics.BitOperations.Log2((uint)ins.MemoryIndexScale);
        Register seg = ins.MemorySegment;
        if (seg != Register.DS && seg != Register.SS && seg != Register.ES && seg != Register.CS && seg != Register.FS && seg != Register.GS)
        {
            return false;
        }
        op.Seg = seg == Register.FS ? MicroOp.SegFs : seg == Register.GS ? MicroOp.SegGs : (byte)0;
        if (b == Register.RIP)
        {
            op.Base = NoReg;
        }
        else if (b == Register.EIP)
        {
            return false;
        }
        else if (b != Register.None)
        {
            if (!Gpr(b, out op.Base, out int bs) || bs < 4)
            {
                return false;
            }
            op.Addr32 = bs == 4;
        }
        if (x != Register.None)
        {
            if (!Gpr(x, out op.Index, out int xs) || xs < 4)
            {
                return false;
            }
            op.Addr32 |= xs == 4;
        }
        if (op.Addr32)
        {
            op.Disp = (uint)op.Disp;
        }
        return true;
    }

    /// <summary>Fills location <paramref name="loc"/> (and its register) from operand <paramref name="i"/>: a GPR, memory or an immediate.</summary>
    private static bool Operand(in Instruction ins, int i, ref Loc loc, ref byte reg, ref MicroOp op)
    {
        Iced.Intel.OpKind k = ins.GetOpKind(i);
        switch (k)
        {
            case OpKind_Register:
                loc = Loc.Reg;
                return Gpr(ins.GetOpRegister(i), out reg, out _);
            case Iced.Intel.OpKind.Memory:
                loc = Loc.Mem;
                return Memory(in ins, ref op);
            case Iced.Intel.OpKind.Immediate8:
            case Iced.Intel.OpKind.Immediate16:
            case Iced.Intel.OpKind.Immediate32:
            case Iced.Intel.OpKind.Immediate64:
            case Iced.Intel.OpKind.Immediate8to16:
            case Iced.Intel.OpKind.Immediate8to32:
            case Iced.Intel.OpKind.Immediate8to64:
            case Iced.Intel.OpKind.Immediate32to64:
                loc = Loc.Imm;
                op.Imm = ins.GetImmediate(i);
                return true;
            default:
                return false;
        }
    }

    /// <summary>dst (r/m), src (r/m/imm).</summary>
    private static bool Binary(in Instruction ins, ref MicroOp op, OpKind kind) =>
        ins.OpCount >= 2 && Operand(in ins, 0, ref op.A, ref op.RegA, ref op) && Operand(in ins, 1, ref op.B, ref op.RegB, ref op) && op.A != Loc.Imm
        && IntegerOperation(in ins, ref op, kind);

    /// <summary>One r/m operand, read and written (inc, neg, bswap, ...).</summary>
    private static bool Unary(in Instruction ins, ref MicroOp op, OpKind kind) =>
        ins.OpCount == 1 && Operand(in ins, 0, ref op.A, ref op.RegA, ref op) && op.A != Loc.Imm && IntegerOperation(in ins, ref op, kind);

    /// <summary>One r/m operand, only read (mul, div, push r/m, ...): it goes in the source slot.</summary>
    private static bool OneSource(in Instruction ins, ref MicroOp op, OpKind kind) =>
        ins.OpCount == 1 && Operand(in ins, 0, ref op.B, ref op.RegB, ref op) && op.B != Loc.Imm && IntegerOperation(in ins, ref op, kind);

    /// <summary>The operation on the size of operand 0, which must be 1, 2, 4 or 8 bytes.</summary>
    private static bool IntegerOperation(in Instruction ins, ref MicroOp op, OpKind kind)
    {
        op.Kind = kind;
        op.Size = (byte)OperandSize(in ins, 0);
        return op.Size is 1 or 2 or 4 or 8;
    }

    private static bool StringOp(in Instruction ins, ref MicroOp op, OpKind kind)
    {
        for (int i = 0; i < ins.OpCount; i++)
        {
            Iced.Intel.OpKind k = ins.GetOpKind(i);
            if (k is Iced.Intel.OpKind.MemorySegESI or Iced.Intel.OpKind.MemoryESEDI or Iced.Intel.OpKind.MemorySegSI or Iced.Intel.OpKind.MemoryESDI)
            {
                return false; // 32/16-bit address size
            }
        }
        if (kind is (OpKind.Movs or OpKind.Lods or OpKind.Cmps) && ins.SegmentPrefix is (Register.FS or Register.GS))
        {
            return false; // an FS/GS source (fs lodsb): an emulator gap, never a silent read of DS:rSI
        }
        op.Kind = kind;
        op.Size = (byte)ins.MemorySize.GetSize();
        if (ins.HasRepnePrefix)
        {
            op.Rep = (byte)(kind is OpKind.Cmps or OpKind.Scas ? 2 : 1);
        }
        else if (ins.HasRepePrefix)
        {
            op.Rep = 1;
        }
        return op.Size is 1 or 2 or 4 or 8;
    }

    private static bool Xmm(Register r, out byte index) => RegisterIn(r, Register.XMM0, Register.XMM15, out index);

    /// <summary>A register of the numbered file <paramref name="first"/>..<paramref name="last"/>: its number in that file.</summary>
    private static bool RegisterIn(Register r, Register first, Register last, out byte index)
    {
        index = NoReg;
        if (r < first || r > last)
        {
            return false;
        }
        index = (byte)(r - first);
        return true;
    }

    /// <summary>Operand 0 is memory (lgdt, ldmxcsr, fxsave, invlpg, ...): its address into <paramref name="op"/>.</summary>
    private static bool MemoryOperand0(in Instruction ins, ref MicroOp op)
    {
        if (ins.Op0Kind != Iced.Intel.OpKind.Memory || !Memory(in ins, ref op))
        {
            return false;
        }
        op.A = Loc.Mem;
        return true;
    }

    /// <summary>An XMM register or memory operand.</summary>
    private static bool SseOperand(in Instruction ins, int i, ref Loc loc, ref byte reg, ref MicroOp op)
    {
        Iced.Intel.OpKind k = ins.GetOpKind(i);
        if (k == OpKind_Register)
        {
            loc = Loc.Reg;
            return Xmm(ins.GetOpRegister(i), out reg);
        }
        if (k == Iced.Intel.OpKind.Memory)
        {
            loc = Loc.Mem;
            return Memory(in ins, ref op);
        }
        return false;
    }

    private static bool Sse(in Instruction ins, ref MicroOp op, OpKind kind, bool aligned)
    {
        if (ins.OpCount != 2 || !SseOperand(in ins, 0, ref op.A, ref op.RegA, ref op) || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
        {
            return false;
        }
        op.Kind = kind;
        op.Size = (byte)(op.A == Loc.Mem || op.B == Loc.Mem ? ins.MemorySize.GetSize() : 16);
        op.Aligned = aligned && op.Size == 16;
        return true;
    }

    private static bool SseImm(in Instruction ins, ref MicroOp op, OpKind kind)
    {
        if (ins.OpCount != 3 || ins.Op2Kind != Iced.Intel.OpKind.Immediate8 || op.A == Loc.Mem)
        {
            return false;
        }
        if (!SseOperand(in ins, 0, ref op.A, ref op.RegA, ref op) || op.A != Loc.Reg || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
        {
            return false;
        }
        op.Kind = kind;
        op.Imm = ins.GetImmediate(2) & 0xFF;
        op.Size = 16;
        op.Aligned = true;
        return true;
    }

    private static bool SseShift(in Instruction ins, ref MicroOp op, OpKind byImm, OpKind byXmm)
    {
        if (ins.OpCount != 2 || ins.Op0Kind != OpKind_Register || !Xmm(ins.Op0Register, out op.RegA))
        {
            return false;
        }
        op.A = Loc.Reg;
        if (ins.Op1Kind == Iced.Intel.OpKind.Immediate8)
        {
            op.Kind = byImm;
            op.B = Loc.Imm;
            op.Imm = ins.GetImmediate(1) & 0xFF;
            op.Size = 16;
            return true;
        }
        if (byXmm == OpKind.Unsupported || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
        {
            return false;
        }
        op.Kind = byXmm;
        op.Size = 16;
        op.Aligned = true;
        return true;
    }

    private static bool SseToGpr(in Instruction ins, ref MicroOp op, OpKind kind)
    {
        if (ins.OpCount != 2 || ins.Op0Kind != OpKind_Register || ins.Op1Kind != OpKind_Register
            || !Gpr(ins.Op0Register, out op.RegA, out int size) || size < 4 || !Xmm(ins.Op1Register, out op.RegB))
        {
            return false;
        }
        op.Kind = kind;
        op.A = Loc.Reg;
        op.B = Loc.Reg;
        op.Size = (byte)size;
        return true;
    }

    private static bool MovdMovq(in Instruction ins, ref MicroOp op)
    {
        if (ins.OpCount != 2)
        {
            return false;
        }
        bool xmm0 = ins.Op0Kind == OpKind_Register && Xmm(ins.Op0Register, out _);
        bool xmm1 = ins.Op1Kind == OpKind_Register && Xmm(ins.Op1Register, out _);
        if (xmm0 && xmm1)
        {
            // movq xmm, xmm: copy the low qword, zero the high one.
            _ = Xmm(ins.Op0Register, out op.RegA);
            _ = Xmm(ins.Op1Register, out op.RegB);
            op.A = Loc.Reg;
            op.B = Loc.Reg;
            op.Kind = OpKind.MovqXX;
            op.Size = 8;
            return true;
        }
        if (xmm0)
        {
            _ = Xmm(ins.Op0Register, out op.RegA);
            op.A = Loc.Reg;
            return MovdGeneral(in ins, ref op, OpKind.MovdToX, 1, ref op.B, ref op.RegB);
        }
        if (xmm1)
        {
            _ = Xmm(ins.Op1Register, out op.RegB);
            op.B = Loc.Reg;
            return MovdGeneral(in ins, ref op, OpKind.MovdFromX, 0, ref op.A, ref op.RegA);
        }
        return false; // MMX forms
    }

    /// <summary>The general-purpose side of movd/movq between an XMM register and r/m32 or r/m64: operand <paramref name="i"/>.</summary>
    private static bool MovdGeneral(in Instruction ins, ref MicroOp op, OpKind kind, int i, ref Loc loc, ref byte reg)
    {
        if (!Operand(in ins, i, ref loc, ref reg, ref op) || loc == Loc.Imm)
        {
            return false;
        }
        op.Kind = kind;
        op.Size = (byte)OperandSize(in ins, i);
        return op.Size is 4 or 8;
    }

    private static bool SseScalarMove(in Instruction ins, ref MicroOp op, int size)
    {
        if (ins.OpCount != 2 || !SseOperand(in ins, 0, ref op.A, ref op.RegA, ref op) || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
        {
            return false;
        }
        op.Size = (byte)size;
        if (op.A == Loc.Mem)
        {
            op.Kind = size == 4 ? OpKind.MovssStore : OpKind.MovsdStore;
        }
        else if (op.B == Loc.Mem)
        {
            op.Kind = size == 4 ? OpKind.MovssLoad : OpKind.MovsdLoad;
        }
        else
        {
            op.Kind = size == 4 ? OpKind.MovssRR : OpKind.MovsdRR;
        }
        return true;
    }
}
