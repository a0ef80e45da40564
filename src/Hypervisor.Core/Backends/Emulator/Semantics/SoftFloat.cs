using System.Numerics;

namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>
/// IEEE-754 exception flags, in the bit order MXCSR (bits 0-5) and the x87 status word (bits 0-5) share, plus
/// <see cref="RoundedUp"/>: the magnitude was rounded up (the x87 reports it in C1).
/// </summary>
[Flags]
internal enum FpFlags : uint
{
    None = 0,
    Invalid = 0x1,
    Denormal = 0x2,
    DivideByZero = 0x4,
    Overflow = 0x8,
    Underflow = 0x10,
    Inexact = 0x20,
    /// <summary>Pre-computation exceptions (detected before a result exists).</summary>
    PreComputation = Invalid | Denormal | DivideByZero,
    /// <summary>The six architectural flags.</summary>
    All = 0x3F,
    RoundedUp = 0x100,
}

/// <summary>Rounding control, x86 encoding (MXCSR.RC and FCW.RC use the same two bits).</summary>
internal enum RoundingMode : byte
{
    Nearest = 0,
    Down = 1,
    Up = 2,
    TowardZero = 3,
}

/// <summary>The class of an unpacked floating-point value.</summary>
internal enum FpClass : byte
{
    Zero,
    Normal,
    /// <summary>A denormal operand (unpacked normalized), or a denormal result of <see cref="SoftFloat.RoundPack"/> (aligned to Emin, integer bit clear).</summary>
    Denormal,
    Infinity,
    QuietNaN,
    SignalingNaN,
    /// <summary>An x87 encoding the FPU refuses (unnormal, pseudo-NaN, pseudo-infinity): an invalid operand.</summary>
    Unsupported,
}

/// <summary>
/// A value in a format-neutral form. Finite nonzero operands: <c>Sig</c> normalized (bit 63 set) and value =
/// Sig * 2^(Exp - 63). NaNs: <c>Sig</c> = integer bit (63), quiet bit (62) and payload below, left-aligned, so that
/// converting a NaN between formats truncates or zero-extends the payload exactly as x86 does.
/// </summary>
internal struct Unpacked
{
    public FpClass Class;
    public bool Sign;
    public int Exp;
    public ulong Sig;

    public Unpacked(FpClass cls, bool sign, int exp, ulong sig)
    {
        Class = cls;
        Sign = sign;
        Exp = exp;
        Sig = sig;
    }

    public readonly bool IsNaN => Class is FpClass.QuietNaN or FpClass.SignalingNaN;

    public readonly bool IsFiniteNonZero => Class is FpClass.Normal or FpClass.Denormal;

    public static Unpacked Zero(bool sign) => new(FpClass.Zero, sign, 0, 0);

    public static Unpacked Infinity(bool sign) => new(FpClass.Infinity, sign, 0, 0);

    /// <summary>The x86 default NaN ("real indefinite"): negative, quiet, zero payload.</summary>
    public static Unpacked DefaultNaN => new(FpClass.QuietNaN, true, 0, 0xC000_0000_0000_0000);

    /// <summary>This NaN with its quiet bit set.</summary>
    public readonly Unpacked Quieted() => new(FpClass.QuietNaN, Sign, 0, Sig | 0x4000_0000_0000_0000);
}

