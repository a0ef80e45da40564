using Iced.Intel;
using Paravirt.Hypervisor.Backends.Emulator.Semantics;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>Decoding of the x87 instructions.</summary>
internal static partial class Translator
{
    private static bool TranslateX87(in Instruction ins, ref MicroOp op)
    {
        Mnemonic m = ins.Mnemonic;
        switch (m)
        {
            case Mnemonic.Fadd: return X87Arith(in ins, ref op, X87ArithOp.Add, 0);
            case Mnemonic.Faddp: return X87Arith(in ins, ref op, X87ArithOp.Add, 1);
            case Mnemonic.Fiadd: return X87Arith(in ins, ref op, X87ArithOp.Add, 0);
            case Mnemonic.Fmul: case Mnemonic.Fimul: return X87Arith(in ins, ref op, X87ArithOp.Mul, 0);
            case Mnemonic.Fmulp: return X87Arith(in ins, ref op, X87ArithOp.Mul, 1);
            case Mnemonic.Fsub: case Mnemonic.Fisub: return X87Arith(in ins, ref op, X87ArithOp.Sub, 0);
            case Mnemonic.Fsubp: return X87Arith(in ins, ref op, X87ArithOp.Sub, 1);
            case Mnemonic.Fsubr: case Mnemonic.Fisubr: return X87Arith(in ins, ref op, X87ArithOp.Subr, 0);
            case Mnemonic.Fsubrp: return X87Arith(in ins, ref op, X87ArithOp.Subr, 1);
            case Mnemonic.Fdiv: case Mnemonic.Fidiv: return X87Arith(in ins, ref op, X87ArithOp.Div, 0);
            case Mnemonic.Fdivp: return X87Arith(in ins, ref op, X87ArithOp.Div, 1);
            case Mnemonic.Fdivr: case Mnemonic.Fidivr: return X87Arith(in ins, ref op, X87ArithOp.Divr, 0);
            case Mnemonic.Fdivrp: return X87Arith(in ins, ref op, X87ArithOp.Divr, 1);

            case Mnemonic.Fcom: case Mnemonic.Ficom: return X87Compare(in ins, ref op, quiet: false, 0);
            case Mnemonic.Fcomp: case Mnemonic.Ficomp: return X87Compare(in ins, ref op, quiet: false, 1);
            case Mnemonic.Fcompp: return X87Compare(in ins, ref op, quiet: false, 2);
            case Mnemonic.Fucom: return X87Compare(in ins, ref op, quiet: true, 0);
            case Mnemonic.Fucomp: return X87Compare(in ins, ref op, quiet: true, 1);
            case Mnemonic.Fucompp: return X87Compare(in ins, ref op, quiet: true, 2);
            case Mnemonic.Fcomi: case Mnemonic.Fcomip: case Mnemonic.Fucomi: case Mnemonic.Fucomip:
                if (ins.OpCount != 2 || !St(ins.Op1Register, out op.RegB))
                {
                    return false;
                }
                op.Kind = OpKind.X87CompareFlags;
                op.B = Loc.Reg;
                op.Cond = (byte)(m is Mnemonic.Fucomi or Mnemonic.Fucomip ? 1 : 0);
                op.Rep = (byte)(m is Mnemonic.Fcomip or Mnemonic.Fucomip ? 1 : 0);
                return true;

            case Mnemonic.Fld:
            case Mnemonic.Fild:
                op.Kind = OpKind.X87Load;
                return X87Operand0(in ins, ref op, ref op.B, ref op.RegB);
            case Mnemonic.Fld1: return X87Constant(ref op, Semantics.X87Constant.One);
            case Mnemonic.Fldl2t: return X87Constant(ref op, Semantics.X87Constant.L2T);
            case Mnemonic.Fldl2e: return X87Constant(ref op, Semantics.X87Constant.L2E);
            case Mnemonic.Fldpi: return X87Constant(ref op, Semantics.X87Constant.Pi);
            case Mnemonic.Fldlg2: return X87Constant(ref op, Semantics.X87Constant.LG2);
            case Mnemonic.Fldln2: return X87Constant(ref op, Semantics.X87Constant.LN2);
            case Mnemonic.Fldz: return X87Constant(ref op, Semantics.X87Constant.Zero);

            case Mnemonic.Fst: case Mnemonic.Fist:
            case Mnemonic.Fstp: case Mnemonic.Fstpnce: case Mnemonic.Fistp: case Mnemonic.Fisttp:
                op.Kind = OpKind.X87Store;
                op.Rep = (byte)(m is Mnemonic.Fst or Mnemonic.Fist ? 0 : 1);
                op.Cond = (byte)(m == Mnemonic.Fisttp ? 1 : m == Mnemonic.Fstpnce ? 2 : 0);
                return X87Operand0(in ins, ref op, ref op.A, ref op.RegA);

            case Mnemonic.Fchs: return X87Unary(ref op, Semantics.X87Unary.Chs);
            case Mnemonic.Fabs: return X87Unary(ref op, Semantics.X87Unary.Abs);
            case Mnemonic.Ftst: return X87Unary(ref op, Semantics.X87Unary.Tst);
            case Mnemonic.Fxam: return X87Unary(ref op, Semantics.X87Unary.Xam);
            case Mnemonic.F2xm1: return X87Unary(ref op, Semantics.X87Unary.F2xm1);
            case Mnemonic.Fyl2x: return X87Unary(ref op, Semantics.X87Unary.Fyl2x);
            case Mnemonic.Fptan: return X87Unary(ref op, Semantics.X87Unary.Fptan);
            case Mnemonic.Fpatan: return X87Unary(ref op, Semantics.X87Unary.Fpatan);
            case Mnemonic.Fxtract: return X87Unary(ref op, Semantics.X87Unary.Fxtract);
            case Mnemonic.Fprem1: return X87Unary(ref op, Semantics.X87Unary.Fprem1);
            case Mnemonic.Fdecstp: return X87Unary(ref op, Semantics.X87Unary.Fdecstp);
            case Mnemonic.Fincstp: return X87Unary(ref op, Semantics.X87Unary.Fincstp);
            case Mnemonic.Fprem: return X87Unary(ref op, Semantics.X87Unary.Fprem);
            case Mnemonic.Fyl2xp1: return X87Unary(ref op, Semantics.X87Unary.Fyl2xp1);
            case Mnemonic.Fsqrt: return X87Unary(ref op, Semantics.X87Unary.Fsqrt);
            case Mnemonic.Fsincos: return X87Unary(ref op, Semantics.X87Unary.Fsincos);
            case Mnemonic.Frndint: return X87Unary(ref op, Semantics.X87Unary.Frndint);
            case Mnemonic.Fscale: return X87Unary(ref op, Semantics.X87Unary.Fscale);
            case Mnemonic.Fsin: return X87Unary(ref op, Semantics.X87Unary.Fsin);
            case Mnemonic.Fcos: return X87Unary(ref op, Semantics.X87Unary.Fcos);

            case Mnemonic.Fcmovb: return X87Fcmov(in ins, ref op, 0x2);
            case Mnemonic.Fcmovnb: return X87Fcmov(in ins, ref op, 0x3);
            case Mnemonic.Fcmove: return X87Fcmov(in ins, ref op, 0x4);
            case Mnemonic.Fcmovne: return X87Fcmov(in ins, ref op, 0x5);
            case Mnemonic.Fcmovbe: return X87Fcmov(in ins, ref op, 0x6);
            case Mnemonic.Fcmovnbe: return X87Fcmov(in ins, ref op, 0x7);
            case Mnemonic.Fcmovu: return X87Fcmov(in ins, ref op, 0xA);
            case Mnemonic.Fcmovnu: return X87Fcmov(in ins, ref op, 0xB);

            case Mnemonic.Fxch:
            case Mnemonic.Ffree:
            case Mnemonic.Ffreep:
            {
                Register r = ins.OpCount == 2 ? ins.Op1Register : ins.Op0Register;
                if (!St(r, out op.RegB))
                {
                    return false;
                }
                op.B = Loc.Reg;
                return X87Control(ref op, m switch { Mnemonic.Fxch => Semantics.X87Control.Fxch, Mnemonic.Ffree => Semantics.X87Control.Ffree, _ => Semantics.X87Control.Ffreep }, waits: true);
            }
            case Mnemonic.Fnop: return X87Control(ref op, Semantics.X87Control.Fnop, waits: true);
            case Mnemonic.Wait: return X87Control(ref op, Semantics.X87Control.Fwait, waits: true);
            case Mnemonic.Fneni: case Mnemonic.Fndisi: case Mnemonic.Fnsetpm:
                return X87Control(ref op, Semantics.X87Control.Fnop, waits: false); // 8087/80287 controls: no-ops since the 387
            case Mnemonic.Feni: case Mnemonic.Fdisi: case Mnemonic.Fsetpm:
                return X87Control(ref op, Semantics.X87Control.Fnop, waits: true);
            case Mnemonic.Fnclex: case Mnemonic.Fclex: return X87Control(ref op, Semantics.X87Control.Fnclex, waits: m == Mnemonic.Fclex);
            case Mnemonic.Fninit: case Mnemonic.Finit: return X87Control(ref op, Semantics.X87Control.Fninit, waits: m == Mnemonic.Finit);
            case Mnemonic.Fnstsw: case Mnemonic.Fstsw:
                if (ins.Op0Kind == OpKind_Register)
                {
                    return ins.Op0Register == Register.AX && X87Control(ref op, Semantics.X87Control.FnstswAx, waits: m == Mnemonic.Fstsw);
                }
                return X87ControlMemory(in ins, ref op, Semantics.X87Control.FnstswMemory, waits: m == Mnemonic.Fstsw);
            case Mnemonic.Fldcw: return X87ControlMemory(in ins, ref op, Semantics.X87Control.Fldcw, waits: true);
            case Mnemonic.Fnstcw: case Mnemonic.Fstcw: return X87ControlMemory(in ins, ref op, Semantics.X87Control.Fnstcw, waits: m == Mnemonic.Fstcw);
            case Mnemonic.Fnstenv: case Mnemonic.Fstenv: return X87ControlMemory(in ins, ref op, Semantics.X87Control.Fnstenv, waits: m == Mnemonic.Fstenv);
            case Mnemonic.Fldenv: return X87ControlMemory(in ins, ref op, Semantics.X87Control.Fldenv, waits: true);
            case Mnemonic.Fnsave: case Mnemonic.Fsave: return X87ControlMemory(in ins, ref op, Semantics.X87Control.Fnsave, waits: m == Mnemonic.Fsave);
            case Mnemonic.Frstor: return X87ControlMemory(in ins, ref op, Semantics.X87Control.Frstor, waits: true);
            default:
                return false;
        }
    }

