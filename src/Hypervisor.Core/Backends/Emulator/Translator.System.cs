using Iced.Intel;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>Decoding of the system instructions (executed by <c>EmulatorVcpu.System.cs</c>).</summary>
internal static partial class Translator
{
    /// <summary>Segment register number in the x86 encoding (ES 0, CS 1, SS 2, DS 3, FS 4, GS 5).</summary>
    private static byte SegmentIndex(Register r) => r switch
    {
        Register.ES => 0,
        Register.CS => 1,
        Register.SS => 2,
        Register.DS => 3,
        Register.FS => 4,
        _ => 5,
    };

    /// <summary>
    /// MOV to or from a control, debug or segment register. Returns false when the MOV is an ordinary one;
    /// otherwise <paramref name="result"/> says whether it was translated.
    /// </summary>
    private static bool TrySystemMov(in Instruction ins, ref MicroOp op, out bool result)
    {
        result = false;
        if (ins.OpCount != 2)
        {
            return false;
        }
        Register r0 = ins.Op0Kind == OpKind_Register ? ins.Op0Register : Register.None;
        Register r1 = ins.Op1Kind == OpKind_Register ? ins.Op1Register : Register.None;
        if (SpecialRegister(r1) is { } source)
        {
            // mov r64, CRn / DRn
            op.RegB = source.Number;
            result = MovSpecial(ref op, source.Read, r0, out op.RegA) && source.Exists;
            return true;
        }
        if (SpecialRegister(r0) is { } target)
        {
            // mov CRn / DRn, r64
            op.RegA = target.Number;
            result = MovSpecial(ref op, target.Write, r1, out op.RegB) && target.Exists;
            return true;
        }
        if (r0.IsSegmentRegister())
        {
            // mov Sreg, r/m16 (mov cs is #UD: InvalidInLongMode)
            op.Kind = OpKind.MovToSreg;
            op.RegA = SegmentIndex(r0);
            op.Size = 2;
            result = r0 != Register.CS && Operand(in ins, 1, ref op.B, ref op.RegB, ref op) && op.B != Loc.Imm;
            return true;
        }
        if (r1.IsSegmentRegister())
        {
            // mov r/m, Sreg: a register destination gets the selector zero-extended to its size, memory gets 16 bits.
            op.Kind = OpKind.MovFromSreg;
            op.RegB = SegmentIndex(r1);
            result = Operand(in ins, 0, ref op.A, ref op.RegA, ref op) && op.A != Loc.Imm;
            op.Size = (byte)(op.A == Loc.Mem ? 2 : r0.GetSize());
            return true;
        }
        return false;
    }

    /// <summary>push fs/gs, pop fs/gs (64-bit forms; the others are invalid in 64-bit mode or 16-bit).</summary>
    private static bool SegmentPushPop(in Instruction ins, ref MicroOp op, bool push)
    {
        if (ins.Code is not (Code.Pushq_FS or Code.Pushq_GS or Code.Popq_FS or Code.Popq_GS))
        {
            return false;
        }
        byte index = SegmentIndex(ins.Op0Register);
        op.Size = 8;
        if (push)
        {
            op.Kind = OpKind.PushSreg;
            op.RegB = index;
        }
        else
        {
            op.Kind = OpKind.PopSreg;
            op.RegA = index;
        }
        return true;
    }

    /// <summary>True for an instruction that decodes but raises #UD in 64-bit mode (mov to CS, CR1/CR5-7/CR9-15, DR8-15).</summary>
    public static bool InvalidInLongMode(in Instruction ins)
    {
        if (ins.Mnemonic != Mnemonic.Mov || ins.OpCount != 2)
        {
            return false;
        }
        Register r0 = ins.Op0Kind == OpKind_Register ? ins.Op0Register : Register.None;
        Register r1 = ins.Op1Kind == OpKind_Register ? ins.Op1Register : Register.None;
        return r0 == Register.CS
            || (r0 >= Register.CR0 && r0 <= Register.CR15) || (r1 >= Register.CR0 && r1 <= Register.CR15)
            || (r0 >= Register.DR8 && r0 <= Register.DR15) || (r1 >= Register.DR8 && r1 <= Register.DR15);
    }

