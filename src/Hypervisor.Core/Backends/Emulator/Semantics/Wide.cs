namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>
/// A binary float with a 128-bit significand, for evaluating the x87 transcendental functions well beyond the 64
/// bits of the result before one final rounding (<see cref="Round"/>). Value = (-1)^Sign * Mant * 2^(Exp - 127),
/// Mant normalized (bit 127 set) or zero. Operations truncate (error below 2^-126 relative each); no allocation.
/// </summary>
internal readonly struct Wide
{
    public readonly bool Sign;
    public readonly int Exp;
    public readonly UInt128 Mant;

    public Wide(bool sign, int exp, UInt128 mant)
    {
        if (mant == 0)
        {
            Sign = false;
            Exp = 0;
            Mant = 0;
            return;
        }
        int lz = (int)UInt128.LeadingZeroCount(mant);
        Sign = sign;
        Exp = exp - lz;
        Mant = mant << lz;
    }

    public static readonly Wide Zero = default;
    public static readonly Wide One = new(false, 0, (UInt128)1 << 127);
    public static readonly Wide Pi = new(false, 1, new UInt128(0xC90FDAA22168C234, 0xC4C6628B80DC1CD1));
    public static readonly Wide Ln2 = new(false, -1, new UInt128(0xB17217F7D1CF79AB, 0xC9E3B39803F2F6AF));
    public static readonly Wide Log2E = new(false, 0, new UInt128(0xB8AA3B295C17F0BB, 0xBE87FED0691D3E88));
    public static readonly Wide Log2Ten = new(false, 1, new UInt128(0xD49A784BCD1B8AFE, 0x492BF6FF4DAFDB4C));
    public static readonly Wide Log10Two = new(false, -2, new UInt128(0x9A209A84FBCFF798, 0x8F8959AC0B7C9178));

    public bool IsZero => Mant == 0;

    /// <summary>A finite nonzero unpacked value, exactly.</summary>
    public static Wide From(in Unpacked v) => new(v.Sign, v.Exp, (UInt128)v.Sig << 64);

    public static Wide FromInt(long k) => k < 0 ? new Wide(true, 127, (UInt128)(ulong)-(k + 1) + 1) : new Wide(false, 127, (UInt128)(ulong)k);

    public Wide Negate() => IsZero ? this : new Wide(!Sign, Exp, Mant);

    public Wide Abs() => new(false, Exp, Mant);

    /// <summary>Multiplies by 2^<paramref name="n"/>.</summary>
    public Wide Scale(int n) => IsZero ? this : new Wide(Sign, Exp + n, Mant);

    public static Wide operator -(Wide a) => a.Negate();

    public static Wide operator +(Wide a, Wide b)
    {
        if (a.IsZero)
        {
            return b;
        }
        if (b.IsZero)
        {
            return a;
        }
        if (a.Exp < b.Exp || (a.Exp == b.Exp && a.Mant < b.Mant))
        {
            (a, b) = (b, a);
        }
        int d = a.Exp - b.Exp;
        // One bit of headroom for a carry.
        UInt128 big = a.Mant >> 1;
        UInt128 small = d >= 127 ? 0 : (b.Mant >> 1) >> d;
        UInt128 r = a.Sign == b.Sign ? big + small : big - small;
        return new Wide(a.Sign, a.Exp + 1, r);
    }

    public static Wide operator -(Wide a, Wide b) => a + b.Negate();

    public static Wide operator *(Wide a, Wide b)
    {
        if (a.IsZero || b.IsZero)
        {
            return Zero;
        }
        ulong ah = (ulong)(a.Mant >> 64), al = (ulong)a.Mant, bh = (ulong)(b.Mant >> 64), bl = (ulong)b.Mant;
        UInt128 hh = Mul(ah, bh), hl = Mul(ah, bl), lh = Mul(al, bh), ll = Mul(al, bl);
        // 256-bit sum: hh << 128 + (hl + lh) << 64 + ll; keep the top 128 bits.
        UInt128 mid = (hl & ulong.MaxValue) + (lh & ulong.MaxValue) + (ll >> 64);
        UInt128 top = hh + (hl >> 64) + (lh >> 64) + (mid >> 64);
        ulong low = (ulong)mid;
        // top:low holds bits 255..64 of the product; the product's top bit is 255 or 254.
        int exp = a.Exp + b.Exp + 1;
        if ((top >> 127) == 0)
        {
            top = (top << 1) | (low >> 63);
            exp--;
        }
        return new Wide(a.Sign ^ b.Sign, exp, top);
    }

    public static Wide operator /(Wide a, Wide b)
    {
        if (a.IsZero)
        {
            return Zero;
        }
        return a * Reciprocal(b);
    }

    /// <summary>a / n for a small positive integer.</summary>
    public Wide DivInt(uint n)
    {
        if (IsZero)
        {
            return this;
        }
        // Keep 128 quotient bits: divide the 256-bit Mant << 128 in two steps.
        UInt128 q1 = Mant / n;
        UInt128 r1 = Mant % n;
        UInt128 q2 = (r1 << 64) / n;
        UInt128 r2 = (r1 << 64) % n;
        UInt128 q3 = (r2 << 64) / n;
        // q1 * 2^128 + q2 * 2^64 + q3 (q2, q3 < 2^64 since r < n).
        int lz = (int)UInt128.LeadingZeroCount(q1);
        UInt128 mant = lz == 0 ? q1 : (q1 << lz) | (((q2 << 64) | q3) >> (128 - lz));
        return new Wide(Sign, Exp - lz, mant);
    }

    /// <summary>1 / b by Newton-Raphson from a double estimate (three steps: 53, 106, 128 bits).</summary>
    private static Wide Reciprocal(Wide b)
    {
        double top = (double)(ulong)(b.Mant >> 64) / 9223372036854775808.0; // in [1, 2)
        Wide y = FromDouble(1.0 / top).Scale(-b.Exp);
        if (b.Sign)
        {
            y = y.Negate();
        }
        Wide two = One.Scale(1);
        for (int k = 0; k < 3; k++)
        {
            y *= two - (b * y);
        }
        return y;
    }

    public static Wide FromDouble(double d)
    {
        if (d == 0)
        {
            return Zero;
        }
        ulong bits = BitConverter.DoubleToUInt64Bits(d);
        Unpacked u = SoftFloat.Unpack64(bits, daz: false);
        return From(u);
    }

    /// <summary>Square root of a positive value (Newton from a double estimate).</summary>
    public static Wide Sqrt(Wide a)
    {
        if (a.IsZero)
        {
            return a;
        }
        // a = m * 2^e with m in [1, 2): estimate from the top 53 bits.
        int e = a.Exp;
        double m = (double)(ulong)(a.Mant >> 64) / 9223372036854775808.0;
        if ((e & 1) != 0)
        {
            m *= 2;
            e--;
        }
        Wide y = FromDouble(Math.Sqrt(m)).Scale(e / 2);
        for (int k = 0; k < 3; k++)
        {
            y = (y + (a / y)).Scale(-1);
        }
        return y;
    }

    /// <summary>Compares magnitudes: -1, 0, 1.</summary>
    public static int CompareMagnitude(Wide a, Wide b)
    {
        if (a.IsZero || b.IsZero)
        {
            return a.IsZero ? (b.IsZero ? 0 : -1) : 1;
        }
        if (a.Exp != b.Exp)
        {
            return a.Exp < b.Exp ? -1 : 1;
        }
        return a.Mant.CompareTo(b.Mant);
    }

    /// <summary>Rounds to the x87 format with <paramref name="p"/> (one rounding of the 128-bit value).</summary>
    public Unpacked Round(in RoundParams p, ref FpFlags flags) =>
        IsZero ? Unpacked.Zero(Sign) : SoftFloat.RoundPack(Sign, Exp, Mant, p, ref flags);

    private static UInt128 Mul(ulong a, ulong b)
    {
        ulong hi = Math.BigMul(a, b, out ulong lo);
        return new UInt128(hi, lo);
    }
}