    /// <summary>ST(i) register: its index.</summary>
    /// <summary>Operand 0 of fld/fst: ST(i) or memory, into the slot <paramref name="loc"/>/<paramref name="reg"/>.</summary>
    private static bool X87Operand0(in Instruction ins, ref MicroOp op, ref Loc loc, ref byte reg)
    {
        if (ins.Op0Kind == OpKind_Register)
        {
            loc = Loc.Reg;
            return St(ins.Op0Register, out reg);
        }
        return X87Memory(in ins, ref op, ref loc);
    }

    private static bool St(Register r, out byte index) => RegisterIn(r, Register.ST0, Register.ST7, out index);

    private static bool X87Memory(in Instruction ins, ref MicroOp op, ref Loc loc)
    {
        if (!Memory(in ins, ref op))
        {
            return false;
        }
        loc = Loc.Mem;
        MemorySize ms = ins.MemorySize;
        (X87Format format, int size) = ms switch
        {
            MemorySize.Float32 => (X87Format.F32, 4),
            MemorySize.Float64 => (X87Format.F64, 8),
            MemorySize.Float80 => (X87Format.F80, 10),
            MemorySize.Int16 => (X87Format.I16, 2),
            MemorySize.Int32 => (X87Format.I32, 4),
            MemorySize.Int64 => (X87Format.I64, 8),
            _ => (X87Format.Stack, 0),
        };
        op.Size2 = (byte)format;
        op.Size = (byte)size;
        return size != 0;
    }

