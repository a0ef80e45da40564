using System.Runtime.Intrinsics;

namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>The arithmetic of an SSE floating-point instruction.</summary>
internal enum SseOp : byte
{
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Sqrt,
}

/// <summary>The vector and float-to-float conversions (cvt*): destination and source forms.</summary>
internal enum CvtKind : byte
{
    Ss2Sd,
    Sd2Ss,
    Ps2Pd,
    Pd2Ps,
    Dq2Ps,
    Dq2Pd,
    Ps2Dq,
    Tps2Dq,
    Pd2Dq,
    Tpd2Dq,
}

/// <summary>Which lanes an SSE floating-point instruction works on.</summary>
internal enum SseShape : byte
{
    /// <summary>Scalar single (lane 0 of four; the rest of the destination is kept).</summary>
    Ss,
    /// <summary>Scalar double.</summary>
    Sd,
    /// <summary>Packed single (four lanes).</summary>
    Ps,
    /// <summary>Packed double (two lanes).</summary>
    Pd,
}

/// <summary>
/// SSE/SSE2/SSE3/SSE4.1 floating-point semantics under an MXCSR: results bit-exact with x86 (NaN propagation: the
/// first source's NaN wins and is quieted; default NaN = negative quiet NaN), all four rounding modes, DAZ and FTZ,
/// and the six exception flags exactly as hardware sets them for masked exceptions (the caller raises #XM when a
/// raised flag is unmasked and then discards the result). Pure functions of their inputs: the flags come back in
/// <c>flags</c> (MXCSR bit order). When MXCSR is in its everyday state (round to nearest, no DAZ/FTZ, PE already set
/// and masked) and operands and result are ordinary normal numbers, the host's IEEE arithmetic gives the same bits
/// and no new flag, so it is used; everything else goes through <see cref="SoftFloat"/>.
/// </summary>
internal static class SseFloat
{
    public const uint IE = 0x1, DE = 0x2, ZE = 0x4, OE = 0x8, UE = 0x10, PE = 0x20, DAZ = 0x40;
    public const uint IM = 0x80, DM = 0x100, ZM = 0x200, OM = 0x400, UM = 0x800, PM = 0x1000, RC = 0x6000, FTZ = 0x8000;
    /// <summary>MXCSR after reset: all exceptions masked, round to nearest.</summary>
    public const uint MxcsrDefault = 0x1F80;
    /// <summary>MXCSR bits software may set (FXSAVE's MXCSR_MASK): DAZ is supported; bit 16 and up are reserved (#GP).</summary>
    public const uint MxcsrMask = 0xFFFF;
    /// <summary>32-bit and 64-bit "integer indefinite": the result of an invalid float-to-integer conversion.</summary>
    public const uint IntIndefinite32 = 0x8000_0000;
    public const ulong IntIndefinite64 = 0x8000_0000_0000_0000;

    // The fast path applies when: round to nearest, no DAZ, no FTZ, PE already set and masked.
    private const uint FastMask = PE | DAZ | PM | RC | FTZ;
    private const uint FastValue = PE | PM;

    public static RoundingMode Mode(uint mxcsr) => (RoundingMode)((mxcsr >> 13) & 3);

    private static RoundParams Params64(uint mxcsr) =>
        RoundParams.Double(Mode(mxcsr), (mxcsr & FTZ) != 0, (mxcsr & UM) == 0, (mxcsr & OM) == 0);

    private static RoundParams Params32(uint mxcsr) =>
        RoundParams.Single(Mode(mxcsr), (mxcsr & FTZ) != 0, (mxcsr & UM) == 0, (mxcsr & OM) == 0);

    private static bool Daz(uint mxcsr) => (mxcsr & DAZ) != 0;

    // ---- arithmetic ----