/// <summary>How <see cref="SoftFloat.RoundPack"/> rounds: precision, exponent range, mode and the exception responses that change the result.</summary>
internal readonly struct RoundParams
{
    /// <summary>Significand bits kept (24, 53 or 64; the x87 precision control may ask for fewer than the format holds).</summary>
    public readonly int Precision;
    /// <summary>Exponent of the smallest normal number.</summary>
    public readonly int Emin;
    /// <summary>Exponent of the largest finite number.</summary>
    public readonly int Emax;
    /// <summary>Fraction bits of the storage format: a denormal's last bit has weight 2^(Emin - StorageFraction).</summary>
    public readonly int StorageFraction;
    public readonly RoundingMode Mode;
    /// <summary>SSE flush-to-zero (applies only while underflow is masked).</summary>
    public readonly bool FlushToZero;
    public readonly bool UnderflowUnmasked;
    public readonly bool OverflowUnmasked;
    /// <summary>x87 only: with overflow or underflow unmasked the result is delivered with its exponent wrapped by this bias (24576); 0 for SSE, which delivers no result.</summary>
    public readonly int WrapBias;

    public RoundParams(int precision, int emin, int emax, int storageFraction, RoundingMode mode, bool flushToZero = false,
        bool underflowUnmasked = false, bool overflowUnmasked = false, int wrapBias = 0)
    {
        Precision = precision;
        Emin = emin;
        Emax = emax;
        StorageFraction = storageFraction;
        Mode = mode;
        FlushToZero = flushToZero;
        UnderflowUnmasked = underflowUnmasked;
        OverflowUnmasked = overflowUnmasked;
        WrapBias = wrapBias;
    }

    public static RoundParams Single(RoundingMode mode, bool ftz = false, bool uUnmasked = false, bool oUnmasked = false) =>
        new(24, -126, 127, 23, mode, ftz, uUnmasked, oUnmasked);

    public static RoundParams Double(RoundingMode mode, bool ftz = false, bool uUnmasked = false, bool oUnmasked = false) =>
        new(53, -1022, 1023, 52, mode, ftz, uUnmasked, oUnmasked);

    /// <summary>
    /// The x87 extended exponent range with the precision control's significand width: a tiny result keeps that many
    /// bits below 2^Emin too (with 24 or 53 bits its last bit is not the format's smallest denormal).
    /// </summary>
    public static RoundParams Extended(int precision, RoundingMode mode, bool uUnmasked = false, bool oUnmasked = false) =>
        new(precision, -16382, 16383, precision - 1, mode, false, uUnmasked, oUnmasked, 24576);
}

/// <summary>
/// Exact binary floating-point arithmetic on <see cref="Unpacked"/> values, shared by the SSE (binary32/64) and x87
/// (80-bit extended) semantics: unpack/pack for the three formats, add, multiply, divide, square root with a
/// 128-bit exact intermediate, and one rounding routine (<see cref="RoundPack"/>) that implements all four rounding
/// modes, reduced precision, denormals, tininess detected after rounding (as x86 does), flush-to-zero and the
/// exception flags. No host floating point is involved, so the results are the same on every host.
/// </summary>
internal static class SoftFloat
{
    private const ulong IntegerBit = 1UL << 63;
    private const ulong QuietBit = 1UL << 62;

    // ---- unpack / pack ----

    public static Unpacked Unpack64(ulong bits, bool daz) => UnpackBinary(bits, fractionBits: 52, exponentBits: 11, daz);

    public static Unpacked Unpack32(uint bits, bool daz) => UnpackBinary(bits, fractionBits: 23, exponentBits: 8, daz);

    /// <summary>
    /// Unpacks an IEEE binary32 or binary64 value (the format given by its field widths, constants at every call site so
    /// the JIT folds them): the significand is left-aligned with its integer bit at bit 63.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Unpacked UnpackBinary(ulong bits, int fractionBits, int exponentBits, bool daz)
    {
        int maxExp = (1 << exponentBits) - 1;
        int bias = maxExp >> 1;
        int align = 63 - fractionBits;
        bool sign = ((bits >> (fractionBits + exponentBits)) & 1) != 0;
        int exp = (int)(bits >> fractionBits) & maxExp;
        ulong frac = bits & ((1UL << fractionBits) - 1);
        if (exp == maxExp)
        {
            if (frac == 0)
            {
                return Unpacked.Infinity(sign);
            }
            return new Unpacked((frac >> (fractionBits - 1)) != 0 ? FpClass.QuietNaN : FpClass.SignalingNaN, sign, 0, IntegerBit | (frac << align));
        }
        if (exp == 0)
        {
            if (frac == 0 || daz)
            {
                return Unpacked.Zero(sign);
            }
            // frac * 2^(1 - bias - fractionBits), normalized so that its top bit is the integer bit.
            int lz = BitOperations.LeadingZeroCount(frac);
            return new Unpacked(FpClass.Denormal, sign, 64 - bias - fractionBits - lz, frac << lz);
        }
        return new Unpacked(FpClass.Normal, sign, exp - bias, IntegerBit | (frac << align));
    }