    /// <summary>The two-operand arithmetic: ST(0) op mem, ST(0) op ST(i), ST(i) op ST(0) (then pop for the -p forms).</summary>
    private static bool X87Arith(in Instruction ins, ref MicroOp op, X87ArithOp arith, int pops)
    {
        op.Kind = OpKind.X87Arith;
        op.Cond = (byte)arith;
        op.Rep = (byte)pops;
        if (ins.OpCount == 1)
        {
            op.RegA = 0;
            return ins.Op0Kind == Iced.Intel.OpKind.Memory && X87Memory(in ins, ref op, ref op.B);
        }
        if (ins.OpCount == 0)
        {
            // faddp etc. without operands: ST(1) op ST(0), pop
            op.RegA = 1;
            op.RegB = 0;
            op.B = Loc.Reg;
            return true;
        }
        op.B = Loc.Reg;
        return St(ins.Op0Register, out op.RegA) && St(ins.Op1Register, out op.RegB) && (op.RegA == 0 || op.RegB == 0);
    }

    private static bool X87Compare(in Instruction ins, ref MicroOp op, bool quiet, int pops)
    {
        op.Kind = OpKind.X87Compare;
        op.Cond = (byte)(quiet ? 1 : 0);
        op.Rep = (byte)pops;
        if (ins.OpCount == 0)
        {
            op.B = Loc.Reg;
            op.RegB = 1; // fcompp/fucompp: ST(0) with ST(1)
            return true;
        }
        if (ins.Op0Kind == Iced.Intel.OpKind.Memory)
        {
            return X87Memory(in ins, ref op, ref op.B);
        }
        op.B = Loc.Reg;
        return St(ins.OpCount == 2 ? ins.Op1Register : ins.Op0Register, out op.RegB);
    }