    /// <summary>The system instructions that are not MOVs (privileged, segment, interrupt instructions).</summary>
    private static bool TranslateSystem(in Instruction ins, ref MicroOp op)
    {
        switch (ins.Mnemonic)
        {
            case Mnemonic.Syscall: return Fixed(ref op, OpKind.Syscall, 0);
            case Mnemonic.Sysretq: return Fixed(ref op, OpKind.Sysret, (byte)(ins.Code == Code.Sysretq ? 8 : 4));
            case Mnemonic.Swapgs: return Fixed(ref op, OpKind.Swapgs, 0);
            case Mnemonic.Iretq: return Fixed(ref op, OpKind.Iretq, 8);
            case Mnemonic.Iretd: return Fixed(ref op, OpKind.Iretq, (byte)(ins.Code == Code.Iretd ? 4 : 2));
            case Mnemonic.Int:
                op.Kind = OpKind.IntN;
                op.Imm = ins.GetImmediate(0) & 0xFF;
                return true;
            case Mnemonic.Int3: return Fixed(ref op, OpKind.Int3, 0);
            case Mnemonic.Int1: return Fixed(ref op, OpKind.Int1, 0);
            case Mnemonic.Rdmsr: return Fixed(ref op, OpKind.Rdmsr, 0);
            case Mnemonic.Wrmsr: return Fixed(ref op, OpKind.Wrmsr, 0);
            case Mnemonic.Rdtscp: return Fixed(ref op, OpKind.Rdtscp, 0);
            case Mnemonic.Wbinvd:
            case Mnemonic.Invd:
                return Fixed(ref op, OpKind.Wbinvd, 0);
            case Mnemonic.Clts: return Fixed(ref op, OpKind.Clts, 0);
            case Mnemonic.Invlpg:
                return MemoryOperand0(in ins, ref op) && Fixed(ref op, OpKind.Invlpg, 0);
            case Mnemonic.Sgdt:
            case Mnemonic.Sidt:
                return MemoryOperand0(in ins, ref op) && Fixed(ref op, ins.Mnemonic == Mnemonic.Sgdt ? OpKind.Sgdt : OpKind.Sidt, 10);
            case Mnemonic.Ltr:
            case Mnemonic.Lldt:
            case Mnemonic.Lmsw:
                if (ins.OpCount != 1 || !Operand(in ins, 0, ref op.B, ref op.RegB, ref op) || op.B == Loc.Imm)
                {
                    return false;
                }
                return Fixed(ref op, ins.Mnemonic switch { Mnemonic.Ltr => OpKind.Ltr, Mnemonic.Lldt => OpKind.Lldt, _ => OpKind.Lmsw }, 2);
            case Mnemonic.Str:
            case Mnemonic.Sldt:
            case Mnemonic.Smsw:
                if (ins.OpCount != 1 || !Operand(in ins, 0, ref op.A, ref op.RegA, ref op) || op.A == Loc.Imm)
                {
                    return false;
                }
                return Fixed(ref op, ins.Mnemonic switch { Mnemonic.Str => OpKind.Str, Mnemonic.Sldt => OpKind.Sldt, _ => OpKind.Smsw },
                    (byte)(op.A == Loc.Mem ? 2 : ins.Op0Register.GetSize()));
            case Mnemonic.Retf:
                op.Kind = OpKind.Lretq;
                op.Size = (byte)(ins.Code is Code.Retfq or Code.Retfq_imm16 ? 8 : ins.Code is Code.Retfd or Code.Retfd_imm16 ? 4 : 2);
                op.Imm = ins.OpCount > 0 ? ins.GetImmediate(0) & 0xFFFF : 0;
                return true;
            // rdfsbase/rdgsbase write their register operand (the destination slot), wrfsbase/wrgsbase read it.
            case Mnemonic.Rdfsbase: return FsGsBase(in ins, ref op, OpKind.Rdfsbase, ref op.A, ref op.RegA);
            case Mnemonic.Rdgsbase: return FsGsBase(in ins, ref op, OpKind.Rdgsbase, ref op.A, ref op.RegA);
            case Mnemonic.Wrfsbase: return FsGsBase(in ins, ref op, OpKind.Wrfsbase, ref op.B, ref op.RegB);
            case Mnemonic.Wrgsbase: return FsGsBase(in ins, ref op, OpKind.Wrgsbase, ref op.B, ref op.RegB);
            default:
                return false;
        }
    }

    /// <summary>
    /// A control or debug register: the MOV kinds that read and write it, its number, and whether the CPU has it
    /// (CR0, CR2-CR4, CR8 and DR0-DR7 exist); null for any other register.
    /// </summary>
    private static (OpKind Read, OpKind Write, byte Number, bool Exists)? SpecialRegister(Register r) => r switch
    {
        >= Register.CR0 and <= Register.CR15 => (OpKind.MovFromCr, OpKind.MovToCr, (byte)(r - Register.CR0), (r - Register.CR0) is 0 or 2 or 3 or 4 or 8),
        >= Register.DR0 and <= Register.DR15 => (OpKind.MovFromDr, OpKind.MovToDr, (byte)(r - Register.DR0), r - Register.DR0 < 8),
        _ => null,
    };

    /// <summary>rd/wr fs/gs base with a 32- or 64-bit register, in the slot <paramref name="loc"/>/<paramref name="reg"/>.</summary>
    private static bool FsGsBase(in Instruction ins, ref MicroOp op, OpKind kind, ref Loc loc, ref byte reg)
    {
        if (!Gpr(ins.Op0Register, out reg, out int size) || size < 4)
        {
            return false;
        }
        loc = Loc.Reg;
        return Fixed(ref op, kind, (byte)size);
    }

    /// <summary>A MOV between a control or debug register and a 64-bit general-purpose register <paramref name="gpr"/>.</summary>
    private static bool MovSpecial(ref MicroOp op, OpKind kind, Register gpr, out byte gprIndex)
    {
        op.Kind = kind;
        op.Size = 8;
        return Gpr(gpr, out gprIndex, out int size) && size == 8;
    }
}
