using Iced.Intel;
using Paravirt.Hypervisor.Backends.Emulator.Semantics;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>Decoding of the ISA extensions (SSE floating point and MXCSR, SSE3..SSE4.2, x87, BMI2, ...) into <see cref="MicroOp"/>s.</summary>
internal static partial class Translator
{
    private static bool TranslateIsa(in Instruction ins, ref MicroOp op)
    {
        Mnemonic m = ins.Mnemonic;
        switch (m)
        {
            // SSE/SSE2 arithmetic
            case Mnemonic.Addss: return SseFp(in ins, ref op, SseOp.Add, SseShape.Ss);
            case Mnemonic.Addsd: return SseFp(in ins, ref op, SseOp.Add, SseShape.Sd);
            case Mnemonic.Addps: return SseFp(in ins, ref op, SseOp.Add, SseShape.Ps);
            case Mnemonic.Addpd: return SseFp(in ins, ref op, SseOp.Add, SseShape.Pd);
            case Mnemonic.Subss: return SseFp(in ins, ref op, SseOp.Sub, SseShape.Ss);
            case Mnemonic.Subsd: return SseFp(in ins, ref op, SseOp.Sub, SseShape.Sd);
            case Mnemonic.Subps: return SseFp(in ins, ref op, SseOp.Sub, SseShape.Ps);
            case Mnemonic.Subpd: return SseFp(in ins, ref op, SseOp.Sub, SseShape.Pd);
            case Mnemonic.Mulss: return SseFp(in ins, ref op, SseOp.Mul, SseShape.Ss);
            case Mnemonic.Mulsd: return SseFp(in ins, ref op, SseOp.Mul, SseShape.Sd);
            case Mnemonic.Mulps: return SseFp(in ins, ref op, SseOp.Mul, SseShape.Ps);
            case Mnemonic.Mulpd: return SseFp(in ins, ref op, SseOp.Mul, SseShape.Pd);
            case Mnemonic.Divss: return SseFp(in ins, ref op, SseOp.Div, SseShape.Ss);
            case Mnemonic.Divsd: return SseFp(in ins, ref op, SseOp.Div, SseShape.Sd);
            case Mnemonic.Divps: return SseFp(in ins, ref op, SseOp.Div, SseShape.Ps);
            case Mnemonic.Divpd: return SseFp(in ins, ref op, SseOp.Div, SseShape.Pd);
            case Mnemonic.Minss: return SseFp(in ins, ref op, SseOp.Min, SseShape.Ss);
            case Mnemonic.Minsd: return SseFp(in ins, ref op, SseOp.Min, SseShape.Sd);
            case Mnemonic.Minps: return SseFp(in ins, ref op, SseOp.Min, SseShape.Ps);
            case Mnemonic.Minpd: return SseFp(in ins, ref op, SseOp.Min, SseShape.Pd);
            case Mnemonic.Maxss: return SseFp(in ins, ref op, SseOp.Max, SseShape.Ss);
            case Mnemonic.Maxsd: return SseFp(in ins, ref op, SseOp.Max, SseShape.Sd);
            case Mnemonic.Maxps: return SseFp(in ins, ref op, SseOp.Max, SseShape.Ps);
            case Mnemonic.Maxpd: return SseFp(in ins, ref op, SseOp.Max, SseShape.Pd);
            case Mnemonic.Sqrtss: return SseFp(in ins, ref op, SseOp.Sqrt, SseShape.Ss);
            case Mnemonic.Sqrtsd: return SseFp(in ins, ref op, SseOp.Sqrt, SseShape.Sd);
            case Mnemonic.Sqrtps: return SseFp(in ins, ref op, SseOp.Sqrt, SseShape.Ps);
            case Mnemonic.Sqrtpd: return SseFp(in ins, ref op, SseOp.Sqrt, SseShape.Pd);
            case Mnemonic.Cmpss: return SseFpImm(in ins, ref op, OpKind.SseCompare, SseShape.Ss);
            case Mnemonic.Cmpsd: return SseFpImm(in ins, ref op, OpKind.SseCompare, SseShape.Sd);
            case Mnemonic.Cmpps: return SseFpImm(in ins, ref op, OpKind.SseCompare, SseShape.Ps);
            case Mnemonic.Cmppd: return SseFpImm(in ins, ref op, OpKind.SseCompare, SseShape.Pd);
            case Mnemonic.Comiss: case Mnemonic.Comisd: case Mnemonic.Ucomiss: case Mnemonic.Ucomisd:
                if (!Sse(in ins, ref op, OpKind.SseComi, aligned: false))
                {
                    return false;
                }
                op.Cond = (byte)(m is Mnemonic.Comiss or Mnemonic.Comisd ? 1 : 0);
                op.Size2 = (byte)(m is Mnemonic.Comisd or Mnemonic.Ucomisd ? 1 : 0);
                return true;
            case Mnemonic.Rcpss: return SseApprox(in ins, ref op, false, SseShape.Ss);
            case Mnemonic.Rcpps: return SseApprox(in ins, ref op, false, SseShape.Ps);
            case Mnemonic.Rsqrtss: return SseApprox(in ins, ref op, true, SseShape.Ss);
            case Mnemonic.Rsqrtps: return SseApprox(in ins, ref op, true, SseShape.Ps);

            // conversions
            case Mnemonic.Cvtsi2ss:
            case Mnemonic.Cvtsi2sd:
                if (ins.OpCount != 2 || ins.Op0Kind != OpKind_Register || !Xmm(ins.Op0Register, out op.RegA)
                    || !Operand(in ins, 1, ref op.B, ref op.RegB, ref op) || op.B == Loc.Imm)
                {
                    return false;
                }
                op.Kind = OpKind.CvtIntToFp;
                op.A = Loc.Reg;
                op.Size = (byte)OperandSize(in ins, 1);
                op.Size2 = (byte)(m == Mnemonic.Cvtsi2sd ? 1 : 0);
                return op.Size is 4 or 8;
            case Mnemonic.Cvtss2si: case Mnemonic.Cvtsd2si: case Mnemonic.Cvttss2si: case Mnemonic.Cvttsd2si:
                if (ins.OpCount != 2 || ins.Op0Kind != OpKind_Register || !Gpr(ins.Op0Register, out op.RegA, out int isize) || isize < 4
                    || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
                {
                    return false;
                }
                op.Kind = OpKind.CvtFpToInt;
                op.A = Loc.Reg;
                op.Size = (byte)isize;
                op.Size2 = (byte)(m is Mnemonic.Cvtsd2si or Mnemonic.Cvttsd2si ? 1 : 0);
                op.Cond = (byte)(m is Mnemonic.Cvttss2si or Mnemonic.Cvttsd2si ? 1 : 0);
                return true;
            case Mnemonic.Cvtss2sd: return Cvt(in ins, ref op, CvtKind.Ss2Sd);
            case Mnemonic.Cvtsd2ss: return Cvt(in ins, ref op, CvtKind.Sd2Ss);
            case Mnemonic.Cvtps2pd: return Cvt(in ins, ref op, CvtKind.Ps2Pd);
            case Mnemonic.Cvtpd2ps: return Cvt(in ins, ref op, CvtKind.Pd2Ps);
            case Mnemonic.Cvtdq2ps: return Cvt(in ins, ref op, CvtKind.Dq2Ps);
            case Mnemonic.Cvtdq2pd: return Cvt(in ins, ref op, CvtKind.Dq2Pd);
            case Mnemonic.Cvtps2dq: return Cvt(in ins, ref op, CvtKind.Ps2Dq);
            case Mnemonic.Cvttps2dq: return Cvt(in ins, ref op, CvtKind.Tps2Dq);
            case Mnemonic.Cvtpd2dq: return Cvt(in ins, ref op, CvtKind.Pd2Dq);
            case Mnemonic.Cvttpd2dq: return Cvt(in ins, ref op, CvtKind.Tpd2Dq);

            // SSE3 / SSE4.1 floating point
            case Mnemonic.Addsubps: return SseHorizontal(in ins, ref op, 0, false);
            case Mnemonic.Addsubpd: return SseHorizontal(in ins, ref op, 0, true);
            case Mnemonic.Haddps: return SseHorizontal(in ins, ref op, 1, false);
            case Mnemonic.Haddpd: return SseHorizontal(in ins, ref op, 1, true);
            case Mnemonic.Hsubps: return SseHorizontal(in ins, ref op, 2, false);
            case Mnemonic.Hsubpd: return SseHorizontal(in ins, ref op, 2, true);
            case Mnemonic.Roundss: return SseFpImm(in ins, ref op, OpKind.SseRound, SseShape.Ss);
            case Mnemonic.Roundsd: return SseFpImm(in ins, ref op, OpKind.SseRound, SseShape.Sd);
            case Mnemonic.Roundps: return SseFpImm(in ins, ref op, OpKind.SseRound, SseShape.Ps);
            case Mnemonic.Roundpd: return SseFpImm(in ins, ref op, OpKind.SseRound, SseShape.Pd);
            case Mnemonic.Dpps: return SseFpImm(in ins, ref op, OpKind.SseDot, SseShape.Ps);
            case Mnemonic.Dppd: return SseFpImm(in ins, ref op, OpKind.SseDot, SseShape.Pd);

            // shuffles and moves
            case Mnemonic.Shufpd: return Vec(in ins, ref op, VecOp.Shufpd, aligned: true);
            case Mnemonic.Movddup: return Vec(in ins, ref op, VecOp.Movddup, aligned: true);
            case Mnemonic.Movshdup: return Vec(in ins, ref op, VecOp.Movshdup, aligned: true);
            case Mnemonic.Movsldup: return Vec(in ins, ref op, VecOp.Movsldup, aligned: true);
            case Mnemonic.Lddqu: return Sse(in ins, ref op, OpKind.MovX128, aligned: false);

            // MXCSR and state
            case Mnemonic.Ldmxcsr:
            case Mnemonic.Stmxcsr:
                if (ins.Op0Kind != Iced.Intel.OpKind.Memory || !Memory(in ins, ref op))
                {
                    return false;
                }
                op.Kind = m == Mnemonic.Ldmxcsr ? OpKind.Ldmxcsr : OpKind.Stmxcsr;
                op.A = Loc.Mem;
                op.Size = 4;
                return true;
            case Mnemonic.Fxsave: case Mnemonic.Fxsave64: case Mnemonic.Fxrstor: case Mnemonic.Fxrstor64:
                if (ins.Op0Kind != Iced.Intel.OpKind.Memory || !Memory(in ins, ref op))
                {
                    return false;
                }
                op.Kind = m is Mnemonic.Fxsave or Mnemonic.Fxsave64 ? OpKind.Fxsave : OpKind.Fxrstor;
                op.A = Loc.Mem;
                op.Aligned = true;
                return true;

            // #UD: undefined opcodes, and instructions of features this CPU model does not have (CPUID says so).
            case Mnemonic.Ud0: case Mnemonic.Ud1: case Mnemonic.Ud2:
                op.Kind = OpKind.Undefined;
                return true;
            default:
                return false;
        }
    }

    private static bool SseFp(in Instruction ins, ref MicroOp op, SseOp sseOp, SseShape shape)
    {
        if (!Sse(in ins, ref op, OpKind.SseArith, aligned: true) || op.A != Loc.Reg)
        {
            return false;
        }
        op.Cond = (byte)sseOp;
        op.Size2 = (byte)shape;
        return true;
    }

    /// <summary>xmm, xmm/mem, imm8 forms whose shape matters (cmp*, round*, dp*).</summary>
    private static bool SseFpImm(in Instruction ins, ref MicroOp op, OpKind kind, SseShape shape)
    {
        if (ins.OpCount != 3 || ins.Op2Kind != Iced.Intel.OpKind.Immediate8 || ins.Op0Kind != OpKind_Register || !Xmm(ins.Op0Register, out op.RegA)
            || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
        {
            return false;
        }
        op.Kind = kind;
        op.A = Loc.Reg;
        op.Size = (byte)(op.B == Loc.Mem ? ins.MemorySize.GetSize() : 16);
        op.Aligned = op.Size == 16;
        op.Size2 = (byte)shape;
        op.Imm = ins.GetImmediate(2) & 0xFF;
        return true;
    }

    private static bool SseApprox(in Instruction ins, ref MicroOp op, bool sqrt, SseShape shape)
    {
        if (!Sse(in ins, ref op, OpKind.SseApprox, aligned: true) || op.A != Loc.Reg)
        {
            return false;
        }
        op.Cond = (byte)(sqrt ? 1 : 0);
        op.Size2 = (byte)shape;
        return true;
    }

    private static bool Cvt(in Instruction ins, ref MicroOp op, CvtKind kind)
    {
        if (!Sse(in ins, ref op, OpKind.CvtVector, aligned: true) || op.A != Loc.Reg)
        {
            return false;
        }
        op.Cond = (byte)kind;
        return true;
    }

    private static bool SseHorizontal(in Instruction ins, ref MicroOp op, int kind, bool dbl)
    {
        if (!Sse(in ins, ref op, OpKind.SseHorizontal, aligned: true) || op.A != Loc.Reg)
        {
            return false;
        }
        op.Cond = (byte)kind;
        op.Size2 = (byte)(dbl ? 1 : 0);
        return true;
    }

    /// <summary>A flagless vector op: xmm, xmm/mem (, imm8).</summary>
    private static bool Vec(in Instruction ins, ref MicroOp op, VecOp vecOp, bool aligned)
    {
        if (ins.OpCount < 2 || ins.OpCount > 3 || ins.Op0Kind != OpKind_Register || !Xmm(ins.Op0Register, out op.RegA)
            || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
        {
            return false;
        }
        if (ins.OpCount == 3)
        {
            if (ins.Op2Kind != Iced.Intel.OpKind.Immediate8)
            {
                return false;
            }
            op.Imm = ins.GetImmediate(2) & 0xFF;
        }
        op.Kind = OpKind.VecBinary;
        op.A = Loc.Reg;
        op.Cond = (byte)vecOp;
        op.Size = (byte)(op.B == Loc.Mem ? ins.MemorySize.GetSize() : 16);
        op.Aligned = aligned && op.Size == 16;
        return true;
    }
}
