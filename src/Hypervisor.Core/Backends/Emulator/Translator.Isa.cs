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

            // SSSE3
            case Mnemonic.Pshufb: return Vec(in ins, ref op, VecOp.Pshufb, aligned: true);
            case Mnemonic.Palignr: return Vec(in ins, ref op, VecOp.Palignr, aligned: true);
            case Mnemonic.Phaddw: return Vec(in ins, ref op, VecOp.Phaddw, aligned: true);
            case Mnemonic.Phaddd: return Vec(in ins, ref op, VecOp.Phaddd, aligned: true);
            case Mnemonic.Phaddsw: return Vec(in ins, ref op, VecOp.Phaddsw, aligned: true);
            case Mnemonic.Phsubw: return Vec(in ins, ref op, VecOp.Phsubw, aligned: true);
            case Mnemonic.Phsubd: return Vec(in ins, ref op, VecOp.Phsubd, aligned: true);
            case Mnemonic.Phsubsw: return Vec(in ins, ref op, VecOp.Phsubsw, aligned: true);
            case Mnemonic.Pabsb: return Vec(in ins, ref op, VecOp.Pabsb, aligned: true);
            case Mnemonic.Pabsw: return Vec(in ins, ref op, VecOp.Pabsw, aligned: true);
            case Mnemonic.Pabsd: return Vec(in ins, ref op, VecOp.Pabsd, aligned: true);
            case Mnemonic.Pmaddubsw: return Vec(in ins, ref op, VecOp.Pmaddubsw, aligned: true);
            case Mnemonic.Pmulhrsw: return Vec(in ins, ref op, VecOp.Pmulhrsw, aligned: true);
            case Mnemonic.Psignb: return Vec(in ins, ref op, VecOp.Psignb, aligned: true);
            case Mnemonic.Psignw: return Vec(in ins, ref op, VecOp.Psignw, aligned: true);
            case Mnemonic.Psignd: return Vec(in ins, ref op, VecOp.Psignd, aligned: true);

            // SSE4.1 / SSE4.2 integer and shuffles
            case Mnemonic.Blendps: return Vec(in ins, ref op, VecOp.Blendps, aligned: true);
            case Mnemonic.Blendpd: return Vec(in ins, ref op, VecOp.Blendpd, aligned: true);
            case Mnemonic.Pblendw: return Vec(in ins, ref op, VecOp.Pblendw, aligned: true);
            case Mnemonic.Blendvps: return Vec(in ins, ref op, VecOp.Blendvps, aligned: true);
            case Mnemonic.Blendvpd: return Vec(in ins, ref op, VecOp.Blendvpd, aligned: true);
            case Mnemonic.Pblendvb: return Vec(in ins, ref op, VecOp.Pblendvb, aligned: true);
            case Mnemonic.Pminsb: return Vec(in ins, ref op, VecOp.Pminsb, aligned: true);
            case Mnemonic.Pminsd: return Vec(in ins, ref op, VecOp.Pminsd, aligned: true);
            case Mnemonic.Pminuw: return Vec(in ins, ref op, VecOp.Pminuw, aligned: true);
            case Mnemonic.Pminud: return Vec(in ins, ref op, VecOp.Pminud, aligned: true);
            case Mnemonic.Pmaxsb: return Vec(in ins, ref op, VecOp.Pmaxsb, aligned: true);
            case Mnemonic.Pmaxsd: return Vec(in ins, ref op, VecOp.Pmaxsd, aligned: true);
            case Mnemonic.Pmaxuw: return Vec(in ins, ref op, VecOp.Pmaxuw, aligned: true);
            case Mnemonic.Pmaxud: return Vec(in ins, ref op, VecOp.Pmaxud, aligned: true);
            case Mnemonic.Pmovsxbw: return Vec(in ins, ref op, VecOp.Pmovsxbw, aligned: false);
            case Mnemonic.Pmovsxbd: return Vec(in ins, ref op, VecOp.Pmovsxbd, aligned: false);
            case Mnemonic.Pmovsxbq: return Vec(in ins, ref op, VecOp.Pmovsxbq, aligned: false);
            case Mnemonic.Pmovsxwd: return Vec(in ins, ref op, VecOp.Pmovsxwd, aligned: false);
            case Mnemonic.Pmovsxwq: return Vec(in ins, ref op, VecOp.Pmovsxwq, aligned: false);
            case Mnemonic.Pmovsxdq: return Vec(in ins, ref op, VecOp.Pmovsxdq, aligned: false);
            case Mnemonic.Pmovzxbw: return Vec(in ins, ref op, VecOp.Pmovzxbw, aligned: false);
            case Mnemonic.Pmovzxbd: return Vec(in ins, ref op, VecOp.Pmovzxbd, aligned: false);
            case Mnemonic.Pmovzxbq: return Vec(in ins, ref op, VecOp.Pmovzxbq, aligned: false);
            case Mnemonic.Pmovzxwd: return Vec(in ins, ref op, VecOp.Pmovzxwd, aligned: false);
            case Mnemonic.Pmovzxwq: return Vec(in ins, ref op, VecOp.Pmovzxwq, aligned: false);
            case Mnemonic.Pmovzxdq: return Vec(in ins, ref op, VecOp.Pmovzxdq, aligned: false);
            case Mnemonic.Insertps:
                if (!Vec(in ins, ref op, VecOp.Insertps, aligned: false))
                {
                    return false;
                }
                if (op.B == Loc.Mem)
                {
                    op.Imm &= 0x3F; // a memory source is one element, loaded into lane 0
                }
                return true;
            case Mnemonic.Mpsadbw: return Vec(in ins, ref op, VecOp.Mpsadbw, aligned: true);
            case Mnemonic.Packusdw: return Vec(in ins, ref op, VecOp.Packusdw, aligned: true);
            case Mnemonic.Pcmpeqq: return Vec(in ins, ref op, VecOp.Pcmpeqq, aligned: true);
            case Mnemonic.Pcmpgtq: return Vec(in ins, ref op, VecOp.Pcmpgtq, aligned: true);
            case Mnemonic.Pmuldq: return Vec(in ins, ref op, VecOp.Pmuldq, aligned: true);
            case Mnemonic.Pmulld: return Vec(in ins, ref op, VecOp.Pmulld, aligned: true);
            case Mnemonic.Phminposuw: return Vec(in ins, ref op, VecOp.Phminposuw, aligned: true);
            case Mnemonic.Movntdqa: return Sse(in ins, ref op, OpKind.MovX128, aligned: true) && op.B == Loc.Mem;
            case Mnemonic.Pextrb: return Lane(in ins, ref op, 1, insert: false);
            case Mnemonic.Pextrw: return Lane(in ins, ref op, 2, insert: false);
            case Mnemonic.Pextrd: case Mnemonic.Extractps: return Lane(in ins, ref op, 4, insert: false);
            case Mnemonic.Pextrq: return Lane(in ins, ref op, 8, insert: false);
            case Mnemonic.Pinsrb: return Lane(in ins, ref op, 1, insert: true);
            case Mnemonic.Pinsrd: return Lane(in ins, ref op, 4, insert: true);
            case Mnemonic.Pinsrq: return Lane(in ins, ref op, 8, insert: true);
            case Mnemonic.Ptest:
                return Sse(in ins, ref op, OpKind.Ptest, aligned: true);
            case Mnemonic.Pcmpestri: case Mnemonic.Pcmpestri64: case Mnemonic.Pcmpestrm: case Mnemonic.Pcmpestrm64:
            case Mnemonic.Pcmpistri: case Mnemonic.Pcmpistrm:
                if (!SseFpImm(in ins, ref op, OpKind.PcmpStr, SseShape.Ps))
                {
                    return false;
                }
                op.Aligned = false; // the string instructions take unaligned memory operands
                op.Cond = m switch
                {
                    Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 => 0,
                    Mnemonic.Pcmpestrm or Mnemonic.Pcmpestrm64 => 1,
                    Mnemonic.Pcmpistri => 2,
                    _ => 3,
                };
                op.Rep = (byte)(m is Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64 ? 1 : 0);
                return true;
            case Mnemonic.Crc32:
                if (ins.OpCount != 2 || ins.Op0Kind != OpKind_Register || !Gpr(ins.Op0Register, out op.RegA, out int crcSize)
                    || !Operand(in ins, 1, ref op.B, ref op.RegB, ref op) || op.B == Loc.Imm)
                {
                    return false;
                }
                op.Kind = OpKind.Crc32;
                op.A = Loc.Reg;
                op.Size = (byte)crcSize;
                op.Size2 = (byte)OperandSize(in ins, 1);
                return true;
            case Mnemonic.Maskmovdqu:
                // The implicit destination DS:rDI: 0x67 selects edi, an FS/GS override adds that segment's base.
                if (ins.OpCount != 3 || ins.Op0Kind is not (Iced.Intel.OpKind.MemorySegRDI or Iced.Intel.OpKind.MemorySegEDI)
                    || !Xmm(ins.Op1Register, out op.RegA) || !Xmm(ins.Op2Register, out op.RegB))
                {
                    return false;
                }
                op.Kind = OpKind.Maskmovdqu;
                op.Addr32 = ins.Op0Kind == Iced.Intel.OpKind.MemorySegEDI;
                op.Seg = ins.MemorySegment == Register.FS ? MicroOp.SegFs : ins.MemorySegment == Register.GS ? MicroOp.SegGs : (byte)0;
                return true;

            // MXCSR and state
            case Mnemonic.Ldmxcsr:
            case Mnemonic.Stmxcsr:
                return MemoryOperand0(in ins, ref op) && Fixed(ref op, m == Mnemonic.Ldmxcsr ? OpKind.Ldmxcsr : OpKind.Stmxcsr, 4);
            case Mnemonic.Fxsave: case Mnemonic.Fxsave64: case Mnemonic.Fxrstor: case Mnemonic.Fxrstor64:
                if (!MemoryOperand0(in ins, ref op))
                {
                    return false;
                }
                op.Kind = m is Mnemonic.Fxsave or Mnemonic.Fxsave64 ? OpKind.Fxsave : OpKind.Fxrstor;
                op.Aligned = true;
                return true;

            // BMI2, ADX, MOVBE (RDTSCP is a system op: Translator.System.cs)
            case Mnemonic.Bzhi: return Bmi2(in ins, ref op, Bmi2Op.Bzhi, vvvvOperand: 2, rmOperand: 1);
            case Mnemonic.Pdep: return Bmi2(in ins, ref op, Bmi2Op.Pdep, vvvvOperand: 1, rmOperand: 2);
            case Mnemonic.Pext: return Bmi2(in ins, ref op, Bmi2Op.Pext, vvvvOperand: 1, rmOperand: 2);
            case Mnemonic.Mulx: return Bmi2(in ins, ref op, Bmi2Op.Mulx, vvvvOperand: 1, rmOperand: 2);
            case Mnemonic.Sarx: return Bmi2(in ins, ref op, Bmi2Op.Sarx, vvvvOperand: 2, rmOperand: 1);
            case Mnemonic.Shlx: return Bmi2(in ins, ref op, Bmi2Op.Shlx, vvvvOperand: 2, rmOperand: 1);
            case Mnemonic.Shrx: return Bmi2(in ins, ref op, Bmi2Op.Shrx, vvvvOperand: 2, rmOperand: 1);
            case Mnemonic.Rorx:
                if (!Bmi2(in ins, ref op, Bmi2Op.Rorx, vvvvOperand: -1, rmOperand: 1))
                {
                    return false;
                }
                op.Imm = ins.GetImmediate(2) & 0xFF;
                return true;
            case Mnemonic.Adcx:
            case Mnemonic.Adox:
                if (!Binary(in ins, ref op, OpKind.AddCarryX) || op.A != Loc.Reg || op.Size < 4)
                {
                    return false;
                }
                op.Cond = (byte)(m == Mnemonic.Adox ? 1 : 0);
                return true;
            case Mnemonic.Movbe:
                return Binary(in ins, ref op, OpKind.Movbe) && op.Size >= 2 && op.B != Loc.Imm;

            // Instructions of features this CPU model does not have (CPUID says so) are #UD (ud0/ud1/ud2 are caught by Decode).
            default:
                if (TranslateX87(in ins, ref op))
                {
                    return true;
                }
                if (IsAbsentFeature(in ins))
                {
                    op = default;
                    op.Kind = OpKind.Undefined;
                    return true;
                }
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

    /// <summary>A flagless vector op: xmm, xmm/mem (, imm8 or the implicit XMM0 of blendv*).</summary>
    private static bool Vec(in Instruction ins, ref MicroOp op, VecOp vecOp, bool aligned)
    {
        if (ins.OpCount < 2 || ins.OpCount > 3 || ins.Op0Kind != OpKind_Register || !Xmm(ins.Op0Register, out op.RegA)
            || !SseOperand(in ins, 1, ref op.B, ref op.RegB, ref op))
        {
            return false;
        }
        if (ins.OpCount == 3)
        {
            if (ins.Op2Kind == Iced.Intel.OpKind.Immediate8)
            {
                op.Imm = ins.GetImmediate(2) & 0xFF;
            }
            else if (ins.Op2Kind != OpKind_Register || ins.Op2Register != Register.XMM0)
            {
                return false;
            }
        }
        op.Kind = OpKind.VecBinary;
        op.A = Loc.Reg;
        op.Cond = (byte)vecOp;
        op.Size = (byte)(op.B == Loc.Mem ? ins.MemorySize.GetSize() : 16);
        op.Aligned = aligned && op.Size == 16;
        return true;
    }

    /// <summary>
    /// One element between an xmm register and r/m, imm8 choosing it: pextrb/w/d/q and extractps (r/m, xmm, imm8) or,
    /// when <paramref name="insert"/>, pinsrb/d/q (xmm, r/m, imm8). The xmm register is always the op's Reg side
    /// (B when extracting, A when inserting), the r/m the other.
    /// </summary>
    private static bool Lane(in Instruction ins, ref MicroOp op, int elementSize, bool insert)
    {
        int xmmOperand = insert ? 0 : 1;
        ref Loc rm = ref insert ? ref op.B : ref op.A;
        ref byte rmReg = ref insert ? ref op.RegB : ref op.RegA;
        ref byte xmm = ref insert ? ref op.RegA : ref op.RegB;
        if (ins.OpCount != 3 || ins.Op2Kind != Iced.Intel.OpKind.Immediate8 || ins.GetOpKind(xmmOperand) != OpKind_Register
            || !Xmm(ins.GetOpRegister(xmmOperand), out xmm) || !Operand(in ins, 1 - xmmOperand, ref rm, ref rmReg, ref op) || rm == Loc.Imm)
        {
            return false;
        }
        op.Kind = insert ? OpKind.VecInsert : OpKind.VecExtract;
        (insert ? ref op.A : ref op.B) = Loc.Reg;
        op.Size = (byte)elementSize;
        if (!insert)
        {
            op.Size2 = (byte)(op.A == Loc.Reg ? ins.Op0Register.GetSize() : elementSize);
        }
        op.Imm = ins.GetImmediate(2) & (ulong)((16 / elementSize) - 1);
        return true;
    }

    /// <summary>bzhi/pdep/pext/mulx/sarx/shlx/shrx/rorx: destination, the VEX.vvvv register and the r/m operand.</summary>
    private static bool Bmi2(in Instruction ins, ref MicroOp op, Bmi2Op bmi, int vvvvOperand, int rmOperand)
    {
        if (ins.OpCount != 3 || ins.Op0Kind != OpKind_Register || !Gpr(ins.Op0Register, out op.RegA, out int size) || size < 4
            || !Operand(in ins, rmOperand, ref op.B, ref op.RegB, ref op) || op.B == Loc.Imm)
        {
            return false;
        }
        if (vvvvOperand >= 0 && !Gpr(ins.GetOpRegister(vvvvOperand), out op.RegC, out _))
        {
            return false;
        }
        op.Kind = OpKind.Bmi2;
        op.A = Loc.Reg;
        op.Cond = (byte)bmi;
        op.Size = (byte)size;
        return true;
    }

    /// <summary>
    /// Instructions of ISA extensions this CPU model does not have (its CPUID does not advertise them): they raise #UD
    /// as on such a processor. AVX and its successors also require OS-enabled XSAVE state, which is absent too.
    /// MMX is not among them: it is part of x86-64, so an MMX instruction is an emulator gap (unsupported), not a guest error.
    /// </summary>
    private static bool IsAbsentFeature(in Instruction ins)
    {
        if (ins.Encoding is EncodingKind.VEX or EncodingKind.EVEX or EncodingKind.XOP or EncodingKind.D3NOW or EncodingKind.MVEX)
        {
            return true; // BMI1/BMI2 (the only VEX forms this model has) are decoded before this
        }
        foreach (CpuidFeature f in ins.Code.CpuidFeatures())
        {
            switch (f)
            {
                case CpuidFeature.XSAVE: case CpuidFeature.XSAVEC: case CpuidFeature.XSAVEOPT: case CpuidFeature.XSAVES:
                case CpuidFeature.RDRAND: case CpuidFeature.RDSEED: case CpuidFeature.PCLMULQDQ: case CpuidFeature.AES:
                case CpuidFeature.SHA: case CpuidFeature.SSE4A: case CpuidFeature.D3NOW: case CpuidFeature.D3NOWEXT:
                case CpuidFeature.GFNI: case CpuidFeature.CLWB: case CpuidFeature.CLZERO: case CpuidFeature.RDPID:
                case CpuidFeature.MONITOR: case CpuidFeature.MONITORX: case CpuidFeature.WAITPKG: case CpuidFeature.SERIALIZE:
                case CpuidFeature.MOVDIRI: case CpuidFeature.MOVDIR64B:
                    return true;
                default:
                    break;
            }
        }
        return false;
    }
}