    /// <summary>Unpacks an 80-bit extended value (sign+exponent word, explicit-integer-bit significand).</summary>
    public static Unpacked Unpack80(ushort signExp, ulong mant)
    {
        bool sign = (signExp >> 15) != 0;
        int exp = signExp & 0x7FFF;
        if (exp == 0x7FFF)
        {
            if ((mant & IntegerBit) == 0)
            {
                return new Unpacked(FpClass.Unsupported, sign, 0, mant); // pseudo-infinity / pseudo-NaN
            }
            if ((mant << 1) == 0)
            {
                return Unpacked.Infinity(sign);
            }
            return new Unpacked((mant & QuietBit) != 0 ? FpClass.QuietNaN : FpClass.SignalingNaN, sign, 0, mant);
        }
        if (exp == 0)
        {
            if (mant == 0)
            {
                return Unpacked.Zero(sign);
            }
            // Denormal, or pseudo-denormal (integer bit set): both have the weight of exponent 1.
            int lz = BitOperations.LeadingZeroCount(mant);
            return new Unpacked(FpClass.Denormal, sign, -16382 - lz, mant << lz);
        }
        if ((mant & IntegerBit) == 0)
        {
            return new Unpacked(FpClass.Unsupported, sign, 0, mant); // unnormal
        }
        return new Unpacked(FpClass.Normal, sign, exp - 16383, mant);
    }

    public static ulong Pack64(in Unpacked v)
    {
        ulong sign = v.Sign ? 1UL << 63 : 0;
        return v.Class switch
        {
            FpClass.Zero => sign,
            FpClass.Infinity => sign | 0x7FF0_0000_0000_0000,
            FpClass.QuietNaN or FpClass.SignalingNaN or FpClass.Unsupported => sign | 0x7FF0_0000_0000_0000 | ((v.Sig >> 11) & 0x000F_FFFF_FFFF_FFFF),
            _ => (v.Sig & IntegerBit) != 0
                ? sign | ((ulong)(v.Exp + 1023) << 52) | ((v.Sig >> 11) & 0x000F_FFFF_FFFF_FFFF)
                : sign | (v.Sig >> 11), // denormal result: aligned to Emin by RoundPack
        };
    }

    public static uint Pack32(in Unpacked v)
    {
        uint sign = v.Sign ? 1u << 31 : 0;
        return v.Class switch
        {
            FpClass.Zero => sign,
            FpClass.Infinity => sign | 0x7F80_0000,
            FpClass.QuietNaN or FpClass.SignalingNaN or FpClass.Unsupported => sign | 0x7F80_0000 | (uint)((v.Sig >> 40) & 0x7F_FFFF),
            _ => (v.Sig & IntegerBit) != 0
                ? sign | ((uint)(v.Exp + 127) << 23) | (uint)((v.Sig >> 40) & 0x7F_FFFF)
                : sign | (uint)(v.Sig >> 40),
        };
    }

    /// <summary>Packs to the 80-bit format: returns the significand, <paramref name="signExp"/> gets the sign and exponent.</summary>
    public static ulong Pack80(in Unpacked v, out ushort signExp)
    {
        ushort sign = (ushort)(v.Sign ? 0x8000 : 0);
        switch (v.Class)
        {
            case FpClass.Zero:
                signExp = sign;
                return 0;
            case FpClass.Infinity:
                signExp = (ushort)(sign | 0x7FFF);
                return IntegerBit;
            case FpClass.QuietNaN:
            case FpClass.SignalingNaN:
            case FpClass.Unsupported:
                signExp = (ushort)(sign | 0x7FFF);
                return v.Sig | IntegerBit;
            default:
                if ((v.Sig & IntegerBit) != 0)
                {
                    signExp = (ushort)(sign | (v.Exp + 16383));
                    return v.Sig;
                }
                signExp = sign;
                return v.Sig;
        }
    }

