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
        if ((_sys.Cr4 & SystemRegisters.Cr4OsXmmExcpt) == 0)
        {
            GuestFault.SimdExceptionWithoutOsSupport(unmasked); // the OS has no #XM handler: #UD (SDM 13.1.4)
        }
        GuestFault.SimdException(unmasked);
    }

    /// <summary>
    /// CR0/CR4 forbid some FPU or SSE use (<see cref="CpuState.SseFault"/> or <see cref="CpuState.X87Fault"/> is set): raises what
    /// <paramref name="op"/> raises. SSE ops (and LDMXCSR/STMXCSR): #UD with CR0.EM set or CR4.OSFXSR clear, #NM with
    /// CR0.TS set; x87 ops and FXSAVE/FXRSTOR: #NM with CR0.EM or CR0.TS set; WAIT/FWAIT: #NM only with CR0.TS and
    /// CR0.MP both set. The general-purpose extensions (crc32, BMI2, ADX, MOVBE) touch no FPU state and always run.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FpuUnavailable(ref MicroOp op)
    {
        switch (op.Kind)
        {
            case OpKind.Crc32:
            case OpKind.Bmi2:
            case OpKind.AddCarryX:
            case OpKind.Movbe:
                return;
            case OpKind.Fxsave:
            case OpKind.Fxrstor:
                if (_s->X87Fault != 0)
                {
                    GuestFault.Raise(Vectors.NM, -1, $"'{(op.Kind == OpKind.Fxsave ? "fxsave" : "fxrstor")}' with CR0.TS or CR0.EM set");
                }
                return;
            case >= OpKind.X87Arith and <= OpKind.X87Fcmov:
                if (op.Kind == OpKind.X87Control && (X87Control)op.Cond == X87Control.Fwait)
                {
                    if ((_sys.Cr0 & (SystemRegisters.Cr0Ts | SystemRegisters.Cr0Mp)) == (SystemRegisters.Cr0Ts | SystemRegisters.Cr0Mp))
                    {
                        GuestFault.Raise(Vectors.NM, -1, "'fwait' with CR0.TS and CR0.MP set");
                    }
                    return;
                }
                if (_s->X87Fault != 0)
                {
                    GuestFault.Raise(Vectors.NM, -1, "x87 instruction with CR0.TS or CR0.EM set");
                }
                return;
            default:
                if (_s->SseFault != 0)
                {
                    SseUnavailable();
                }
                return;
        }
    }

    /// <summary>
    /// Runs one SSE, x87 or other extension op for translated code (the count and lazy flags are written back): the
    /// interpreter's semantics without its block loop. Returns true when the op raised an event (delivered, or an exit
    /// is pending), as <see cref="ExecuteBlock"/> does.
    /// </summary>
    private bool ExecuteVectorOp(Block block, int k)
    {
        ref MicroOp op = ref block.Ops[k];
        try
        {
            if (op.Kind is >= OpKind.SseArith and <= OpKind.ExtensionLast)
            {
                ExecuteIsa(ref op);
            }
            else
            {
                ExecuteSse(ref op);
            }
            return false;
        }
        catch (GuestFault fault)
        {
            _s->Rip = op.Rip;
            RaiseFault(fault, _s->Rip);
            return true;
        }
    }

    /// <summary>The result of a vector SSE floating-point op into <paramref name="dst"/>, the MXCSR exception flags it raises in <paramref name="flags"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<byte> SseVector(ref MicroOp op, Vector128<byte> dst, ref uint flags)
    {
        Vector128<byte> b = XmmSource(ref op);
        uint mxcsr = _fpu.Mxcsr;
        return op.Kind switch
        {
            OpKind.SseArith => SseFloat.Arith((SseOp)op.Cond, (SseShape)op.Size2, dst, b, mxcsr, ref flags),
            OpKind.SseCompare => SseFloat.Compare((SseShape)op.Size2, (int)op.Imm, dst, b, mxcsr, ref flags),
            OpKind.CvtVector => SseFloat.Convert((CvtKind)op.Cond, dst, b, mxcsr, ref flags),
            OpKind.SseHorizontal => SseFloat.Horizontal(op.Cond, op.Size2 != 0, dst, b, mxcsr, ref flags),
            OpKind.SseRound => SseFloat.RoundIntegral((SseShape)op.Size2, dst, b, (int)op.Imm, mxcsr, ref flags),
            _ => op.Size2 == (byte)SseShape.Pd
                ? SseFloat.DotProduct64(dst, b, (int)op.Imm, mxcsr, ref flags)
                : SseFloat.DotProduct32(dst, b, (int)op.Imm, mxcsr, ref flags),
        };
    }

    private void ExecuteIsa(ref MicroOp op)
    {
        if ((_s->SseFault | _s->X87Fault) != 0)
        {
            FpuUnavailable(ref op);
        }
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
            case OpKind.SseCompare:
            case OpKind.CvtVector:
            case OpKind.SseHorizontal:
            case OpKind.SseRound:
            case OpKind.SseDot:
            {
                // The exceptions are raised (SimdFlags may fault) before the register is written.
                uint flags = 0;
                Vector128<byte> r = SseVector(ref op, dst, ref flags);
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
            case OpKind.SseApprox:
                dst = SseFloat.Approximate(op.Cond != 0, (SseShape)op.Size2, dst, XmmSource(ref op));
                break;
            case OpKind.Ldmxcsr:
            {
                uint v = (uint)Load(Ea(ref op), 4);
                if ((v & ~SseFloat.MxcsrMask) != 0)
                {
                    GuestFault.GeneralProtection(0, $"ldmxcsr sets reserved MXCSR bits (0x{v:x})");
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
                // The implicit destination is DS:rDI (an FS/GS override adds its base; 0x67 makes it edi).
                Vector128<byte> data = _x[op.RegA], mask = _x[op.RegB];
                uint selected = mask.ExtractMostSignificantBits();
                if (selected == 0)
                {
                    break;
                }
                ulong at = op.Addr32 ? (uint)_r[7] : _r[7];
                if (op.Seg != 0)
                {
                    at += SegmentBase(op.Seg);
                }
                // The bytes written are checked first (from the first selected to the last), so a fault writes none.
                int first = System.Numerics.BitOperations.TrailingZeroCount(selected);
                int last = 31 - System.Numerics.BitOperations.LeadingZeroCount(selected);
                ProbeWrite(at + (ulong)first, last - first + 1);
                for (int k = first; k <= last; k++)
                {
                    if ((selected & (1u << k)) != 0)
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
                ulong carry = (_s->Rflags & flag) != 0 ? 1UL : 0;
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
                _s->Rflags = carryOut ? _s->Rflags | flag : _s->Rflags & ~flag;
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
                SetArith((Szp(r, size) & (ZF | SF)) | (carry ? CF : 0) | (_s->Rflags & (AF | PF)));
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

    /// <summary>
    /// FXSAVE: the 512-byte area must be 16-byte aligned (#GP) and writable as a whole (#PF) before any byte is
    /// written; bytes 416-511 are left as they are (reserved/available to software).
    /// </summary>
    private void Fxsave(ulong ea)
    {
        if ((ea & 15) != 0)
        {
            GuestFault.Misaligned(ea);
        }
        ProbeWrite(ea, 512);
        Span<byte> image = stackalloc byte[512];
        SaveFxsave(image);
        StoreBytes(ea, image[..416]);
    }

    /// <summary>FXRSTOR: the aligned 512-byte area is read whole and its MXCSR checked (#GP) before any state changes.</summary>
    private void Fxrstor(ulong ea)
    {
        if ((ea & 15) != 0)
        {
            GuestFault.Misaligned(ea);
        }
        Span<byte> image = stackalloc byte[512];
        LoadBytes(ea, image);
        uint mxcsr = BinaryPrimitives.ReadUInt32LittleEndian(image[24..]);
        if ((mxcsr & ~SseFloat.MxcsrMask) != 0)
        {
            GuestFault.GeneralProtection(0, $"fxrstor loads reserved MXCSR bits (0x{mxcsr:x})");
        }
        _ = LoadFxrstor(image);
    }
}
