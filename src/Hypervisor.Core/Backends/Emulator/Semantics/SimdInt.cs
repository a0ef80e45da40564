using System.Numerics;
using System.Runtime.Intrinsics;

namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>Vector operations without exceptions or flags (shuffles, integer arithmetic): the <c>Cond</c> of a <c>VecBinary</c> op.</summary>
internal enum VecOp : byte
{
    // SSE2 / SSE3
    Shufpd,
    Movddup,
    Movshdup,
    Movsldup,
    // SSSE3
    Pshufb,
    Palignr,
    Phaddw,
    Phaddd,
    Phaddsw,
    Phsubw,
    Phsubd,
    Phsubsw,
    Pabsb,
    Pabsw,
    Pabsd,
    Pmaddubsw,
    Pmulhrsw,
    Psignb,
    Psignw,
    Psignd,
    // SSE4.1
    Blendps,
    Blendpd,
    Pblendw,
    Blendvps,
    Blendvpd,
    Pblendvb,
    Pminsb,
    Pminsd,
    Pminuw,
    Pminud,
    Pmaxsb,
    Pmaxsd,
    Pmaxuw,
    Pmaxud,
    Pmovsxbw,
    Pmovsxbd,
    Pmovsxbq,
    Pmovsxwd,
    Pmovsxwq,
    Pmovsxdq,
    Pmovzxbw,
    Pmovzxbd,
    Pmovzxbq,
    Pmovzxwd,
    Pmovzxwq,
    Pmovzxdq,
    Insertps,
    Mpsadbw,
    Packusdw,
    Pcmpeqq,
    Pmuldq,
    Pmulld,
    Phminposuw,
    // SSE4.2
    Pcmpgtq,
}