    // ---- rounding ----

    /// <summary>
    /// Rounds the exact value <paramref name="sig"/> * 2^(<paramref name="exp"/> - 127) (sig normalized: bit 127 set)
    /// to the precision and range of <paramref name="p"/>. Returns Normal (Sig bit 63 set), Denormal (Exp = Emin,
    /// bit 63 clear), Zero or Infinity, and adds the exception flags (plus <see cref="FpFlags.RoundedUp"/>).
    /// </summary>
    public static Unpacked RoundPack(bool sign, int exp, UInt128 sig, in RoundParams p, ref FpFlags flags)
    {
        bool tiny = false;
        if (exp < p.Emin)
        {
            // Tininess after rounding: tiny unless rounding to the precision with an unbounded exponent reaches 2^Emin.
            tiny = exp != p.Emin - 1 || !CarriesOut(sign, sig, p.Precision, p.Mode);
            if (tiny && p.UnderflowUnmasked && p.WrapBias != 0)
            {
                // x87 with underflow unmasked: deliver the full-precision result with a wrapped exponent.
                Unpacked wrapped = RoundPack(sign, exp + p.WrapBias, sig, p, ref flags);
                flags |= FpFlags.Underflow;
                return wrapped;
            }
            if (tiny && p.FlushToZero && !p.UnderflowUnmasked)
            {
                flags |= FpFlags.Underflow | FpFlags.Inexact;
                return Unpacked.Zero(sign);
            }
        }
        // Number of low bits of sig below the result's last bit.
        int k = 128 - p.Precision;
        if (exp < p.Emin)
        {
            k = Math.Max(k, 127 - p.StorageFraction + (p.Emin - exp));
        }
        UInt128 keep;
        bool inexact, up;
        if (k > 128)
        {
            // Everything lies below half of the last place: sticky only.
            keep = 0;
            inexact = true;
            up = p.Mode switch { RoundingMode.Up => !sign, RoundingMode.Down => sign, _ => false };
        }
        else
        {
            UInt128 rest;
            UInt128 half;
            if (k == 128)
            {
                keep = 0;
                rest = sig;
                half = (UInt128)1 << 127;
            }
            else
            {
                keep = sig >> k;
                rest = sig & (((UInt128)1 << k) - 1);
                half = (UInt128)1 << (k - 1);
            }
            inexact = rest != 0;
            up = p.Mode switch
            {
                RoundingMode.Nearest => rest > half || (rest == half && (keep & 1) != 0),
                RoundingMode.Up => inexact && !sign,
                RoundingMode.Down => inexact && sign,
                _ => false,
            };
        }
        if (up)
        {
            keep++;
        }
        if (inexact)
        {
            flags |= FpFlags.Inexact;
            if (up)
            {
                flags |= FpFlags.RoundedUp;
            }
        }
        if (tiny && (inexact || p.UnderflowUnmasked))
        {
            flags |= FpFlags.Underflow;
        }
        if (keep == 0)
        {
            return Unpacked.Zero(sign);
        }
        int lsb = exp - 127 + k; // weight of keep's bit 0
        int msb = 127 - (int)UInt128.LeadingZeroCount(keep);
        int e = lsb + msb;
        ulong s = msb <= 63 ? (ulong)keep << (63 - msb) : (ulong)(keep >> (msb - 63));
        if (e > p.Emax)
        {
            if (p.OverflowUnmasked && p.WrapBias != 0)
            {
                flags |= FpFlags.Overflow;
                return new Unpacked(FpClass.Normal, sign, e - p.WrapBias, s);
            }
            flags |= FpFlags.Overflow | FpFlags.Inexact;
            bool toInfinity = p.Mode switch
            {
                RoundingMode.Nearest => true,
                RoundingMode.Up => !sign,
                RoundingMode.Down => sign,
                _ => false,
            };
            if (toInfinity)
            {
                flags |= FpFlags.RoundedUp;
                return Unpacked.Infinity(sign);
            }
            flags &= ~FpFlags.RoundedUp;
            return new Unpacked(FpClass.Normal, sign, p.Emax, ulong.MaxValue << (64 - p.Precision));
        }
        if (e < p.Emin)
        {
            return new Unpacked(FpClass.Denormal, sign, p.Emin, s >> (p.Emin - e));
        }
        return new Unpacked(FpClass.Normal, sign, e, s);
    }