    private static bool X87Constant(ref MicroOp op, X87Constant c)
    {
        op.Kind = OpKind.X87Load;
        op.B = Loc.Imm;
        op.Imm = (ulong)c;
        return true;
    }

    private static bool X87Unary(ref MicroOp op, X87Unary u)
    {
        op.Kind = OpKind.X87Unary;
        op.Cond = (byte)u;
        return true;
    }

    private static bool X87Fcmov(in Instruction ins, ref MicroOp op, int cc)
    {
        if (ins.OpCount != 2 || !St(ins.Op1Register, out op.RegB))
        {
            return false;
        }
        op.Kind = OpKind.X87Fcmov;
        op.B = Loc.Reg;
        op.Cond = (byte)cc;
        return true;
    }

    private static bool X87Control(ref MicroOp op, X87Control c, bool waits)
    {
        op.Kind = OpKind.X87Control;
        op.Cond = (byte)c;
        op.Rep = (byte)(waits ? 1 : 0);
        return true;
    }

    private static bool X87ControlMemory(in Instruction ins, ref MicroOp op, X87Control c, bool waits)
    {
        if (!MemoryOperand0(in ins, ref op))
        {
            return false;
        }
        op.Size = (byte)ins.MemorySize.GetSize();
        if (op.Size == 0)
        {
            op.Size = (byte)(ins.MemorySize switch
            {
                MemorySize.FpuEnv14 => 14,
                MemorySize.FpuEnv28 => 28,
                MemorySize.FpuState94 => 94,
                MemorySize.FpuState108 => 108,
                _ => 2,
            });
        }
        return X87Control(ref op, c, waits);
    }
}