/// <summary>
/// Pure semantics of the SSE2..SSE4.2 vector instructions that raise no exception and set no flag: the result from
/// the destination's old value <c>a</c>, the source <c>b</c>, the immediate and (blendv) the implicit XMM0.
/// </summary>
internal static class SimdInt
{
    public static Vector128<byte> Execute(VecOp op, Vector128<byte> a, Vector128<byte> b, int imm, Vector128<byte> xmm0)
    {
        switch (op)
        {
            case VecOp.Shufpd:
                return Vector128.Create(a.AsUInt64()[imm & 1], b.AsUInt64()[(imm >> 1) & 1]).AsByte();
            case VecOp.Movddup:
                return Vector128.Create(b.AsUInt64()[0]).AsByte();
            case VecOp.Movshdup:
            {
                Vector128<uint> s = b.AsUInt32();
                return Vector128.Create(s[1], s[1], s[3], s[3]).AsByte();
            }
            case VecOp.Movsldup:
            {
                Vector128<uint> s = b.AsUInt32();
                return Vector128.Create(s[0], s[0], s[2], s[2]).AsByte();
            }
            case VecOp.Pshufb:
            {
                Span<byte> r = stackalloc byte[16];
                for (int i = 0; i < 16; i++)
                {
                    byte sel = b[i];
                    r[i] = (sel & 0x80) != 0 ? (byte)0 : a[sel & 15];
                }
                return Vector128.Create((ReadOnlySpan<byte>)r);
            }
            case VecOp.Palignr:
            {
                // (a:b) >> (imm * 8): b is the low half of the 32-byte concatenation.
                Span<byte> r = stackalloc byte[16];
                for (int i = 0; i < 16; i++)
                {
                    int k = i + imm;
                    r[i] = k < 16 ? b[k] : k < 32 ? a[k - 16] : (byte)0;
                }
                return Vector128.Create((ReadOnlySpan<byte>)r);
            }
            case VecOp.Phaddw:
            case VecOp.Phsubw:
            case VecOp.Phaddsw:
            case VecOp.Phsubsw:
            {
                Vector128<short> x = a.AsInt16(), y = b.AsInt16();
                Span<short> r = stackalloc short[8];
                for (int i = 0; i < 4; i++)
                {
                    r[i] = Horizontal16(op, x[2 * i], x[(2 * i) + 1]);
                    r[i + 4] = Horizontal16(op, y[2 * i], y[(2 * i) + 1]);
                }
                return Vector128.Create((ReadOnlySpan<short>)r).AsByte();
            }
            case VecOp.Phaddd:
            case VecOp.Phsubd:
            {
                Vector128<int> x = a.AsInt32(), y = b.AsInt32();
                bool add = op == VecOp.Phaddd;
                return Vector128.Create(
                    add ? x[0] + x[1] : x[0] - x[1], add ? x[2] + x[3] : x[2] - x[3],
                    add ? y[0] + y[1] : y[0] - y[1], add ? y[2] + y[3] : y[2] - y[3]).AsByte();
            }
            case VecOp.Pabsb:
                return Vector128.Abs(b.AsSByte()).AsByte();
            case VecOp.Pabsw:
                return Vector128.Abs(b.AsInt16()).AsByte();
            case VecOp.Pabsd:
                return Vector128.Abs(b.AsInt32()).AsByte();
            case VecOp.Pmaddubsw:
            {
                Vector128<sbyte> y = b.AsSByte();
                Span<short> r = stackalloc short[8];
                for (int i = 0; i < 8; i++)
                {
                    int v = (a[2 * i] * y[2 * i]) + (a[(2 * i) + 1] * y[(2 * i) + 1]);
                    r[i] = (short)Math.Clamp(v, short.MinValue, short.MaxValue);
                }
                return Vector128.Create((ReadOnlySpan<short>)r).AsByte();
            }
            case VecOp.Pmulhrsw:
            {
                Vector128<short> x = a.AsInt16(), y = b.AsInt16();
                Span<short> r = stackalloc short[8];
                for (int i = 0; i < 8; i++)
                {
                    r[i] = (short)((((x[i] * y[i]) >> 14) + 1) >> 1);
                }
                return Vector128.Create((ReadOnlySpan<short>)r).AsByte();
            }
            case VecOp.Psignb:
                return Sign<sbyte>(a, b);
            case VecOp.Psignw:
                return Sign<short>(a, b);
            case VecOp.Psignd:
                return Sign<int>(a, b);
            case VecOp.Blendps:
            {
                Vector128<uint> x = a.AsUInt32(), y = b.AsUInt32();
                return Vector128.Create((imm & 1) != 0 ? y[0] : x[0], (imm & 2) != 0 ? y[1] : x[1], (imm & 4) != 0 ? y[2] : x[2], (imm & 8) != 0 ? y[3] : x[3]).AsByte();
            }
            case VecOp.Blendpd:
                return Vector128.Create((imm & 1) != 0 ? b.AsUInt64()[0] : a.AsUInt64()[0], (imm & 2) != 0 ? b.AsUInt64()[1] : a.AsUInt64()[1]).AsByte();
            case VecOp.Pblendw:
            {
                Vector128<ushort> x = a.AsUInt16(), y = b.AsUInt16();
                Span<ushort> r = stackalloc ushort[8];
                for (int i = 0; i < 8; i++)
                {
                    r[i] = ((imm >> i) & 1) != 0 ? y[i] : x[i];
                }
                return Vector128.Create((ReadOnlySpan<ushort>)r).AsByte();
            }
            case VecOp.Blendvps:
                return Vector128.ConditionalSelect(Vector128.ShiftRightArithmetic(xmm0.AsInt32(), 31).AsByte(), b, a);
            case VecOp.Blendvpd:
                return Vector128.ConditionalSelect(Vector128.ShiftRightArithmetic(xmm0.AsInt64(), 63).AsByte(), b, a);
            case VecOp.Pblendvb:
                return Vector128.ConditionalSelect(Vector128.ShiftRightArithmetic(xmm0.AsSByte(), 7).AsByte(), b, a);
            case VecOp.Pminsb: return Vector128.Min(a.AsSByte(), b.AsSByte()).AsByte();
            case VecOp.Pminsd: return Vector128.Min(a.AsInt32(), b.AsInt32()).AsByte();
            case VecOp.Pminuw: return Vector128.Min(a.AsUInt16(), b.AsUInt16()).AsByte();
            case VecOp.Pminud: return Vector128.Min(a.AsUInt32(), b.AsUInt32()).AsByte();
            case VecOp.Pmaxsb: return Vector128.Max(a.AsSByte(), b.AsSByte()).AsByte();
            case VecOp.Pmaxsd: return Vector128.Max(a.AsInt32(), b.AsInt32()).AsByte();
            case VecOp.Pmaxuw: return Vector128.Max(a.AsUInt16(), b.AsUInt16()).AsByte();
            case VecOp.Pmaxud: return Vector128.Max(a.AsUInt32(), b.AsUInt32()).AsByte();
            case VecOp.Pmovsxbw: return Vector128.WidenLower(b.AsSByte()).AsByte();
            case VecOp.Pmovsxwd: return Vector128.WidenLower(b.AsInt16()).AsByte();
            case VecOp.Pmovsxdq: return Vector128.WidenLower(b.AsInt32()).AsByte();
            case VecOp.Pmovzxbw: return Vector128.WidenLower(b).AsByte();
            case VecOp.Pmovzxwd: return Vector128.WidenLower(b.AsUInt16()).AsByte();
            case VecOp.Pmovzxdq: return Vector128.WidenLower(b.AsUInt32()).AsByte();
            case VecOp.Pmovsxbd:
            {
                Vector128<sbyte> s = b.AsSByte();
                return Vector128.Create(s[0], s[1], s[2], s[3]).AsByte();
            }
            case VecOp.Pmovsxbq:
            {
                Vector128<sbyte> s = b.AsSByte();
                return Vector128.Create(s[0], (long)s[1]).AsByte();
            }
            case VecOp.Pmovsxwq:
            {
                Vector128<short> s = b.AsInt16();
                return Vector128.Create(s[0], (long)s[1]).AsByte();
            }
            case VecOp.Pmovzxbd:
                return Vector128.Create(b[0], b[1], b[2], (uint)b[3]).AsByte();
            case VecOp.Pmovzxbq:
                return Vector128.Create(b[0], (ulong)b[1]).AsByte();
            case VecOp.Pmovzxwq:
            {
                Vector128<ushort> s = b.AsUInt16();
                return Vector128.Create(s[0], (ulong)s[1]).AsByte();
            }
            case VecOp.Insertps:
            {
                // imm[7:6] source lane (the decoder clears it for a memory source), imm[5:4] destination lane, imm[3:0] zero mask.
                uint v = b.AsUInt32()[(imm >> 6) & 3];
                Vector128<uint> r = a.AsUInt32().WithElement((imm >> 4) & 3, v);
                for (int i = 0; i < 4; i++)
                {
                    if ((imm & (1 << i)) != 0)
                    {
                        r = r.WithElement(i, 0u);
                    }
                }
                return r.AsByte();
            }
            case VecOp.Mpsadbw:
            {
                int src = (imm & 3) * 4, dst = ((imm >> 2) & 1) * 4;
                Span<ushort> r = stackalloc ushort[8];
                for (int i = 0; i < 8; i++)
                {
                    int sum = 0;
                    for (int j = 0; j < 4; j++)
                    {
                        sum += Math.Abs(a[dst + i + j] - b[src + j]);
                    }
                    r[i] = (ushort)sum;
                }
                return Vector128.Create((ReadOnlySpan<ushort>)r).AsByte();
            }
            case VecOp.Packusdw:
            {
                Vector128<int> x = a.AsInt32(), y = b.AsInt32();
                Span<ushort> r = stackalloc ushort[8];
                for (int i = 0; i < 4; i++)
                {
                    r[i] = (ushort)Math.Clamp(x[i], 0, 65535);
                    r[i + 4] = (ushort)Math.Clamp(y[i], 0, 65535);
                }
                return Vector128.Create((ReadOnlySpan<ushort>)r).AsByte();
            }
            case VecOp.Pcmpeqq:
                return Vector128.Equals(a.AsUInt64(), b.AsUInt64()).AsByte();
            case VecOp.Pcmpgtq:
                return Vector128.GreaterThan(a.AsInt64(), b.AsInt64()).AsByte();
            case VecOp.Pmuldq:
            {
                Vector128<int> x = a.AsInt32(), y = b.AsInt32();
                return Vector128.Create((long)x[0] * y[0], (long)x[2] * y[2]).AsByte();
            }
            case VecOp.Pmulld:
                return (a.AsInt32() * b.AsInt32()).AsByte();
            case VecOp.Phminposuw:
            {
                Vector128<ushort> s = b.AsUInt16();
                int index = 0;
                for (int i = 1; i < 8; i++)
                {
                    if (s[i] < s[index])
                    {
                        index = i;
                    }
                }
                return Vector128.Create(s[index], (ushort)index, 0, 0, 0, 0, 0, 0).AsByte();
            }
            default:
                throw new InvalidOperationException($"vector op {op} has no semantics");
        }
    }