    /// <summary>True when rounding <paramref name="sig"/> to <paramref name="precision"/> bits carries into the next power of two.</summary>
    private static bool CarriesOut(bool sign, UInt128 sig, int precision, RoundingMode mode)
    {
        int k = 128 - precision;
        UInt128 keep = sig >> k;
        if (keep != ((UInt128)1 << precision) - 1)
        {
            return false;
        }
        UInt128 rest = sig & (((UInt128)1 << k) - 1);
        UInt128 half = (UInt128)1 << (k - 1);
        return mode switch
        {
            RoundingMode.Nearest => rest >= half, // keep is odd (all ones): a tie rounds up too
            RoundingMode.Up => rest != 0 && !sign,
            RoundingMode.Down => rest != 0 && sign,
            _ => false,
        };
    }

    /// <summary>Rounds a finite nonzero unpacked value (already exact) to the format.</summary>
    public static Unpacked Round(in Unpacked v, in RoundParams p, ref FpFlags flags) =>
        RoundPack(v.Sign, v.Exp, (UInt128)v.Sig << 64, p, ref flags);

    // ---- exact cores: finite nonzero operands in, exact sign/exp/sig128 out (value = sig * 2^(exp - 127)) ----

    /// <summary>a + b (negate b first for a subtraction). Returns false when the exact result is zero.</summary>
    public static bool AddCore(in Unpacked a, in Unpacked b, out bool sign, out int exp, out UInt128 sig)
    {
        Unpacked x = a, y = b;
        if (x.Exp < y.Exp || (x.Exp == y.Exp && x.Sig < y.Sig))
        {
            (x, y) = (y, x);
        }
        // One bit of headroom for the carry of an addition.
        UInt128 big = (UInt128)x.Sig << 63;
        UInt128 small = ShiftRightJam((UInt128)y.Sig << 63, x.Exp - y.Exp);
        UInt128 r = x.Sign == y.Sign ? big + small : big - small;
        sign = x.Sign;
        if (r == 0)
        {
            exp = 0;
            sig = 0;
            return false;
        }
        int lz = (int)UInt128.LeadingZeroCount(r);
        sig = r << lz;
        exp = x.Exp + 1 - lz;
        return true;
    }

    public static void MulCore(in Unpacked a, in Unpacked b, out bool sign, out int exp, out UInt128 sig)
    {
        sign = a.Sign ^ b.Sign;
        ulong hi = Math.BigMul(a.Sig, b.Sig, out ulong lo);
        UInt128 p = new(hi, lo);
        exp = a.Exp + b.Exp + 1;
        if ((hi & IntegerBit) == 0)
        {
            p <<= 1;
            exp--;
        }
        sig = p;
    }

    public static void DivCore(in Unpacked a, in Unpacked b, out bool sign, out int exp, out UInt128 sig)
    {
        sign = a.Sign ^ b.Sign;
        UInt128 n = (UInt128)a.Sig << 64;
        if (a.Sig >= b.Sig)
        {
            UInt128 q = n / b.Sig; // in [2^64, 2^65)
            ulong rem = (ulong)(n - (q * b.Sig));
            sig = (q << 63) | (rem != 0 ? 1u : 0u);
            exp = a.Exp - b.Exp;
        }
        else
        {
            UInt128 q1 = n / b.Sig; // in [2^63, 2^64)
            ulong r1 = (ulong)(n - (q1 * b.Sig));
            UInt128 n2 = (UInt128)r1 << 64;
            UInt128 q2 = n2 / b.Sig;
            ulong r2 = (ulong)(n2 - (q2 * b.Sig));
            sig = (q1 << 64) | q2 | (r2 != 0 ? 1u : 0u);
            exp = a.Exp - b.Exp - 1;
        }
    }