    /// <summary>addss/sd/ps/pd, sub*, mul*, div*, min*, max*, sqrt*: <paramref name="a"/> is the destination (first source).</summary>
    public static Vector128<byte> Arith(SseOp op, SseShape shape, Vector128<byte> a, Vector128<byte> b, uint mxcsr, ref uint flags)
    {
        switch (shape)
        {
            case SseShape.Sd:
                return a.AsUInt64().WithElement(0, Arith64(op, a.AsUInt64().ToScalar(), b.AsUInt64().ToScalar(), mxcsr, ref flags)).AsByte();
            case SseShape.Ss:
                return a.AsUInt32().WithElement(0, Arith32(op, a.AsUInt32().ToScalar(), b.AsUInt32().ToScalar(), mxcsr, ref flags)).AsByte();
            case SseShape.Pd:
            {
                Vector128<ulong> x = a.AsUInt64(), y = b.AsUInt64();
                ulong r0 = Arith64(op, x.GetElement(0), y.GetElement(0), mxcsr, ref flags);
                ulong r1 = Arith64(op, x.GetElement(1), y.GetElement(1), mxcsr, ref flags);
                return Vector128.Create(r0, r1).AsByte();
            }
            default:
            {
                Vector128<uint> x = a.AsUInt32(), y = b.AsUInt32();
                uint r0 = Arith32(op, x.GetElement(0), y.GetElement(0), mxcsr, ref flags);
                uint r1 = Arith32(op, x.GetElement(1), y.GetElement(1), mxcsr, ref flags);
                uint r2 = Arith32(op, x.GetElement(2), y.GetElement(2), mxcsr, ref flags);
                uint r3 = Arith32(op, x.GetElement(3), y.GetElement(3), mxcsr, ref flags);
                return Vector128.Create(r0, r1, r2, r3).AsByte();
            }
        }
    }

    /// <summary>One binary64 operation (for sqrt the operand is <paramref name="b"/>).</summary>
    public static ulong Arith64(SseOp op, ulong a, ulong b, uint mxcsr, ref uint flags)
    {
        if (FastMxcsr(mxcsr) && op <= SseOp.Div && Plain64(a) && Plain64(b))
        {
            double x = BitConverter.UInt64BitsToDouble(a), y = BitConverter.UInt64BitsToDouble(b);
            double r = op switch
            {
                SseOp.Add => x + y,
                SseOp.Sub => x - y,
                SseOp.Mul => x * y,
                _ => x / y,
            };
            ulong bits = BitConverter.DoubleToUInt64Bits(r);
            if (FastResult64(op, a, b, bits))
            {
                return bits;
            }
        }
        else if (op == SseOp.Sqrt && FastMxcsr(mxcsr) && FastSqrt64(b))
        {
            return BitConverter.DoubleToUInt64Bits(Math.Sqrt(BitConverter.UInt64BitsToDouble(b)));
        }
        return Slow64(op, a, b, mxcsr, ref flags);
    }

    public static uint Arith32(SseOp op, uint a, uint b, uint mxcsr, ref uint flags)
    {
        if (FastMxcsr(mxcsr) && op <= SseOp.Div && Plain32(a) && Plain32(b))
        {
            float x = BitConverter.UInt32BitsToSingle(a), y = BitConverter.UInt32BitsToSingle(b);
            float r = op switch
            {
                SseOp.Add => x + y,
                SseOp.Sub => x - y,
                SseOp.Mul => x * y,
                _ => x / y,
            };
            uint bits = BitConverter.SingleToUInt32Bits(r);
            if (FastResult32(op, a, b, bits))
            {
                return bits;
            }
        }
        return Slow32(op, a, b, mxcsr, ref flags);
    }

    // The host fast path's conditions. Translated code (BlockCompiler.Sse.cs) calls these same predicates, so the
    // interpreter and translated code take the host's result in exactly the same cases.

    /// <summary>MXCSR allows the host's result: round to nearest, no DAZ, no FTZ, PE already set and masked (so a new inexact result changes nothing).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool FastMxcsr(uint mxcsr) => (mxcsr & FastMask) == FastValue;

    /// <summary>
    /// The host's add/sub/mul/div of two <see cref="Plain64"/> operands raised no flag but PE: a normal result well
    /// above the underflow threshold (and finite: no overflow, no invalid 0/0, no division by zero), or an exact zero
    /// from an addition or subtraction, or from a zero operand.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool FastResult64(SseOp op, ulong a, ulong b, ulong bits) =>
        ((bits >> 52) & 0x7FF) - 2 < 0x7FD || ((bits << 1) == 0 && (op <= SseOp.Sub || (a << 1) == 0 || (b << 1) == 0));

    /// <summary>As <see cref="FastResult64"/> for binary32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool FastResult32(SseOp op, uint a, uint b, uint bits) =>
        ((bits >> 23) & 0xFF) - 2 < 0xFD || ((bits << 1) == 0 && (op <= SseOp.Sub || (a << 1) == 0 || (b << 1) == 0));

