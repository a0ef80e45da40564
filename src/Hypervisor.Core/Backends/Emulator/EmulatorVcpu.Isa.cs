using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Paravirt.Hypervisor.Backends.Emulator.Semantics;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// Dispatch of the ISA extensions: operands in and out of the register file and memory, MXCSR/x87 exception checks;
/// the arithmetic itself is in the pure helpers of <c>Semantics/</c>.
/// </summary>
internal sealed unsafe partial class EmulatorVcpu
{
    /// <summary>x87 registers, control/status/tag words and MXCSR (the XMM registers are <see cref="_x"/>).</summary>
    private FpuState _fpu = FpuState.Initial;

    /// <summary>For tests and state transfer: the FXSAVE image of the x87/SSE state (512 bytes).</summary>
    internal void SaveFxsave(Span<byte> image) => _fpu.WriteFxsave(image, new ReadOnlySpan<Vector128<byte>>(_x, 16));

    /// <summary>For tests and state transfer: loads an FXSAVE image; false when its MXCSR is invalid.</summary>
    internal bool LoadFxrstor(ReadOnlySpan<byte> image) => _fpu.ReadFxrstor(image, new Span<Vector128<byte>>(_x, 16));

    /// <summary>MXCSR (for tests).</summary>
    internal uint Mxcsr => _fpu.Mxcsr;

    /// <summary>The source operand of an SSE op: an XMM register or <c>Size</c> bytes of memory (zero-extended).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<byte> XmmSource(ref MicroOp op)
    {
        if (op.B == Loc.Reg)
        {
            return _x[op.RegB];
        }
        ulong ea = Ea(ref op);
        return op.Size switch
        {
            16 => Load128(ea, op.Aligned),
            8 => Vector128.CreateScalar(Load64(ea)).AsByte(),
            4 => Vector128.CreateScalar((uint)Load(ea, 4)).AsByte(),
            2 => Vector128.CreateScalar((ushort)Load(ea, 2)).AsByte(),
            _ => Vector128.CreateScalar((byte)Load(ea, 1)),
        };
    }

    /// <summary>Merges the flags an SSE op raised into MXCSR; #XM (before the destination is written) when one is unmasked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SimdFlags(uint raised)
    {
        if (raised != 0)
        {
            SimdFlagsSlow(raised);
        }
    }

    private void SimdFlagsSlow(uint raised)
    {
        uint mx = _fpu.Mxcsr;
        uint unmasked = raised & ~(mx >> 7) & 0x3F;
        if (unmasked == 0)
        {
            _fpu.Mxcsr = mx | (raised & 0x3F);
            return;
        }
        // An unmasked pre-computation exception (invalid, denormal, divide by zero) stops before any result exists:
        // only those flags are recorded. Otherwise all raised flags are.
        const uint pre = SseFloat.IE | SseFloat.DE | SseFloat.ZE;
        _fpu.Mxcsr = mx | (raised & ((unmasked & pre) != 0 ? pre : 0x3F));
        GuestFault.SimdException(unmasked);
    }