    /// <summary>Square root of a positive finite nonzero value.</summary>
    public static void SqrtCore(in Unpacked a, out int exp, out UInt128 sig)
    {
        // value = Sig * 2^(Exp - 63); make the power of two even: N * 2^(2s) with N in [2^126, 2^128).
        UInt128 n;
        int half;
        if (((a.Exp - 127) & 1) == 0)
        {
            n = (UInt128)a.Sig << 64;
            half = (a.Exp - 127) / 2;
        }
        else
        {
            n = (UInt128)a.Sig << 63;
            half = (a.Exp - 126) / 2;
        }
        ulong r = Isqrt(n); // in [2^63, 2^64)
        UInt128 rem = n - ((UInt128)r * r);
        // The exact root is in [r, r + 1); it is >= r + 1/2 exactly when rem > r, and never exactly r + 1/2.
        ulong low = rem > r ? 0xC000_0000_0000_0000 : rem != 0 ? 1UL : 0;
        sig = ((UInt128)r << 64) | low;
        exp = half + 63;
    }

    /// <summary>floor(sqrt(n)) for n in [2^126, 2^128).</summary>
    private static ulong Isqrt(UInt128 n)
    {
        double d = Math.Sqrt((double)n);
        ulong r = d >= 18446744073709551615.0 ? ulong.MaxValue : (ulong)d;
        // One Newton step from a 53-bit estimate, then exact correction.
        if (r != 0)
        {
            UInt128 q = n / r;
            r = (ulong)(((UInt128)r + q) >> 1);
        }
        while ((UInt128)r * r > n)
        {
            r--;
        }
        while (r != ulong.MaxValue && ((UInt128)(r + 1) * (r + 1)) <= n)
        {
            r++;
        }
        return r;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static UInt128 ShiftRightJam(UInt128 v, int n)
    {
        if (n <= 0)
        {
            return v;
        }
        if (n >= 128)
        {
            return v != 0 ? 1u : 0u;
        }
        UInt128 lost = v & (((UInt128)1 << n) - 1);
        return (v >> n) | (lost != 0 ? 1u : 0u);
    }

    // ---- the four operations and square root on non-NaN operands (SSE and x87 differ only in NaN handling) ----

    /// <summary>
    /// x op y for non-NaN operands (<see cref="SseOp.Add"/>, Sub, Mul, Div), IEEE special cases, one rounding with
    /// <paramref name="p"/>. A denormal operand is reported only when no invalid or divide-by-zero exception is
    /// (those take precedence).
    /// </summary>
    public static Unpacked Operate(SseOp op, in Unpacked x, in Unpacked y, in RoundParams p, ref FpFlags f)
    {
        if (x.Class != FpClass.Denormal && y.Class != FpClass.Denormal)
        {
            return OperateCore(op, x, y, p, ref f);
        }
        FpFlags g = FpFlags.None;
        Unpacked r = OperateCore(op, x, y, p, ref g);
        if ((g & (FpFlags.Invalid | FpFlags.DivideByZero)) == 0)
        {
            g |= FpFlags.Denormal;
        }
        f |= g;
        return r;
    }

    private static Unpacked OperateCore(SseOp op, in Unpacked x, in Unpacked y, in RoundParams p, ref FpFlags f)
    {
        switch (op)
        {
            case SseOp.Add:
            case SseOp.Sub:
            {
                Unpacked b = y;
                if (op == SseOp.Sub)
                {
                    b.Sign = !b.Sign;
                }
                return Add(x, b, p, ref f);
            }
            case SseOp.Mul:
            {
                bool sign = x.Sign ^ y.Sign;
                if (x.Class == FpClass.Infinity || y.Class == FpClass.Infinity)
                {
                    if (x.Class == FpClass.Zero || y.Class == FpClass.Zero)
                    {
                        f |= FpFlags.Invalid;
                        return Unpacked.DefaultNaN;
                    }
                    return Unpacked.Infinity(sign);
                }
                if (x.Class == FpClass.Zero || y.Class == FpClass.Zero)
                {
                    return Unpacked.Zero(sign);
                }
                MulCore(x, y, out bool ms, out int me, out UInt128 msig);
                return RoundPack(ms, me, msig, p, ref f);
            }
            default: // Div
            {
                bool sign = x.Sign ^ y.Sign;
                if (x.Class == FpClass.Infinity)
                {
                    if (y.Class == FpClass.Infinity)
                    {
                        f |= FpFlags.Invalid;
                        return Unpacked.DefaultNaN;
                    }
                    return Unpacked.Infinity(sign);
                }
                if (y.Class == FpClass.Infinity)
                {
                    return Unpacked.Zero(sign);
                }
                if (y.Class == FpClass.Zero)
                {
                    if (x.Class == FpClass.Zero)
                    {
                        f |= FpFlags.Invalid;
                        return Unpacked.DefaultNaN;
                    }
                    f |= FpFlags.DivideByZero;
                    return Unpacked.Infinity(sign);
                }
                if (x.Class == FpClass.Zero)
                {
                    return Unpacked.Zero(sign);
                }
                DivCore(x, y, out bool ds, out int de, out UInt128 dsig);
                return RoundPack(ds, de, dsig, p, ref f);
            }
        }
    }

    /// <summary>x + y for non-NaN operands (IEEE signed-zero rules; inf - inf is invalid).</summary>
    public static Unpacked Add(in Unpacked x, in Unpacked y, in RoundParams p, ref FpFlags f)
    {
        if (x.Class == FpClass.Infinity || y.Class == FpClass.Infinity)
        {
            if (x.Class == FpClass.Infinity && y.Class == FpClass.Infinity && x.Sign != y.Sign)
            {
                f |= FpFlags.Invalid;
                return Unpacked.DefaultNaN;
            }
            return x.Class == FpClass.Infinity ? x : y;
        }
        if (x.Class == FpClass.Zero && y.Class == FpClass.Zero)
        {
            return Unpacked.Zero(x.Sign == y.Sign ? x.Sign : p.Mode == RoundingMode.Down);
        }
        if (x.Class == FpClass.Zero || y.Class == FpClass.Zero)
        {
            // The other operand, exactly (rounded again for the precision and range: x87 precision control, FTZ).
            return Round(x.Class == FpClass.Zero ? y : x, p, ref f);
        }
        if (!AddCore(x, y, out bool s, out int e, out UInt128 sig))
        {
            return Unpacked.Zero(p.Mode == RoundingMode.Down);
        }
        return RoundPack(s, e, sig, p, ref f);
    }

    /// <summary>Square root (NaN quieted, -0 stays, negative operands invalid).</summary>
    public static Unpacked Sqrt(in Unpacked y, in RoundParams p, ref FpFlags f)
    {
        if (y.IsNaN)
        {
            if (y.Class == FpClass.SignalingNaN)
            {
                f |= FpFlags.Invalid;
            }
            return y.Quieted();
        }
        if (y.Class == FpClass.Zero)
        {
            return y;
        }
        if (y.Sign)
        {
            f |= FpFlags.Invalid;
            return Unpacked.DefaultNaN;
        }
        if (y.Class == FpClass.Infinity)
        {
            return y;
        }
        if (y.Class == FpClass.Denormal)
        {
            f |= FpFlags.Denormal;
        }
        SqrtCore(y, out int se, out UInt128 ss);
        return RoundPack(false, se, ss, p, ref f);
    }

    // ---- integers ----

    /// <summary>An integer magnitude as an unpacked value (exact; zero for 0).</summary>
    public static Unpacked FromInteger(bool negative, ulong magnitude)
    {
        if (magnitude == 0)
        {
            return Unpacked.Zero(false);
        }
        int lz = BitOperations.LeadingZeroCount(magnitude);
        return new Unpacked(FpClass.Normal, negative, 63 - lz, magnitude << lz);
    }

    /// <summary>
    /// Rounds a finite value to an integer in <paramref name="mode"/>: the magnitude (which may exceed 64 bits, then
    /// <paramref name="huge"/> is set) and whether it was inexact.
    /// </summary>
    public static ulong ToIntegerMagnitude(in Unpacked v, RoundingMode mode, out bool inexact, out bool huge, out bool roundedUp)
    {
        inexact = false;
        huge = false;
        roundedUp = false;
        if (!v.IsFiniteNonZero)
        {
            return 0;
        }
        if (v.Exp >= 64)
        {
            huge = true;
            return 0;
        }
        int shift = 63 - v.Exp; // value = Sig >> shift
        ulong ip;
        ulong frac; // fraction bits, left-aligned
        bool sticky = false;
        if (shift <= 0)
        {
            ip = v.Sig; // Exp == 63
            frac = 0;
        }
        else if (shift < 64)
        {
            ip = v.Sig >> shift;
            frac = v.Sig << (64 - shift);
        }
        else if (shift == 64)
        {
            ip = 0;
            frac = v.Sig;
        }
        else
        {
            ip = 0;
            frac = 0;
            sticky = true; // below one half
        }
        inexact = frac != 0 || sticky;
        bool up = mode switch
        {
            RoundingMode.Nearest => frac > IntegerBit || (frac == IntegerBit && (ip & 1) != 0),
            RoundingMode.Up => inexact && !v.Sign,
            RoundingMode.Down => inexact && v.Sign,
            _ => false,
        };
        if (up)
        {
            roundedUp = true;
            if (ip == ulong.MaxValue)
            {
                huge = true;
                return 0;
            }
            ip++;
        }
        return ip;
    }

    /// <summary>
    /// Rounds a finite value to an integral value in the same format (frndint, roundsd): exact when it already is
    /// one; a zero result keeps the operand's sign.
    /// </summary>
    public static Unpacked RoundToIntegral(in Unpacked v, RoundingMode mode, ref FpFlags flags)
    {
        if (!v.IsFiniteNonZero || v.Exp >= 63)
        {
            return v;
        }
        ulong mag = ToIntegerMagnitude(v, mode, out bool inexact, out _, out bool up);
        if (inexact)
        {
            flags |= FpFlags.Inexact;
            if (up)
            {
                flags |= FpFlags.RoundedUp;
            }
        }
        if (mag == 0)
        {
            return Unpacked.Zero(v.Sign);
        }
        Unpacked r = FromInteger(v.Sign, mag);
        return r;
    }

    /// <summary>Compares two non-NaN values: -1, 0 or 1 (zeros of either sign are equal).</summary>
    public static int Compare(in Unpacked a, in Unpacked b)
    {
        if (a.Class == FpClass.Zero && b.Class == FpClass.Zero)
        {
            return 0;
        }
        if (a.Sign != b.Sign)
        {
            return a.Sign ? -1 : 1;
        }
        int c = CompareMagnitude(a, b);
        return a.Sign ? -c : c;
    }

    private static int CompareMagnitude(in Unpacked a, in Unpacked b)
    {
        int ra = Rank(a), rb = Rank(b);
        if (ra != rb)
        {
            return ra < rb ? -1 : 1;
        }
        if (ra != 1)
        {
            return 0;
        }
        if (a.Exp != b.Exp)
        {
            return a.Exp < b.Exp ? -1 : 1;
        }
        return a.Sig == b.Sig ? 0 : a.Sig < b.Sig ? -1 : 1;
    }

    /// <summary>0 zero, 1 finite nonzero, 2 infinity.</summary>
    private static int Rank(in Unpacked v) => v.Class switch
    {
        FpClass.Zero => 0,
        FpClass.Infinity => 2,
        _ => 1,
    };
}