    private static short Horizontal16(VecOp op, short x, short y) => op switch
    {
        VecOp.Phaddw => (short)(x + y),
        VecOp.Phsubw => (short)(x - y),
        VecOp.Phaddsw => (short)Math.Clamp(x + y, short.MinValue, short.MaxValue),
        _ => (short)Math.Clamp(x - y, short.MinValue, short.MaxValue),
    };

    /// <summary>psignb/w/d: each lane of <paramref name="a"/> negated (wrapping) where <paramref name="b"/>'s is negative, zeroed where it is zero, kept where positive.</summary>
    private static Vector128<byte> Sign<T>(Vector128<byte> a, Vector128<byte> b)
        where T : unmanaged, ISignedNumber<T>
    {
        Vector128<T> x = a.As<byte, T>(), y = b.As<byte, T>();
        Vector128<T> r = Vector128.ConditionalSelect(Vector128.LessThan(y, Vector128<T>.Zero), -x, x);
        return Vector128.AndNot(r, Vector128.Equals(y, Vector128<T>.Zero)).AsByte();
    }

    /// <summary>ptest: ZF when (a AND b) is zero, CF when (NOT a AND b) is zero; the other arithmetic flags clear.</summary>
    public static ulong PtestFlags(Vector128<byte> a, Vector128<byte> b)
    {
        const ulong CF = 0x1, ZF = 0x40;
        ulong f = 0;
        if ((a & b) == Vector128<byte>.Zero)
        {
            f |= ZF;
        }
        if (Vector128.AndNot(b, a) == Vector128<byte>.Zero)
        {
            f |= CF;
        }
        return f;
    }
}