    private void ExecuteIsa(ref MicroOp op, int retiredInBlock)
    {
        ref Vector128<byte> dst = ref _x[op.RegA & 15];
        switch (op.Kind)
        {
            case OpKind.SseArith when op.Size2 == (byte)SseShape.Sd:
            {
                // The hottest FP form (scalar double): no vector shuffling, only the low lane is written.
                ulong b = op.B == Loc.Reg ? _x[op.RegB].AsUInt64().ToScalar() : Load64(Ea(ref op));
                uint flags = 0;
                ulong r = SseFloat.Arith64((SseOp)op.Cond, dst.AsUInt64().ToScalar(), b, _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                Unsafe.As<Vector128<byte>, ulong>(ref dst) = r;
                break;
            }
            case OpKind.SseArith:
            {
                uint flags = 0;
                Vector128<byte> r = SseFloat.Arith((SseOp)op.Cond, (SseShape)op.Size2, dst, XmmSource(ref op), _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                dst = r;
                break;
            }
            case OpKind.SseCompare:
            {
                uint flags = 0;
                Vector128<byte> r = SseFloat.Compare((SseShape)op.Size2, (int)op.Imm, dst, XmmSource(ref op), _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                dst = r;
                break;
            }
            case OpKind.SseComi:
            {
                uint flags = 0;
                Vector128<byte> b = XmmSource(ref op);
                ulong f = op.Size2 != 0
                    ? SseFloat.CompareToFlags(true, dst.AsUInt64()[0], b.AsUInt64()[0], op.Cond != 0, _fpu.Mxcsr, ref flags)
                    : SseFloat.CompareToFlags(false, dst.AsUInt32()[0], b.AsUInt32()[0], op.Cond != 0, _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                SetArith(f); // ZF, PF, CF from the comparison; OF, SF, AF cleared
                break;
            }
            case OpKind.CvtIntToFp:
            {
                ulong v = ReadB(ref op, op.Size);
                long sv = op.Size == 8 ? (long)v : (int)v;
                uint flags = 0;
                Vector128<byte> r = op.Size2 != 0
                    ? dst.AsUInt64().WithElement(0, SseFloat.IntToDouble(sv, _fpu.Mxcsr, ref flags)).AsByte()
                    : dst.AsUInt32().WithElement(0, SseFloat.IntToSingle(sv, _fpu.Mxcsr, ref flags)).AsByte();
                SimdFlags(flags);
                dst = r;
                break;
            }
            case OpKind.CvtFpToInt:
            {
                bool dbl = op.Size2 != 0;
                ulong src;
                if (op.B == Loc.Reg)
                {
                    src = dbl ? _x[op.RegB].AsUInt64()[0] : _x[op.RegB].AsUInt32()[0];
                }
                else
                {
                    src = Load(Ea(ref op), dbl ? 8 : 4);
                }
                uint flags = 0;
                ulong r = SseFloat.FloatToInt(dbl, src, op.Size == 8, op.Cond != 0, _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                SetReg(op.RegA, op.Size, r);
                break;
            }
            case OpKind.CvtVector:
            {
                uint flags = 0;
                Vector128<byte> r = SseFloat.Convert((CvtKind)op.Cond, dst, XmmSource(ref op), _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                dst = r;
                break;
            }
            case OpKind.SseHorizontal:
            {
                uint flags = 0;
                Vector128<byte> r = SseFloat.Horizontal(op.Cond, op.Size2 != 0, dst, XmmSource(ref op), _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                dst = r;
                break;
            }
            case OpKind.SseRound:
            {
                uint flags = 0;
                Vector128<byte> r = SseFloat.RoundIntegral((SseShape)op.Size2, dst, XmmSource(ref op), (int)op.Imm, _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                dst = r;
                break;
            }
            case OpKind.SseDot:
            {
                uint flags = 0;
                Vector128<byte> b = XmmSource(ref op);
                Vector128<byte> r = op.Size2 == (byte)SseShape.Pd
                    ? SseFloat.DotProduct64(dst, b, (int)op.Imm, _fpu.Mxcsr, ref flags)
                    : SseFloat.DotProduct32(dst, b, (int)op.Imm, _fpu.Mxcsr, ref flags);
                SimdFlags(flags);
                dst = r;
                break;
            }
            case OpKind.SseApprox:
                dst = SseFloat.Approximate(op.Cond != 0, (SseShape)op.Size2, dst, XmmSource(ref op));
                break;
            case OpKind.Ldmxcsr:
            {
                uint v = (uint)Load(Ea(ref op), 4);
                if ((v & ~SseFloat.MxcsrMask) != 0)
                {
                    GuestFault.GeneralProtection($"ldmxcsr sets reserved MXCSR bits (0x{v:x})");
                }
                _fpu.Mxcsr = v;
                break;
            }
            case OpKind.Stmxcsr:
                Store(Ea(ref op), 4, _fpu.Mxcsr);
                break;
            case OpKind.Fxsave:
                Fxsave(Ea(ref op));
                break;
            case OpKind.Fxrstor:
                Fxrstor(Ea(ref op));
                break;
            case OpKind.VecBinary:
                dst = SimdInt.Execute((VecOp)op.Cond, dst, XmmSource(ref op), (int)op.Imm, _x[0]);
                break;
            case OpKind.VecExtract:
            {
                Vector128<byte> v = _x[op.RegB];
                int k = (int)op.Imm;
                ulong e = op.Size switch
                {
                    1 => v[k],
                    2 => v.AsUInt16()[k],
                    4 => v.AsUInt32()[k],
                    _ => v.AsUInt64()[k],
                };
                if (op.A == Loc.Reg)
                {
                    SetReg(op.RegA, op.Size2, e); // zero-extended into the whole register
                }
                else
                {
                    Store(Ea(ref op), op.Size, e);
                }
                break;
            }
            case OpKind.VecInsert:
            {
                ulong e = op.B == Loc.Reg ? GetReg(op.RegB, op.Size == 8 ? 8 : 4) : Load(Ea(ref op), op.Size);
                int k = (int)op.Imm;
                dst = op.Size switch
                {
                    1 => dst.WithElement(k, (byte)e),
                    4 => dst.AsUInt32().WithElement(k, (uint)e).AsByte(),
                    _ => dst.AsUInt64().WithElement(k, e).AsByte(),
                };
                break;
            }
            case OpKind.Ptest:
                SetArith(SimdInt.PtestFlags(dst, XmmSource(ref op)));
                break;
            case OpKind.PcmpStr:
            {
                bool explicitLengths = op.Cond < 2;
                long la = op.Rep != 0 ? (long)_r[0] : (int)_r[0];
                long lb = op.Rep != 0 ? (long)_r[2] : (int)_r[2];
                StringCompare.Result res = StringCompare.Compare(dst, XmmSource(ref op), (int)op.Imm, explicitLengths, la, lb);
                if ((op.Cond & 1) == 0)
                {
                    _r[1] = StringCompare.Index(res.Mask, (int)op.Imm);
                }
                else
                {
                    _x[0] = StringCompare.MaskVector(res.Mask, (int)op.Imm);
                }
                SetArith(res.Flags);
                break;
            }
            case OpKind.Crc32:
            {
                uint crc = (uint)_r[op.RegA];
                ulong v = ReadB(ref op, op.Size2);
                crc = op.Size2 switch
                {
                    1 => System.Numerics.BitOperations.Crc32C(crc, (byte)v),
                    2 => System.Numerics.BitOperations.Crc32C(crc, (ushort)v),
                    4 => System.Numerics.BitOperations.Crc32C(crc, (uint)v),
                    _ => System.Numerics.BitOperations.Crc32C(crc, v),
                };
                _r[op.RegA] = crc; // 32 bits, zero-extended (also for the 64-bit destination)
                break;
            }
            case OpKind.Maskmovdqu:
            {
                Vector128<byte> data = _x[op.RegA], mask = _x[op.RegB];
                ulong at = _r[7];
                for (int k = 0; k < 16; k++)
                {
                    if ((mask[k] & 0x80) != 0)
                    {
                        Store(at + (ulong)k, 1, data[k]);
                    }
                }
                break;
            }
            case OpKind.Bmi2:
                ExecuteBmi2(ref op);
                break;
            case OpKind.AddCarryX:
            {
                // adcx: CF is the carry in and out; adox: OF. No other flag changes.
                int size = op.Size;
                ulong b = ReadB(ref op, size);
                ulong a = GetReg(op.RegA, size);
                Materialize();
                ulong flag = op.Cond == 0 ? CF : OF;
                ulong carry = (_rf & flag) != 0 ? 1UL : 0;
                ulong r;
                bool carryOut;
                if (size == 8)
                {
                    UInt128 sum = (UInt128)a + b + carry;
                    r = (ulong)sum;
                    carryOut = (sum >> 64) != 0;
                }
                else
                {
                    ulong sum = a + b + carry;
                    r = (uint)sum;
                    carryOut = (sum >> 32) != 0;
                }
                _rf = carryOut ? _rf | flag : _rf & ~flag;
                SetReg(op.RegA, size, r);
                break;
            }
            case OpKind.Movbe:
            {
                int size = op.Size;
                if (op.A == Loc.Reg)
                {
                    SetReg(op.RegA, size, ByteSwap(Load(Ea(ref op), size), size));
                }
                else
                {
                    Store(Ea(ref op), size, ByteSwap(GetReg(op.RegB, size), size));
                }
                break;
            }
            case OpKind.Rdtscp:
            {
                ulong tsc = _icount + (ulong)retiredInBlock;
                _r[0] = (uint)tsc;
                _r[2] = tsc >> 32;
                _r[1] = (uint)_msrs.TscAux; // IA32_TSC_AUX
                break;
            }
            default:
                ExecuteX87(ref op);
                break;
        }
    }

    private static ulong ByteSwap(ulong v, int size) => size switch
    {
        2 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((ushort)v),
        4 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)v),
        _ => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v),
    };

    private void ExecuteBmi2(ref MicroOp op)
    {
        int size = op.Size;
        ulong src = ReadB(ref op, size);
        switch ((Bmi2Op)op.Cond)
        {
            case Bmi2Op.Bzhi:
            {
                ulong r = BitManip.ZeroHighBits(src, GetReg(op.RegC, size), size, out bool carry);
                // ZF, SF from the result, CF = index beyond the operand, OF = 0 (AF, PF undefined: left as they were).
                Materialize();
                SetArith((Szp(r, size) & (ZF | SF)) | (carry ? CF : 0) | (_rf & (AF | PF)));
                SetReg(op.RegA, size, r);
                break;
            }
            case Bmi2Op.Pdep:
                SetReg(op.RegA, size, BitManip.Deposit(GetReg(op.RegC, size), src));
                break;
            case Bmi2Op.Pext:
                SetReg(op.RegA, size, BitManip.Extract(GetReg(op.RegC, size), src));
                break;
            case Bmi2Op.Mulx:
            {
                ulong d = GetReg(2, size);
                ulong hi, lo;
                if (size == 8)
                {
                    hi = Math.BigMul(d, src, out lo);
                }
                else
                {
                    ulong p = d * src;
                    hi = p >> 32;
                    lo = (uint)p;
                }
                SetReg(op.RegC, size, lo);
                SetReg(op.RegA, size, hi); // the high half wins when both name the same register
                break;
            }
            case Bmi2Op.Rorx:
                SetReg(op.RegA, size, BitManip.RotateRight(src, (int)op.Imm, size));
                break;
            default:
                SetReg(op.RegA, size, BitManip.Shift((Bmi2Op)op.Cond, src, GetReg(op.RegC, size), size));
                break;
        }
    }

    /// <summary>Checks a 512-byte, 16-byte aligned FXSAVE area inside guest memory.</summary>
    private void CheckFxArea(ulong ea, bool write)
    {
        if ((ea & 15) != 0)
        {
            GuestFault.Misaligned(ea);
        }
        if (ea > _size - 512)
        {
            GuestFault.PageFault(ea, 512, write);
        }
    }

    private void Fxsave(ulong ea)
    {
        CheckFxArea(ea, write: true);
        Span<byte> image = stackalloc byte[512];
        SaveFxsave(image);
        // Bytes 416-511 are left as they are (reserved/available to software).
        for (int k = 0; k < 416; k += 8)
        {
            Store64(ea + (ulong)k, BitConverter.ToUInt64(image[k..]));
        }
    }

    private void Fxrstor(ulong ea)
    {
        CheckFxArea(ea, write: false);
        Span<byte> image = stackalloc byte[512];
        for (int k = 0; k < 416; k += 8)
        {
            BitConverter.TryWriteBytes(image[k..], Load64(ea + (ulong)k));
        }
        uint mxcsr = BitConverter.ToUInt32(image[24..]);
        if ((mxcsr & ~SseFloat.MxcsrMask) != 0)
        {
            GuestFault.GeneralProtection($"fxrstor loads reserved MXCSR bits (0x{mxcsr:x})");
        }
        _ = LoadFxrstor(image);
    }
}