    /// <summary>A positive normal sqrt operand: its square root is normal; only PE can be raised.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool FastSqrt64(ulong b) => (b >> 52) - 1 < 0x7FE;

    /// <summary>Zero or a normal number (not denormal, infinite or NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool Plain64(ulong v)
    {
        ulong e = (v >> 52) & 0x7FF;
        return e - 1 < 0x7FE || (v << 1) == 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool Plain32(uint v)
    {
        uint e = (v >> 23) & 0xFF;
        return e - 1 < 0xFE || (v << 1) == 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong Slow64(SseOp op, ulong a, ulong b, uint mxcsr, ref uint flags)
    {
        bool daz = Daz(mxcsr);
        Unpacked x = SoftFloat.Unpack64(a, daz), y = SoftFloat.Unpack64(b, daz);
        FpFlags f = FpFlags.None;
        if (op is SseOp.Min or SseOp.Max)
        {
            int pick = MinMax(op, x, y, ref f);
            flags |= (uint)(f & FpFlags.All);
            return pick == 0 ? (x.Class == FpClass.Zero ? SoftFloat.Pack64(x) : a) : (y.Class == FpClass.Zero ? SoftFloat.Pack64(y) : b);
        }
        RoundParams p = Params64(mxcsr);
        Unpacked r = Compute(op, x, y, p, ref f);
        flags |= (uint)(f & FpFlags.All);
        return SoftFloat.Pack64(r);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static uint Slow32(SseOp op, uint a, uint b, uint mxcsr, ref uint flags)
    {
        bool daz = Daz(mxcsr);
        Unpacked x = SoftFloat.Unpack32(a, daz), y = SoftFloat.Unpack32(b, daz);
        FpFlags f = FpFlags.None;
        if (op is SseOp.Min or SseOp.Max)
        {
            int pick = MinMax(op, x, y, ref f);
            flags |= (uint)(f & FpFlags.All);
            return pick == 0 ? (x.Class == FpClass.Zero ? SoftFloat.Pack32(x) : a) : (y.Class == FpClass.Zero ? SoftFloat.Pack32(y) : b);
        }
        RoundParams p = Params32(mxcsr);
        Unpacked r = Compute(op, x, y, p, ref f);
        flags |= (uint)(f & FpFlags.All);
        return SoftFloat.Pack32(r);
    }

    /// <summary>minss/maxss...: 0 picks the destination, 1 the source (which wins for NaNs and for two zeros).</summary>
    private static int MinMax(SseOp op, in Unpacked x, in Unpacked y, ref FpFlags f)
    {
        if (x.IsNaN || y.IsNaN)
        {
            f |= FpFlags.Invalid;
            return 1;
        }
        if (x.Class == FpClass.Denormal || y.Class == FpClass.Denormal)
        {
            f |= FpFlags.Denormal;
        }
        int c = SoftFloat.Compare(x, y);
        return op == SseOp.Min ? (c < 0 ? 0 : 1) : (c > 0 ? 0 : 1);
    }

    /// <summary>Add, sub, mul, div, sqrt (of <paramref name="y"/>) with SSE NaN rules (the first source's NaN wins), rounded with <paramref name="p"/>.</summary>
    internal static Unpacked Compute(SseOp op, in Unpacked x, in Unpacked y, in RoundParams p, ref FpFlags f)
    {
        if (op == SseOp.Sqrt)
        {
            return SoftFloat.Sqrt(y, p, ref f);
        }
        if (x.IsNaN || y.IsNaN)
        {
            if (x.Class == FpClass.SignalingNaN || y.Class == FpClass.SignalingNaN)
            {
                f |= FpFlags.Invalid;
            }
            return x.IsNaN ? x.Quieted() : y.Quieted();
        }
        return SoftFloat.Operate(op, x, y, p, ref f);
    }

    // ---- SSE3 horizontal and alternating forms, SSE4.1 dot products ----

    /// <summary>addsubps/pd, haddps/pd, hsubps/pd.</summary>
    public static Vector128<byte> Horizontal(int kind, bool dbl, Vector128<byte> a, Vector128<byte> b, uint mxcsr, ref uint flags)
    {
        // kind: 0 addsub, 1 hadd, 2 hsub
        if (dbl)
        {
            Vector128<ulong> x = a.AsUInt64(), y = b.AsUInt64();
            return kind switch
            {
                0 => Vector128.Create(Arith64(SseOp.Sub, x[0], y[0], mxcsr, ref flags), Arith64(SseOp.Add, x[1], y[1], mxcsr, ref flags)).AsByte(),
                1 => Vector128.Create(Arith64(SseOp.Add, x[0], x[1], mxcsr, ref flags), Arith64(SseOp.Add, y[0], y[1], mxcsr, ref flags)).AsByte(),
                _ => Vector128.Create(Arith64(SseOp.Sub, x[0], x[1], mxcsr, ref flags), Arith64(SseOp.Sub, y[0], y[1], mxcsr, ref flags)).AsByte(),
            };
        }
        Vector128<uint> u = a.AsUInt32(), v = b.AsUInt32();
        return kind switch
        {
            0 => Vector128.Create(Arith32(SseOp.Sub, u[0], v[0], mxcsr, ref flags), Arith32(SseOp.Add, u[1], v[1], mxcsr, ref flags),
                Arith32(SseOp.Sub, u[2], v[2], mxcsr, ref flags), Arith32(SseOp.Add, u[3], v[3], mxcsr, ref flags)).AsByte(),
            1 => Vector128.Create(Arith32(SseOp.Add, u[0], u[1], mxcsr, ref flags), Arith32(SseOp.Add, u[2], u[3], mxcsr, ref flags),
                Arith32(SseOp.Add, v[0], v[1], mxcsr, ref flags), Arith32(SseOp.Add, v[2], v[3], mxcsr, ref flags)).AsByte(),
            _ => Vector128.Create(Arith32(SseOp.Sub, u[0], u[1], mxcsr, ref flags), Arith32(SseOp.Sub, u[2], u[3], mxcsr, ref flags),
                Arith32(SseOp.Sub, v[0], v[1], mxcsr, ref flags), Arith32(SseOp.Sub, v[2], v[3], mxcsr, ref flags)).AsByte(),
        };
    }

    /// <summary>dpps: products of the lanes selected by imm[7:4] (others +0.0), summed as (p0 + p1) + (p2 + p3), written to the lanes in imm[3:0].</summary>
    public static Vector128<byte> DotProduct32(Vector128<byte> a, Vector128<byte> b, int imm, uint mxcsr, ref uint flags)
    {
        Vector128<uint> x = a.AsUInt32(), y = b.AsUInt32();
        Span<uint> t = stackalloc uint[4];
        for (int k = 0; k < 4; k++)
        {
            t[k] = (imm & (0x10 << k)) != 0 ? Arith32(SseOp.Mul, x[k], y[k], mxcsr, ref flags) : 0;
        }
        uint s1 = Arith32(SseOp.Add, t[0], t[1], mxcsr, ref flags);
        uint s2 = Arith32(SseOp.Add, t[2], t[3], mxcsr, ref flags);
        uint s = Arith32(SseOp.Add, s1, s2, mxcsr, ref flags);
        return Vector128.Create((imm & 1) != 0 ? s : 0, (imm & 2) != 0 ? s : 0, (imm & 4) != 0 ? s : 0, (imm & 8) != 0 ? s : 0).AsByte();
    }

    /// <summary>dppd: as <see cref="DotProduct32"/> for two lanes (imm[5:4] select products, imm[1:0] the destination lanes).</summary>
    public static Vector128<byte> DotProduct64(Vector128<byte> a, Vector128<byte> b, int imm, uint mxcsr, ref uint flags)
    {
        Vector128<ulong> x = a.AsUInt64(), y = b.AsUInt64();
        ulong t0 = (imm & 0x10) != 0 ? Arith64(SseOp.Mul, x[0], y[0], mxcsr, ref flags) : 0;
        ulong t1 = (imm & 0x20) != 0 ? Arith64(SseOp.Mul, x[1], y[1], mxcsr, ref flags) : 0;
        ulong s = Arith64(SseOp.Add, t0, t1, mxcsr, ref flags);
        return Vector128.Create((imm & 1) != 0 ? s : 0, (imm & 2) != 0 ? s : 0).AsByte();
    }

    // ---- rounding to integral (SSE4.1 round*) ----

    /// <summary>roundss/sd/ps/pd: imm[1:0] the mode unless imm[2] (then MXCSR.RC); imm[3] suppresses the precision exception. No DE.</summary>
    public static Vector128<byte> RoundIntegral(SseShape shape, Vector128<byte> a, Vector128<byte> b, int imm, uint mxcsr, ref uint flags)
    {
        RoundingMode mode = (imm & 4) != 0 ? Mode(mxcsr) : (RoundingMode)(imm & 3);
        bool suppress = (imm & 8) != 0;
        switch (shape)
        {
            case SseShape.Sd:
                return a.AsUInt64().WithElement(0, Round64(b.AsUInt64()[0], mode, suppress, mxcsr, ref flags)).AsByte();
            case SseShape.Ss:
                return a.AsUInt32().WithElement(0, Round32(b.AsUInt32()[0], mode, suppress, mxcsr, ref flags)).AsByte();
            case SseShape.Pd:
            {
                Vector128<ulong> y = b.AsUInt64();
                return Vector128.Create(Round64(y[0], mode, suppress, mxcsr, ref flags), Round64(y[1], mode, suppress, mxcsr, ref flags)).AsByte();
            }
            default:
            {
                Vector128<uint> y = b.AsUInt32();
                return Vector128.Create(Round32(y[0], mode, suppress, mxcsr, ref flags), Round32(y[1], mode, suppress, mxcsr, ref flags),
                    Round32(y[2], mode, suppress, mxcsr, ref flags), Round32(y[3], mode, suppress, mxcsr, ref flags)).AsByte();
            }
        }
    }

    private static ulong Round64(ulong v, RoundingMode mode, bool suppress, uint mxcsr, ref uint flags)
    {
        Unpacked x = SoftFloat.Unpack64(v, Daz(mxcsr));
        FpFlags f = FpFlags.None;
        Unpacked r = RoundNaNOrIntegral(x, mode, ref f);
        flags |= (uint)(f & (suppress ? FpFlags.Invalid : FpFlags.Invalid | FpFlags.Inexact));
        return SoftFloat.Pack64(r);
    }

    private static uint Round32(uint v, RoundingMode mode, bool suppress, uint mxcsr, ref uint flags)
    {
        Unpacked x = SoftFloat.Unpack32(v, Daz(mxcsr));
        FpFlags f = FpFlags.None;
        Unpacked r = RoundNaNOrIntegral(x, mode, ref f);
        flags |= (uint)(f & (suppress ? FpFlags.Invalid : FpFlags.Invalid | FpFlags.Inexact));
        return SoftFloat.Pack32(r);
    }

    private static Unpacked RoundNaNOrIntegral(in Unpacked x, RoundingMode mode, ref FpFlags f)
    {
        if (x.IsNaN)
        {
            if (x.Class == FpClass.SignalingNaN)
            {
                f |= FpFlags.Invalid;
            }
            return x.Quieted();
        }
        return SoftFloat.RoundToIntegral(x, mode, ref f);
    }

    // ---- comparisons ----

    /// <summary>cmpss/sd/ps/pd with predicate imm[2:0] (EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD): all-ones or zero per lane.</summary>
    public static Vector128<byte> Compare(SseShape shape, int predicate, Vector128<byte> a, Vector128<byte> b, uint mxcsr, ref uint flags)
    {
        bool daz = Daz(mxcsr);
        switch (shape)
        {
            case SseShape.Sd:
                return a.AsUInt64().WithElement(0, Cmp(SoftFloat.Unpack64(a.AsUInt64()[0], daz), SoftFloat.Unpack64(b.AsUInt64()[0], daz), predicate, ref flags) ? ulong.MaxValue : 0).AsByte();
            case SseShape.Ss:
                return a.AsUInt32().WithElement(0, Cmp(SoftFloat.Unpack32(a.AsUInt32()[0], daz), SoftFloat.Unpack32(b.AsUInt32()[0], daz), predicate, ref flags) ? uint.MaxValue : 0).AsByte();
            case SseShape.Pd:
            {
                Vector128<ulong> x = a.AsUInt64(), y = b.AsUInt64();
                ulong r0 = Cmp(SoftFloat.Unpack64(x[0], daz), SoftFloat.Unpack64(y[0], daz), predicate, ref flags) ? ulong.MaxValue : 0;
                ulong r1 = Cmp(SoftFloat.Unpack64(x[1], daz), SoftFloat.Unpack64(y[1], daz), predicate, ref flags) ? ulong.MaxValue : 0;
                return Vector128.Create(r0, r1).AsByte();
            }
            default:
            {
                Vector128<uint> x = a.AsUInt32(), y = b.AsUInt32();
                Vector128<uint> r = Vector128<uint>.Zero;
                for (int k = 0; k < 4; k++)
                {
                    r = r.WithElement(k, Cmp(SoftFloat.Unpack32(x[k], daz), SoftFloat.Unpack32(y[k], daz), predicate, ref flags) ? uint.MaxValue : 0);
                }
                return r.AsByte();
            }
        }
    }

    private static bool Cmp(in Unpacked x, in Unpacked y, int predicate, ref uint flags)
    {
        predicate &= 7;
        bool unordered = x.IsNaN || y.IsNaN;
        bool signaling = predicate is 1 or 2 or 5 or 6;
        if (unordered)
        {
            if (signaling || x.Class == FpClass.SignalingNaN || y.Class == FpClass.SignalingNaN)
            {
                flags |= IE;
            }
        }
        else if (x.Class == FpClass.Denormal || y.Class == FpClass.Denormal)
        {
            flags |= DE;
        }
        int c = unordered ? 0 : SoftFloat.Compare(x, y);
        return predicate switch
        {
            0 => !unordered && c == 0,
            1 => !unordered && c < 0,
            2 => !unordered && c <= 0,
            3 => unordered,
            4 => unordered || c != 0,
            5 => unordered || c >= 0,
            6 => unordered || c > 0,
            _ => !unordered,
        };
    }

    /// <summary>comiss/comisd (<paramref name="signaling"/>: any NaN is invalid) and ucomiss/ucomisd: returns ZF|PF|CF as RFLAGS bits.</summary>
    public static ulong CompareToFlags(bool dbl, ulong a, ulong b, bool signaling, uint mxcsr, ref uint flags)
    {
        bool daz = Daz(mxcsr);
        Unpacked x = dbl ? SoftFloat.Unpack64(a, daz) : SoftFloat.Unpack32((uint)a, daz);
        Unpacked y = dbl ? SoftFloat.Unpack64(b, daz) : SoftFloat.Unpack32((uint)b, daz);
        const ulong CF = 0x1, PF = 0x4, ZF = 0x40;
        if (x.IsNaN || y.IsNaN)
        {
            if (signaling || x.Class == FpClass.SignalingNaN || y.Class == FpClass.SignalingNaN)
            {
                flags |= IE;
            }
            return ZF | PF | CF;
        }
        if (x.Class == FpClass.Denormal || y.Class == FpClass.Denormal)
        {
            flags |= DE;
        }
        int c = SoftFloat.Compare(x, y);
        return c < 0 ? CF : c == 0 ? ZF : 0;
    }

    // ---- conversions ----

    /// <summary>cvtsi2sd (32 or 64-bit integer): exact for 32-bit sources; rounded (PE) for large 64-bit ones.</summary>
    public static ulong IntToDouble(long v, uint mxcsr, ref uint flags)
    {
        if (ExactDouble(v))
        {
            return BitConverter.DoubleToUInt64Bits(v);
        }
        FpFlags f = FpFlags.None;
        Unpacked u = SoftFloat.FromInteger(v < 0, v < 0 ? (ulong)-(v + 1) + 1 : (ulong)v);
        Unpacked r = u.Class == FpClass.Zero ? u : SoftFloat.Round(u, Params64(mxcsr), ref f);
        flags |= (uint)(f & FpFlags.All);
        return SoftFloat.Pack64(r);
    }

    /// <summary>An integer that a double holds exactly: converting it raises no flag under any MXCSR.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool ExactDouble(long v) => v > -(1L << 53) && v < 1L << 53;

    /// <summary>cvtsi2ss (32 or 64-bit integer), cvtdq2ps lanes.</summary>
    public static uint IntToSingle(long v, uint mxcsr, ref uint flags)
    {
        FpFlags f = FpFlags.None;
        Unpacked u = SoftFloat.FromInteger(v < 0, v < 0 ? (ulong)-(v + 1) + 1 : (ulong)v);
        Unpacked r = u.Class == FpClass.Zero ? u : SoftFloat.Round(u, Params32(mxcsr), ref f);
        flags |= (uint)(f & FpFlags.All);
        return SoftFloat.Pack32(r);
    }

    /// <summary>cvt(t)sd2si / cvt(t)ss2si / cvt(t)pd2dq / cvt(t)ps2dq lanes: NaN or out of range is invalid and gives the integer indefinite.</summary>
    public static ulong FloatToInt(bool dbl, ulong v, bool is64, bool truncate, uint mxcsr, ref uint flags)
    {
        if (dbl && truncate && (mxcsr & DAZ) == 0)
        {
            // Fast path: an in-range double truncated toward zero.
            double d = BitConverter.UInt64BitsToDouble(v);
            if (is64 ? d is > -9.2233720368547758E18 and < 9.2233720368547758E18 : d is > -2147483649.0 and < 2147483648.0)
            {
                long t = (long)d;
                if (t != d)
                {
                    flags |= PE;
                }
                return is64 ? (ulong)t : (uint)(int)t;
            }
        }
        Unpacked x = dbl ? SoftFloat.Unpack64(v, Daz(mxcsr)) : SoftFloat.Unpack32((uint)v, Daz(mxcsr));
        ulong indefinite = is64 ? IntIndefinite64 : IntIndefinite32;
        if (x.IsNaN || x.Class == FpClass.Infinity)
        {
            flags |= IE;
            return indefinite;
        }
        RoundingMode mode = truncate ? RoundingMode.TowardZero : Mode(mxcsr);
        ulong mag = SoftFloat.ToIntegerMagnitude(x, mode, out bool inexact, out bool huge, out _);
        ulong limit = is64 ? 1UL << 63 : 1UL << 31; // magnitude allowed: limit - 1, or limit when negative
        if (huge || mag > limit || (mag == limit && !x.Sign))
        {
            flags |= IE;
            return indefinite;
        }
        if (inexact)
        {
            flags |= PE;
        }
        ulong r = x.Sign ? 0 - mag : mag;
        return is64 ? r : (uint)r;
    }

    /// <summary>cvtsd2ss / cvtpd2ps lane.</summary>
    public static uint DoubleToSingle(ulong v, uint mxcsr, ref uint flags)
    {
        Unpacked x = SoftFloat.Unpack64(v, Daz(mxcsr));
        FpFlags f = FpFlags.None;
        Unpacked r;
        if (x.IsNaN)
        {
            if (x.Class == FpClass.SignalingNaN)
            {
                f |= FpFlags.Invalid;
            }
            r = x.Quieted();
        }
        else if (x.IsFiniteNonZero)
        {
            if (x.Class == FpClass.Denormal)
            {
                f |= FpFlags.Denormal;
            }
            r = SoftFloat.Round(x, Params32(mxcsr), ref f);
        }
        else
        {
            r = x;
        }
        flags |= (uint)(f & FpFlags.All);
        return SoftFloat.Pack32(r);
    }

    /// <summary>cvtss2sd / cvtps2pd lane: exact; SNaN is invalid, a denormal operand sets DE.</summary>
    public static ulong SingleToDouble(uint v, uint mxcsr, ref uint flags)
    {
        Unpacked x = SoftFloat.Unpack32(v, Daz(mxcsr));
        if (x.IsNaN)
        {
            if (x.Class == FpClass.SignalingNaN)
            {
                flags |= IE;
            }
            return SoftFloat.Pack64(x.Quieted());
        }
        if (x.Class == FpClass.Denormal)
        {
            flags |= DE;
        }
        return SoftFloat.Pack64(x); // a normalized single always fits a double exactly
    }

    /// <summary>The cvt* forms between vectors: <paramref name="a"/> is the destination's old value (kept where the form keeps it).</summary>
    public static Vector128<byte> Convert(CvtKind kind, Vector128<byte> a, Vector128<byte> b, uint mxcsr, ref uint flags)
    {
        switch (kind)
        {
            case CvtKind.Ss2Sd:
                return a.AsUInt64().WithElement(0, SingleToDouble(b.AsUInt32()[0], mxcsr, ref flags)).AsByte();
            case CvtKind.Sd2Ss:
                return a.AsUInt32().WithElement(0, DoubleToSingle(b.AsUInt64()[0], mxcsr, ref flags)).AsByte();
            case CvtKind.Ps2Pd:
            {
                Vector128<uint> y = b.AsUInt32();
                return Vector128.Create(SingleToDouble(y[0], mxcsr, ref flags), SingleToDouble(y[1], mxcsr, ref flags)).AsByte();
            }
            case CvtKind.Pd2Ps:
            {
                Vector128<ulong> y = b.AsUInt64();
                return Vector128.Create(DoubleToSingle(y[0], mxcsr, ref flags), DoubleToSingle(y[1], mxcsr, ref flags), 0u, 0u).AsByte();
            }
            case CvtKind.Dq2Ps:
            {
                Vector128<int> y = b.AsInt32();
                return Vector128.Create(IntToSingle(y[0], mxcsr, ref flags), IntToSingle(y[1], mxcsr, ref flags),
                    IntToSingle(y[2], mxcsr, ref flags), IntToSingle(y[3], mxcsr, ref flags)).AsByte();
            }
            case CvtKind.Dq2Pd:
            {
                Vector128<int> y = b.AsInt32();
                return Vector128.Create(BitConverter.DoubleToUInt64Bits(y[0]), BitConverter.DoubleToUInt64Bits(y[1])).AsByte();
            }
            case CvtKind.Ps2Dq:
            case CvtKind.Tps2Dq:
            {
                Vector128<uint> y = b.AsUInt32();
                bool t = kind == CvtKind.Tps2Dq;
                return Vector128.Create((uint)FloatToInt(false, y[0], false, t, mxcsr, ref flags), (uint)FloatToInt(false, y[1], false, t, mxcsr, ref flags),
                    (uint)FloatToInt(false, y[2], false, t, mxcsr, ref flags), (uint)FloatToInt(false, y[3], false, t, mxcsr, ref flags)).AsByte();
            }
            default: // Pd2Dq, Tpd2Dq
            {
                Vector128<ulong> y = b.AsUInt64();
                bool t = kind == CvtKind.Tpd2Dq;
                return Vector128.Create((uint)FloatToInt(true, y[0], false, t, mxcsr, ref flags), (uint)FloatToInt(true, y[1], false, t, mxcsr, ref flags), 0u, 0u).AsByte();
            }
        }
    }

    // ---- approximations (rcp, rsqrt): no flags, no MXCSR dependence ----

    /// <summary>
    /// rcpss/rcpps lane. The hardware result is an implementation-specific approximation (Intel and AMD differ) with a
    /// relative error of at most 1.5 * 2^-12; this returns the exact reciprocal rounded to 12 significant bits
    /// (error at most 2^-12): deterministic on every host. Denormal operands count as zero; tiny results flush to zero.
    /// </summary>
    public static uint Reciprocal(uint v) => Approximate(v, sqrt: false);

    /// <summary>rcpss/rcpps (<paramref name="sqrt"/> false) and rsqrtss/rsqrtps.</summary>
    public static Vector128<byte> Approximate(bool sqrt, SseShape shape, Vector128<byte> a, Vector128<byte> b)
    {
        Vector128<uint> y = b.AsUInt32();
        if (shape == SseShape.Ss)
        {
            return a.AsUInt32().WithElement(0, Approximate(y[0], sqrt)).AsByte();
        }
        return Vector128.Create(Approximate(y[0], sqrt), Approximate(y[1], sqrt), Approximate(y[2], sqrt), Approximate(y[3], sqrt)).AsByte();
    }

    /// <summary>rsqrtss/rsqrtps lane; see <see cref="Reciprocal"/>.</summary>
    public static uint ReciprocalSqrt(uint v) => Approximate(v, sqrt: true);

    private static uint Approximate(uint v, bool sqrt)
    {
        uint sign = v & 0x8000_0000;
        uint exp = (v >> 23) & 0xFF;
        uint frac = v & 0x7F_FFFF;
        if (exp == 0xFF)
        {
            if (frac != 0)
            {
                return v | 0x40_0000; // quiet NaN
            }
            return sqrt && sign != 0 ? 0xFFC0_0000 : sign; // 1/inf = 0; rsqrt(-inf) is invalid
        }
        if (exp == 0)
        {
            return sign | 0x7F80_0000; // zero or denormal: infinity of the same sign
        }
        if (sqrt && sign != 0)
        {
            return 0xFFC0_0000;
        }
        double x = BitConverter.UInt32BitsToSingle(v & 0x7FFF_FFFF);
        double r = sqrt ? 1.0 / Math.Sqrt(x) : 1.0 / x;
        // Round to 12 significant bits (11 fraction bits) in the double, then narrow exactly.
        ulong bits = BitConverter.DoubleToUInt64Bits(r);
        bits = (bits + (1UL << 40)) & ~((1UL << 41) - 1);
        double rounded = BitConverter.UInt64BitsToDouble(bits);
        if (rounded < 1.1754943508222875E-38)
        {
            return sign; // would be denormal: flushed
        }
        return sign | BitConverter.SingleToUInt32Bits((float)rounded);
    }
}
