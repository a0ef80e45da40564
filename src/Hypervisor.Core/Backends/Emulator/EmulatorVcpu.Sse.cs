using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Paravirt.Hypervisor.Backends.Emulator;

internal sealed unsafe partial class EmulatorVcpu
{
    /// <summary>The 128-bit source operand B: an XMM register or (aligned when required) memory.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<byte> XmmB(ref MicroOp op) =>
        op.B == Loc.Reg ? _x[op.RegB] : Load128(Ea(ref op), op.Aligned);

    private void ExecuteSse(ref MicroOp op)
    {
        if (_s->SseFault != 0)
        {
            SseUnavailable();
        }
        ref Vector128<byte> dst = ref _x[op.RegA & 15];
        switch (op.Kind)
        {
            case OpKind.MovX128:
                if (op.A == Loc.Mem)
                {
                    Store128(Ea(ref op), _x[op.RegB], op.Aligned);
                }
                else
                {
                    dst = XmmB(ref op);
                }
                break;
            case OpKind.MovdToX:
                dst = Vector128.Create(ReadB(ref op, op.Size), 0UL).AsByte();
                break;
            case OpKind.MovdFromX:
            {
                ulong v = _x[op.RegB].AsUInt64().GetElement(0);
                if (op.A == Loc.Reg)
                {
                    SetReg(op.RegA, op.Size, v);
                }
                else
                {
                    Store(Ea(ref op), op.Size, v);
                }
                break;
            }
            case OpKind.MovqXX:
                if (op.A == Loc.Mem)
                {
                    Store(Ea(ref op), 8, _x[op.RegB].AsUInt64().GetElement(0));
                }
                else
                {
                    ulong v = op.B == Loc.Reg ? _x[op.RegB].AsUInt64().GetElement(0) : Load(Ea(ref op), 8);
                    dst = Vector128.Create(v, 0UL).AsByte();
                }
                break;
            case OpKind.MovqStore:
                Store(Ea(ref op), 8, _x[op.RegB].AsUInt64().GetElement(0));
                break;
            case OpKind.MovssLoad:
                dst = Vector128.Create((uint)Load(Ea(ref op), 4), 0u, 0u, 0u).AsByte();
                break;
            case OpKind.MovsdLoad:
                dst = Vector128.Create(Load(Ea(ref op), 8), 0UL).AsByte();
                break;
            case OpKind.MovssRR:
                dst = dst.AsUInt32().WithElement(0, _x[op.RegB].AsUInt32().GetElement(0)).AsByte();
                break;
            case OpKind.MovsdRR:
            case OpKind.MovLowLoad when op.B == Loc.Reg:
                dst = dst.AsUInt64().WithElement(0, _x[op.RegB].AsUInt64().GetElement(0)).AsByte();
                break;
            case OpKind.MovssStore:
                Store(Ea(ref op), 4, _x[op.RegB].AsUInt32().GetElement(0));
                break;
            case OpKind.MovsdStore:
            case OpKind.MovLowStore:
                Store(Ea(ref op), 8, _x[op.RegB].AsUInt64().GetElement(0));
                break;
            case OpKind.MovLowLoad:
                dst = dst.AsUInt64().WithElement(0, Load(Ea(ref op), 8)).AsByte();
                break;
            case OpKind.MovHighLoad:
                dst = dst.AsUInt64().WithElement(1, Load(Ea(ref op), 8)).AsByte();
                break;
            case OpKind.MovHighStore:
                Store(Ea(ref op), 8, _x[op.RegB].AsUInt64().GetElement(1));
                break;
            case OpKind.Movhlps:
                dst = dst.AsUInt64().WithElement(0, _x[op.RegB].AsUInt64().GetElement(1)).AsByte();
                break;
            case OpKind.Movlhps:
                dst = dst.AsUInt64().WithElement(1, _x[op.RegB].AsUInt64().GetElement(0)).AsByte();
                break;
            case OpKind.Pxor: dst ^= XmmB(ref op); break;
            case OpKind.Pand: dst &= XmmB(ref op); break;
            case OpKind.Por: dst |= XmmB(ref op); break;
            case OpKind.Pandn: dst = Vector128.AndNot(XmmB(ref op), dst); break;
            case OpKind.Paddd: dst = (dst.AsUInt32() + XmmB(ref op).AsUInt32()).AsByte(); break;
            case OpKind.Psubd: dst = (dst.AsUInt32() - XmmB(ref op).AsUInt32()).AsByte(); break;
            case OpKind.Paddq: dst = (dst.AsUInt64() + XmmB(ref op).AsUInt64()).AsByte(); break;
            case OpKind.PslldI: dst = ShiftLeft(dst, 4, op.Imm); break;
            case OpKind.PsrldI: dst = ShiftRight(dst, 4, op.Imm, arithmetic: false); break;
            case OpKind.PsrlwI: dst = ShiftRight(dst, 2, op.Imm, arithmetic: false); break;
            case OpKind.PsllwI: dst = ShiftLeft(dst, 2, op.Imm); break;
            case OpKind.Punpcklbw when Sse2.IsSupported: dst = Sse2.UnpackLow(dst, XmmB(ref op)); break;
            case OpKind.Punpckhbw when Sse2.IsSupported: dst = Sse2.UnpackHigh(dst, XmmB(ref op)); break;
            case OpKind.Punpcklwd when Sse2.IsSupported: dst = Sse2.UnpackLow(dst.AsUInt16(), XmmB(ref op).AsUInt16()).AsByte(); break;
            case OpKind.Punpckhwd when Sse2.IsSupported: dst = Sse2.UnpackHigh(dst.AsUInt16(), XmmB(ref op).AsUInt16()).AsByte(); break;
            case OpKind.Punpckldq when Sse2.IsSupported: dst = Sse2.UnpackLow(dst.AsUInt32(), XmmB(ref op).AsUInt32()).AsByte(); break;
            case OpKind.Punpckhdq when Sse2.IsSupported: dst = Sse2.UnpackHigh(dst.AsUInt32(), XmmB(ref op).AsUInt32()).AsByte(); break;
            case OpKind.Punpcklqdq when Sse2.IsSupported: dst = Sse2.UnpackLow(dst.AsUInt64(), XmmB(ref op).AsUInt64()).AsByte(); break;
            case OpKind.Punpckhqdq when Sse2.IsSupported: dst = Sse2.UnpackHigh(dst.AsUInt64(), XmmB(ref op).AsUInt64()).AsByte(); break;
            case OpKind.Packuswb when Sse2.IsSupported: dst = Sse2.PackUnsignedSaturate(dst.AsInt16(), XmmB(ref op).AsInt16()); break;
            case OpKind.Packsswb when Sse2.IsSupported: dst = Sse2.PackSignedSaturate(dst.AsInt16(), XmmB(ref op).AsInt16()).AsByte(); break;
            case OpKind.Packssdw when Sse2.IsSupported: dst = Sse2.PackSignedSaturate(dst.AsInt32(), XmmB(ref op).AsInt32()).AsByte(); break;
            case OpKind.Pshufd when Ssse3.IsSupported: dst = Ssse3.Shuffle(XmmB(ref op), PshufdMask((int)op.Imm)); break;
            default:
                ExecuteSseRare(ref op, ref dst);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ExecuteSseRare(ref MicroOp op, ref Vector128<byte> dst)
    {
        switch (op.Kind)
        {
            case OpKind.Pcmpeqb: dst = Vector128.Equals(dst, XmmB(ref op)); break;
            case OpKind.Pcmpeqw: dst = Vector128.Equals(dst.AsUInt16(), XmmB(ref op).AsUInt16()).AsByte(); break;
            case OpKind.Pcmpeqd: dst = Vector128.Equals(dst.AsUInt32(), XmmB(ref op).AsUInt32()).AsByte(); break;
            case OpKind.Pcmpgtb: dst = Vector128.GreaterThan(dst.AsSByte(), XmmB(ref op).AsSByte()).AsByte(); break;
            case OpKind.Pcmpgtw: dst = Vector128.GreaterThan(dst.AsInt16(), XmmB(ref op).AsInt16()).AsByte(); break;
            case OpKind.Pcmpgtd: dst = Vector128.GreaterThan(dst.AsInt32(), XmmB(ref op).AsInt32()).AsByte(); break;
            case OpKind.Pmovmskb:
                SetReg(op.RegA, op.Size, Vector128.ExtractMostSignificantBits(_x[op.RegB]));
                break;
            case OpKind.Movmskps:
                SetReg(op.RegA, op.Size, Vector128.ExtractMostSignificantBits(_x[op.RegB].AsUInt32()));
                break;
            case OpKind.Movmskpd:
                SetReg(op.RegA, op.Size, Vector128.ExtractMostSignificantBits(_x[op.RegB].AsUInt64()));
                break;
            case OpKind.Punpcklbw: dst = Unpack(dst, XmmB(ref op), 1, high: false); break;
            case OpKind.Punpcklwd: dst = Unpack(dst, XmmB(ref op), 2, high: false); break;
            case OpKind.Punpckldq: dst = Unpack(dst, XmmB(ref op), 4, high: false); break;
            case OpKind.Punpcklqdq: dst = Unpack(dst, XmmB(ref op), 8, high: false); break;
            case OpKind.Punpckhbw: dst = Unpack(dst, XmmB(ref op), 1, high: true); break;
            case OpKind.Punpckhwd: dst = Unpack(dst, XmmB(ref op), 2, high: true); break;
            case OpKind.Punpckhdq: dst = Unpack(dst, XmmB(ref op), 4, high: true); break;
            case OpKind.Punpckhqdq: dst = Unpack(dst, XmmB(ref op), 8, high: true); break;
            case OpKind.Pshufd:
            {
                Vector128<uint> s = XmmB(ref op).AsUInt32();
                int imm = (int)op.Imm;
                dst = Vector128.Create(s.GetElement(imm & 3), s.GetElement((imm >> 2) & 3), s.GetElement((imm >> 4) & 3), s.GetElement((imm >> 6) & 3)).AsByte();
                break;
            }
            case OpKind.Pshuflw:
            case OpKind.Pshufhw:
            {
                Vector128<ushort> s = XmmB(ref op).AsUInt16();
                int imm = (int)op.Imm;
                int o = op.Kind == OpKind.Pshufhw ? 4 : 0;
                Vector128<ushort> r = s;
                for (int k = 0; k < 4; k++)
                {
                    r = r.WithElement(o + k, s.GetElement(o + ((imm >> (2 * k)) & 3)));
                }
                dst = r.AsByte();
                break;
            }
            case OpKind.Shufps:
            {
                Vector128<uint> s = XmmB(ref op).AsUInt32();
                Vector128<uint> d = dst.AsUInt32();
                int imm = (int)op.Imm;
                dst = Vector128.Create(d.GetElement(imm & 3), d.GetElement((imm >> 2) & 3), s.GetElement((imm >> 4) & 3), s.GetElement((imm >> 6) & 3)).AsByte();
                break;
            }
            case OpKind.Paddb: dst += XmmB(ref op); break;
            case OpKind.Paddw: dst = (dst.AsUInt16() + XmmB(ref op).AsUInt16()).AsByte(); break;
            case OpKind.Paddd: dst = (dst.AsUInt32() + XmmB(ref op).AsUInt32()).AsByte(); break;
            case OpKind.Paddq: dst = (dst.AsUInt64() + XmmB(ref op).AsUInt64()).AsByte(); break;
            case OpKind.Psubb: dst -= XmmB(ref op); break;
            case OpKind.Psubw: dst = (dst.AsUInt16() - XmmB(ref op).AsUInt16()).AsByte(); break;
            case OpKind.Psubd: dst = (dst.AsUInt32() - XmmB(ref op).AsUInt32()).AsByte(); break;
            case OpKind.Psubq: dst = (dst.AsUInt64() - XmmB(ref op).AsUInt64()).AsByte(); break;
            case OpKind.Pmuludq:
            {
                Vector128<ulong> a = dst.AsUInt64(), b = XmmB(ref op).AsUInt64();
                dst = Vector128.Create((a.GetElement(0) & 0xFFFF_FFFF) * (b.GetElement(0) & 0xFFFF_FFFF), (a.GetElement(1) & 0xFFFF_FFFF) * (b.GetElement(1) & 0xFFFF_FFFF)).AsByte();
                break;
            }
            case OpKind.Pmullw: dst = (dst.AsUInt16() * XmmB(ref op).AsUInt16()).AsByte(); break;
            case OpKind.Pminub: dst = Vector128.Min(dst, XmmB(ref op)); break;
            case OpKind.Pmaxub: dst = Vector128.Max(dst, XmmB(ref op)); break;
            case OpKind.Pminsw: dst = Vector128.Min(dst.AsInt16(), XmmB(ref op).AsInt16()).AsByte(); break;
            case OpKind.Pmaxsw: dst = Vector128.Max(dst.AsInt16(), XmmB(ref op).AsInt16()).AsByte(); break;
            case OpKind.PsllwI: dst = ShiftLeft(dst, 2, op.Imm); break;
            case OpKind.PslldI: dst = ShiftLeft(dst, 4, op.Imm); break;
            case OpKind.PsllqI: dst = ShiftLeft(dst, 8, op.Imm); break;
            case OpKind.PsrlwI: dst = ShiftRight(dst, 2, op.Imm, arithmetic: false); break;
            case OpKind.PsrldI: dst = ShiftRight(dst, 4, op.Imm, arithmetic: false); break;
            case OpKind.PsrlqI: dst = ShiftRight(dst, 8, op.Imm, arithmetic: false); break;
            case OpKind.PsrawI: dst = ShiftRight(dst, 2, op.Imm, arithmetic: true); break;
            case OpKind.PsradI: dst = ShiftRight(dst, 4, op.Imm, arithmetic: true); break;
            case OpKind.Psllw: dst = ShiftLeft(dst, 2, XmmB(ref op).AsUInt64().GetElement(0)); break;
            case OpKind.Pslld: dst = ShiftLeft(dst, 4, XmmB(ref op).AsUInt64().GetElement(0)); break;
            case OpKind.Psllq: dst = ShiftLeft(dst, 8, XmmB(ref op).AsUInt64().GetElement(0)); break;
            case OpKind.Psrlw: dst = ShiftRight(dst, 2, XmmB(ref op).AsUInt64().GetElement(0), arithmetic: false); break;
            case OpKind.Psrld: dst = ShiftRight(dst, 4, XmmB(ref op).AsUInt64().GetElement(0), arithmetic: false); break;
            case OpKind.Psrlq: dst = ShiftRight(dst, 8, XmmB(ref op).AsUInt64().GetElement(0), arithmetic: false); break;
            case OpKind.Psraw: dst = ShiftRight(dst, 2, XmmB(ref op).AsUInt64().GetElement(0), arithmetic: true); break;
            case OpKind.Psrad: dst = ShiftRight(dst, 4, XmmB(ref op).AsUInt64().GetElement(0), arithmetic: true); break;
            case OpKind.PslldqI:
            case OpKind.PsrldqI:
            {
                int n = (int)Math.Min(op.Imm, 16);
                UInt128 v = Unsafe.As<Vector128<byte>, UInt128>(ref dst);
                v = n == 16 ? 0 : op.Kind == OpKind.PslldqI ? v << (n * 8) : v >> (n * 8);
                dst = Unsafe.As<UInt128, Vector128<byte>>(ref v);
                break;
            }
            case OpKind.Packuswb: dst = PackUnsigned(dst.AsInt16(), XmmB(ref op).AsInt16()); break;
            case OpKind.Packsswb: dst = PackSigned16(dst.AsInt16(), XmmB(ref op).AsInt16()); break;
            case OpKind.Packssdw: dst = PackSigned32(dst.AsInt32(), XmmB(ref op).AsInt32()); break;
            case OpKind.Paddusb: dst = Lanes8(dst, XmmB(ref op), static (a, b) => Math.Min(a + b, 255)); break;
            case OpKind.Psubusb: dst = Lanes8(dst, XmmB(ref op), static (a, b) => Math.Max(a - b, 0)); break;
            case OpKind.Paddsb: dst = Lanes8(dst, XmmB(ref op), static (a, b) => Math.Clamp((sbyte)a + (sbyte)b, -128, 127)); break;
            case OpKind.Psubsb: dst = Lanes8(dst, XmmB(ref op), static (a, b) => Math.Clamp((sbyte)a - (sbyte)b, -128, 127)); break;
            case OpKind.Pavgb: dst = Lanes8(dst, XmmB(ref op), static (a, b) => (a + b + 1) >> 1); break;
            case OpKind.Paddusw: dst = Lanes16(dst, XmmB(ref op), static (a, b) => Math.Min(a + b, 65535)); break;
            case OpKind.Psubusw: dst = Lanes16(dst, XmmB(ref op), static (a, b) => Math.Max(a - b, 0)); break;
            case OpKind.Paddsw: dst = Lanes16(dst, XmmB(ref op), static (a, b) => Math.Clamp((short)a + (short)b, -32768, 32767)); break;
            case OpKind.Psubsw: dst = Lanes16(dst, XmmB(ref op), static (a, b) => Math.Clamp((short)a - (short)b, -32768, 32767)); break;
            case OpKind.Pavgw: dst = Lanes16(dst, XmmB(ref op), static (a, b) => (a + b + 1) >> 1); break;
            case OpKind.Pmulhw: dst = Lanes16(dst, XmmB(ref op), static (a, b) => ((short)a * (short)b) >> 16); break;
            case OpKind.Pmulhuw: dst = Lanes16(dst, XmmB(ref op), static (a, b) => (a * b) >> 16); break;
            case OpKind.Pmaddwd:
            {
                Vector128<short> a = dst.AsInt16(), b = XmmB(ref op).AsInt16();
                Vector128<int> r = Vector128<int>.Zero;
                for (int k = 0; k < 4; k++)
                {
                    r = r.WithElement(k, (a.GetElement(2 * k) * b.GetElement(2 * k)) + (a.GetElement((2 * k) + 1) * b.GetElement((2 * k) + 1)));
                }
                dst = r.AsByte();
                break;
            }
            case OpKind.Psadbw:
            {
                Vector128<byte> a = dst, b = XmmB(ref op);
                ulong lo = 0, hi = 0;
                for (int k = 0; k < 8; k++)
                {
                    lo += (ulong)Math.Abs(a.GetElement(k) - b.GetElement(k));
                    hi += (ulong)Math.Abs(a.GetElement(k + 8) - b.GetElement(k + 8));
                }
                dst = Vector128.Create(lo, hi).AsByte();
                break;
            }
            case OpKind.Pextrw:
                SetReg(op.RegA, op.Size, _x[op.RegB].AsUInt16().GetElement((int)op.Imm));
                break;
            case OpKind.Pinsrw:
            {
                ulong v = op.B == Loc.Reg ? GetReg(op.RegB, 2) : Load(Ea(ref op), 2);
                dst = dst.AsUInt16().WithElement((int)op.Imm, (ushort)v).AsByte();
                break;
            }
            default:
                throw new InvalidOperationException($"op {op.Kind} at 0x{op.Rip:x} has no handler");
        }
    }

    private static Vector128<byte> Unpack(Vector128<byte> a, Vector128<byte> b, int elem, bool high)
    {
        Span<byte> r = stackalloc byte[16];
        int start = high ? 8 : 0;
        int n = 8 / elem;
        for (int k = 0; k < n; k++)
        {
            for (int j = 0; j < elem; j++)
            {
                r[(2 * k * elem) + j] = a.GetElement(start + (k * elem) + j);
                r[(((2 * k) + 1) * elem) + j] = b.GetElement(start + (k * elem) + j);
            }
        }
        return Vector128.Create((ReadOnlySpan<byte>)r);
    }

    private static Vector128<byte> ShiftLeft(Vector128<byte> v, int elem, ulong count)
    {
        int bits = elem * 8;
        if (count >= (ulong)bits)
        {
            return Vector128<byte>.Zero;
        }
        int c = (int)count;
        return elem switch
        {
            2 => Vector128.ShiftLeft(v.AsUInt16(), c).AsByte(),
            4 => Vector128.ShiftLeft(v.AsUInt32(), c).AsByte(),
            _ => Vector128.ShiftLeft(v.AsUInt64(), c).AsByte(),
        };
    }

    private static Vector128<byte> ShiftRight(Vector128<byte> v, int elem, ulong count, bool arithmetic)
    {
        int bits = elem * 8;
        if (count >= (ulong)bits)
        {
            if (!arithmetic)
            {
                return Vector128<byte>.Zero;
            }
            count = (ulong)(bits - 1);
        }
        int c = (int)count;
        if (arithmetic)
        {
            return elem == 2 ? Vector128.ShiftRightArithmetic(v.AsInt16(), c).AsByte() : Vector128.ShiftRightArithmetic(v.AsInt32(), c).AsByte();
        }
        return elem switch
        {
            2 => Vector128.ShiftRightLogical(v.AsUInt16(), c).AsByte(),
            4 => Vector128.ShiftRightLogical(v.AsUInt32(), c).AsByte(),
            _ => Vector128.ShiftRightLogical(v.AsUInt64(), c).AsByte(),
        };
    }

    private static Vector128<byte> PackUnsigned(Vector128<short> a, Vector128<short> b)
    {
        Vector128<byte> r = Vector128<byte>.Zero;
        for (int k = 0; k < 8; k++)
        {
            r = r.WithElement(k, (byte)Math.Clamp((int)a.GetElement(k), 0, 255));
            r = r.WithElement(k + 8, (byte)Math.Clamp((int)b.GetElement(k), 0, 255));
        }
        return r;
    }

    private static Vector128<byte> PackSigned16(Vector128<short> a, Vector128<short> b)
    {
        Vector128<sbyte> r = Vector128<sbyte>.Zero;
        for (int k = 0; k < 8; k++)
        {
            r = r.WithElement(k, (sbyte)Math.Clamp((int)a.GetElement(k), -128, 127));
            r = r.WithElement(k + 8, (sbyte)Math.Clamp((int)b.GetElement(k), -128, 127));
        }
        return r.AsByte();
    }

    private static Vector128<byte> PackSigned32(Vector128<int> a, Vector128<int> b)
    {
        Vector128<short> r = Vector128<short>.Zero;
        for (int k = 0; k < 4; k++)
        {
            r = r.WithElement(k, (short)Math.Clamp(a.GetElement(k), -32768, 32767));
            r = r.WithElement(k + 4, (short)Math.Clamp(b.GetElement(k), -32768, 32767));
        }
        return r.AsByte();
    }

    private static Vector128<byte> Lanes8(Vector128<byte> a, Vector128<byte> b, Func<int, int, int> f)
    {
        Vector128<byte> r = Vector128<byte>.Zero;
        for (int k = 0; k < 16; k++)
        {
            r = r.WithElement(k, (byte)f(a.GetElement(k), b.GetElement(k)));
        }
        return r;
    }

    private static Vector128<byte> Lanes16(Vector128<byte> a, Vector128<byte> b, Func<int, int, int> f)
    {
        Vector128<ushort> x = a.AsUInt16(), y = b.AsUInt16(), r = Vector128<ushort>.Zero;
        for (int k = 0; k < 8; k++)
        {
            r = r.WithElement(k, (ushort)f(x.GetElement(k), y.GetElement(k)));
        }
        return r.AsByte();
    }

    private static readonly Vector128<byte>[] PshufdMasks = BuildPshufdMasks();

    private static Vector128<byte>[] BuildPshufdMasks()
    {
        var masks = new Vector128<byte>[256];
        Span<byte> m = stackalloc byte[16];
        for (int imm = 0; imm < 256; imm++)
        {
            for (int k = 0; k < 4; k++)
            {
                int src = (imm >> (2 * k)) & 3;
                for (int j = 0; j < 4; j++)
                {
                    m[(4 * k) + j] = (byte)((4 * src) + j);
                }
            }
            masks[imm] = Vector128.Create((ReadOnlySpan<byte>)m);
        }
        return masks;
    }

    private static Vector128<byte> PshufdMask(int imm) => PshufdMasks[imm & 0xFF];
}
