using Paravirt.Hypervisor.Backends.Emulator.Semantics;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>x87 dispatch: memory operands in and out, #MF for a pending exception; the semantics are <see cref="X87"/>.</summary>
internal sealed unsafe partial class EmulatorVcpu
{
    private void ExecuteX87(ref MicroOp op)
    {
        bool waits = op.Kind != OpKind.X87Control || op.Rep != 0;
        if (waits)
        {
            uint pending = X87.Pending(_fpu);
            if (pending != 0)
            {
                GuestFault.X87Exception(pending);
            }
        }
        switch (op.Kind)
        {
            case OpKind.X87Arith:
            {
                Unpacked memory = op.B == Loc.Mem ? X87.FromMemory((X87Format)op.Size2, Load(Ea(ref op), op.Size)) : default;
                X87.Arith(ref _fpu, (X87ArithOp)op.Cond, op.RegA, op.B == Loc.Mem ? -1 : op.RegB, memory, op.Rep);
                break;
            }
            case OpKind.X87Compare:
            {
                Unpacked memory = op.B == Loc.Mem ? X87.FromMemory((X87Format)op.Size2, Load(Ea(ref op), op.Size)) : default;
                X87.Compare(ref _fpu, op.B == Loc.Mem ? -1 : op.RegB, memory, op.Cond != 0, op.Rep);
                break;
            }
            case OpKind.X87CompareFlags:
            {
                ulong? flags = X87.CompareToFlags(ref _fpu, op.RegB, op.Cond != 0, op.Rep != 0);
                if (flags is ulong f)
                {
                    SetArith(f);
                }
                break;
            }
            case OpKind.X87Load:
                if (op.B == Loc.Reg)
                {
                    X87.LoadStack(ref _fpu, op.RegB);
                }
                else if (op.B == Loc.Imm)
                {
                    X87.LoadConstant(ref _fpu, (X87Constant)op.Imm);
                }
                else if ((X87Format)op.Size2 == X87Format.F80)
                {
                    Span<byte> m80 = stackalloc byte[10];
                    LoadBytes(Ea(ref op), m80); // both pages translated before anything is read
                    X87.LoadRaw(ref _fpu, new Float80(BinaryPrimitives.ReadUInt64LittleEndian(m80), BinaryPrimitives.ReadUInt16LittleEndian(m80[8..])));
                }
                else
                {
                    X87.Load(ref _fpu, (X87Format)op.Size2, Load(Ea(ref op), op.Size));
                }
                break;
            case OpKind.X87Store:
                X87StoreOp(ref op);
                break;
            case OpKind.X87Unary:
                X87.Unary(ref _fpu, (X87Unary)op.Cond);
                break;
            case OpKind.X87Fcmov:
                X87.ConditionalMove(ref _fpu, op.RegB, Cond(op.Cond));
                break;
            case OpKind.X87Control:
                X87ControlOp(ref op);
                break;
            default:
                throw new InvalidOperationException($"op {op.Kind} at 0x{op.Rip:x} has no handler");
        }
    }

    private void X87StoreOp(ref MicroOp op)
    {
        bool pop = op.Rep != 0;
        if (op.A == Loc.Reg)
        {
            X87.StoreStack(ref _fpu, op.RegA, pop, noEmptyCheck: op.Cond == 2);
            return;
        }
        // The destination is translated for write first (#PF/#GP before the stack, C1 or the flags change); the store
        // itself then cannot fault.
        ulong ea = Ea(ref op);
        bool stored;
        switch ((X87Format)op.Size2)
        {
            case X87Format.F32:
            case X87Format.F64:
            {
                ProbeWrite(ea, op.Size);
                stored = X87.StoreFloat(ref _fpu, (X87Format)op.Size2, out ulong bits);
                if (stored)
                {
                    Store(ea, op.Size, bits);
                }
                break;
            }
            case X87Format.F80:
            {
                ProbeWrite(ea, 10);
                stored = X87.StoreExtended(ref _fpu, out Float80 v);
                if (stored)
                {
                    Span<byte> m80 = stackalloc byte[10];
                    BinaryPrimitives.WriteUInt64LittleEndian(m80, v.Mant);
                    BinaryPrimitives.WriteUInt16LittleEndian(m80[8..], v.SignExp);
                    StoreBytes(ea, m80);
                }
                break;
            }
            default:
            {
                ProbeWrite(ea, op.Size);
                stored = X87.StoreInteger(ref _fpu, op.Size, op.Cond != 0, out ulong bits);
                if (stored)
                {
                    Store(ea, op.Size, bits);
                }
                break;
            }
        }
        if (pop && stored)
        {
            X87.Pop(ref _fpu);
        }
    }

    private void X87ControlOp(ref MicroOp op)
    {
        switch ((X87Control)op.Cond)
        {
            case X87Control.Fldcw:
                _fpu.Fcw = X87.NormalizeControlWord((ushort)Load(Ea(ref op), 2));
                break;
            case X87Control.Fnstcw:
                Store(Ea(ref op), 2, _fpu.Fcw);
                break;
            case X87Control.FnstswMemory:
                Store(Ea(ref op), 2, _fpu.StatusWord);
                break;
            case X87Control.FnstswAx:
                SetReg(0, 2, _fpu.StatusWord);
                break;
            case X87Control.Fnclex:
                _fpu.Fsw &= unchecked((ushort)~0x7F); // exception flags and SF (ES and B follow)
                break;
            case X87Control.Fninit:
                X87.Init(ref _fpu);
                break;
            case X87Control.Fnstenv:
            case X87Control.Fnsave:
            {
                ulong ea = Ea(ref op);
                Span<byte> image = stackalloc byte[108];
                image = image[..op.Size];
                bool save = (X87Control)op.Cond == X87Control.Fnsave;
                if (save)
                {
                    _fpu.WriteSave(image);
                }
                else
                {
                    _fpu.WriteEnvironment(image);
                }
                StoreBytes(ea, image); // all or nothing: a fault leaves the image unwritten and the FPU unchanged
                if (save)
                {
                    X87.Init(ref _fpu); // FNSAVE then initializes the FPU
                }
                else
                {
                    _fpu.Fcw |= 0x3F; // FNSTENV then masks all exceptions
                }
                break;
            }
            case X87Control.Fldenv:
            case X87Control.Frstor:
            {
                Span<byte> image = stackalloc byte[108];
                image = image[..op.Size];
                LoadBytes(Ea(ref op), image); // read whole before the FPU changes
                if ((X87Control)op.Cond == X87Control.Fldenv)
                {
                    _fpu.ReadEnvironment(image);
                }
                else
                {
                    _fpu.ReadSave(image);
                }
                break;
            }
            case X87Control.Ffree:
            case X87Control.Ffreep:
                _fpu.Valid &= (byte)~(1 << X87.Phys(_fpu, op.RegB));
                _fpu.Fsw &= unchecked((ushort)~FpuState.C1);
                if ((X87Control)op.Cond == X87Control.Ffreep)
                {
                    X87.Pop(ref _fpu);
                }
                break;
            case X87Control.Fxch:
                X87.Exchange(ref _fpu, op.RegB);
                break;
            default: // fwait, fnop: the pending-exception check was all
                break;
        }
    }
}
