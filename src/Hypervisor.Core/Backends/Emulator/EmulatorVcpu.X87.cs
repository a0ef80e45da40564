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
                    ulong ea = Ea(ref op);
                    CheckRange(ea, 10, write: false);
                    X87.LoadRaw(ref _fpu, new Float80(Load64(ea), (ushort)Load(ea + 8, 2)));
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
                GuestFault.Raise($"internal error: op {op.Kind} at 0x{op.Rip:x} has no handler");
                break;
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
        ulong ea = Ea(ref op);
        bool stored;
        switch ((X87Format)op.Size2)
        {
            case X87Format.F32:
            case X87Format.F64:
            {
                CheckRange(ea, op.Size, write: true);
                stored = X87.StoreFloat(ref _fpu, (X87Format)op.Size2, out ulong bits);
                if (stored)
                {
                    Store(ea, op.Size, bits);
                }
                break;
            }
            case X87Format.F80:
            {
                CheckRange(ea, 10, write: true);
                stored = X87.StoreExtended(ref _fpu, out Float80 v);
                if (stored)
                {
                    Store64(ea, v.Mant);
                    Store(ea + 8, 2, v.SignExp);
                }
                break;
            }
            default:
            {
                CheckRange(ea, op.Size, write: true);
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
                int size = op.Size;
                CheckRange(ea, size, write: true);
                Span<byte> image = stackalloc byte[108];
                image = image[..size];
                if ((X87Control)op.Cond == X87Control.Fnstenv)
                {
                    _fpu.WriteEnvironment(image);
                    _fpu.Fcw |= 0x3F; // FNSTENV then masks all exceptions
                }
                else
                {
                    _fpu.WriteSave(image);
                    X87.Init(ref _fpu); // FNSAVE then initializes the FPU
                }
                StoreBytes(ea, image);
                break;
            }
            case X87Control.Fldenv:
            case X87Control.Frstor:
            {
                ulong ea = Ea(ref op);
                int size = op.Size;
                CheckRange(ea, size, write: false);
                Span<byte> image = stackalloc byte[108];
                image = image[..size];
                LoadBytes(ea, image);
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

    /// <summary>Faults (before anything is written) unless [ea, ea + size) is inside guest memory.</summary>
    private void CheckRange(ulong ea, int size, bool write)
    {
        if (ea > _size - (ulong)size)
        {
            GuestFault.PageFault(ea, size, write);
        }
    }

    private void StoreBytes(ulong ea, ReadOnlySpan<byte> data)
    {
        int k = 0;
        for (; k + 8 <= data.Length; k += 8)
        {
            Store64(ea + (ulong)k, BitConverter.ToUInt64(data[k..]));
        }
        for (; k < data.Length; k++)
        {
            Store(ea + (ulong)k, 1, data[k]);
        }
    }

    private void LoadBytes(ulong ea, Span<byte> data)
    {
        int k = 0;
        for (; k + 8 <= data.Length; k += 8)
        {
            BitConverter.TryWriteBytes(data[k..], Load64(ea + (ulong)k));
        }
        for (; k < data.Length; k++)
        {
            data[k] = (byte)Load(ea + (ulong)k, 1);
        }
    }
}
