namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>
/// The x87 transcendental functions (f2xm1, fyl2x, fyl2xp1, fpatan, fsin, fcos, fsincos, fptan) on finite nonzero
/// operands, evaluated with a 128-bit significand (<see cref="Wide"/>) and rounded once to the x87 format: the
/// result is the correctly rounded value of the mathematical function. The trigonometric functions first reduce the
/// argument the way the hardware does, exactly, modulo a 66-bit approximation of pi/2 (the documented x87
/// behaviour; this is why fsin of a large argument differs from the true sine, identically on the CPU and here).
/// Hardware results are within one unit in the last place but not always correctly rounded, and Intel and AMD
/// microcode differ: see the emulator README for how often the differential test finds a one-ulp difference.
/// </summary>
internal static class X87Math
{
    /// <summary>floor(pi * 2^64): pi with 66 significant bits; pi/2 = Pi66 * 2^-65.</summary>
    private static readonly UInt128 Pi66 = new(0x3, 0x243F6A8885A308D3);

    /// <summary>Upper bound (exclusive) of the trigonometric functions' argument: 2^63.</summary>
    public const int TrigMaxExponent = 63;

    /// <summary>
    /// Below 2^-58 the series' second term (about r^3/6) is too small for the 128-bit significand to hold reliably,
    /// but still far below the 64-bit result's rounding point (and below the last bit of the 66-bit reduced
    /// argument): the result is r, rounded as if nudged towards the true value.
    /// </summary>
    private const int TinyExponent = -58;

    /// <summary>Moves <paramref name="w"/> by one unit of its 128-bit significand, to record on which side of it the exact value lies.</summary>
    private static Wide Nudge(Wide w, bool awayFromZero) =>
        awayFromZero ? new Wide(w.Sign, w.Exp + 1, (w.Mant >> 1) + 1) : new Wide(w.Sign, w.Exp, w.Mant - 1);

    /// <summary>
    /// Reduces |x| (finite nonzero, exponent below 63) modulo pi/2 with pi rounded to 66 bits: returns r in about
    /// [-pi/4, pi/4] and the quadrant (k mod 4) with |x| = k * pi66/2 + r exactly.
    /// </summary>
    private static Wide Reduce(in Unpacked x, out int quadrant)
    {
        quadrant = 0;
        if (x.Exp < -2)
        {
            return Wide.From(x).Abs(); // |x| < 1/4: no reduction
        }
        // |x| = Sig * 2^(Exp - 63) = X * 2^-65 with X = Sig << (Exp + 2) (at most 128 bits).
        UInt128 big = (UInt128)x.Sig << (x.Exp + 2);
        UInt128 k = big / Pi66;
        UInt128 rem = big - (k * Pi66);
        bool negative = false;
        if (rem << 1 > Pi66)
        {
            k++;
            rem = Pi66 - rem;
            negative = true;
        }
        quadrant = (int)(k & 3);
        return new Wide(negative, 62, rem); // rem * 2^-65
    }

    private static void SinCos(Wide r, out Wide sin, out Wide cos)
    {
        if (r.Exp < TinyExponent)
        {
            // sin r = r - r^3/6 and cos r = 1 - r^2/2 with the correction below the 128-bit significand: keep its
            // direction in the last bit so that the result is rounded (and flagged inexact) correctly.
            sin = Nudge(r, awayFromZero: false);
            cos = new Wide(false, -1, UInt128.MaxValue);
            return;
        }
        Wide r2 = r * r;
        // sin r = r - r^3/3! + ...; cos r = 1 - r^2/2! + ...
        Wide term = r, s = r;
        Wide cterm = Wide.One, c = Wide.One;
        for (uint k = 1; k < 40; k++)
        {
            term = (term * r2).DivInt((2 * k) * ((2 * k) + 1)).Negate();
            cterm = (cterm * r2).DivInt(((2 * k) - 1) * (2 * k)).Negate();
            s += term;
            c += cterm;
            if ((term.IsZero || term.Exp < s.Exp - 130) && (cterm.IsZero || cterm.Exp < c.Exp - 130))
            {
                break;
            }
        }
        sin = s;
        cos = c;
    }

    /// <summary>sin and cos of a finite nonzero x with |x| &lt; 2^63 (as the hardware: reduction by the 66-bit pi).</summary>
    public static void SinCos(in Unpacked x, out Wide sin, out Wide cos)
    {
        Wide r = Reduce(x, out int q);
        SinCos(r, out Wide s, out Wide c);
        switch (q)
        {
            case 0: sin = s; cos = c; break;
            case 1: sin = c; cos = s.Negate(); break;
            case 2: sin = s.Negate(); cos = c.Negate(); break;
            default: sin = c.Negate(); cos = s; break;
        }
        if (x.Sign)
        {
            sin = sin.Negate();
        }
    }

    /// <summary>tan of a finite nonzero x with |x| &lt; 2^63.</summary>
    public static Wide Tan(in Unpacked x)
    {
        Wide r = Reduce(x, out int q);
        SinCos(r, out Wide s, out Wide c);
        Wide t = (q & 1) == 0 ? (r.Exp < TinyExponent ? Nudge(r, awayFromZero: true) : s / c) : (c / s).Negate();
        return x.Sign ? t.Negate() : t;
    }

    /// <summary>2^x - 1 for a finite nonzero x (the hardware defines it for |x| &lt;= 1).</summary>
    public static Wide Exp2M1(in Unpacked x)
    {
        Wide y = Wide.From(x) * Wide.Ln2;
        // expm1(y) = y + y^2/2! + ...; for |x| > 1 halve y first and square back: expm1(2y) = expm1(y) * (expm1(y) + 2).
        int halvings = 0;
        while (y.Exp >= 0 && halvings < 20000)
        {
            y = y.Scale(-1);
            halvings++;
        }
        Wide term = y, sum = y;
        for (uint k = 2; k < 60; k++)
        {
            term = (term * y).DivInt(k);
            sum += term;
            if (term.IsZero || term.Exp < sum.Exp - 130)
            {
                break;
            }
        }
        Wide two = Wide.One.Scale(1);
        for (int h = 0; h < halvings; h++)
        {
            sum *= sum + two;
        }
        return sum;
    }

    /// <summary>log2(x) for a positive finite nonzero x (exact zero for x = 1).</summary>
    public static Wide Log2(in Unpacked x)
    {
        int e = x.Exp;
        Wide m = new(false, 0, (UInt128)x.Sig << 64); // in [1, 2)
        // Keep m in [sqrt(1/2), sqrt(2)) so that the series argument is small.
        if (x.Sig > 0xB504F333F9DE6484UL)
        {
            m = m.Scale(-1);
            e++;
        }
        Wide ln = Ln(m);
        return Wide.FromInt(e) + (ln * Wide.Log2E);
    }

    /// <summary>log2(1 + x) for a finite nonzero x with |x| small (the hardware defines it for |x| &lt; 1 - sqrt(2)/2).</summary>
    public static Wide Log2OnePlus(in Unpacked x)
    {
        Wide w = Wide.From(x);
        // ln(1 + x) = 2 atanh(x / (2 + x))
        Wide t = w / (Wide.One.Scale(1) + w);
        return Atanh2(t) * Wide.Log2E;
    }

    /// <summary>ln(m) for m near 1: 2 atanh((m - 1) / (m + 1)).</summary>
    private static Wide Ln(Wide m)
    {
        Wide num = m - Wide.One;
        if (num.IsZero)
        {
            return Wide.Zero;
        }
        Wide t = num / (m + Wide.One);
        return Atanh2(t);
    }

    /// <summary>2 atanh(t) = 2 (t + t^3/3 + t^5/5 + ...).</summary>
    private static Wide Atanh2(Wide t)
    {
        Wide t2 = t * t;
        Wide power = t, sum = t;
        for (uint k = 3; k < 400; k += 2)
        {
            power *= t2;
            Wide term = power.DivInt(k);
            sum += term;
            if (term.IsZero || term.Exp < sum.Exp - 130)
            {
                break;
            }
        }
        return sum.Scale(1);
    }

    /// <summary>atan2(y, x) for finite nonzero y and x.</summary>
    public static Wide Atan2(in Unpacked y, in Unpacked x)
    {
        Wide ay = Wide.From(y).Abs(), ax = Wide.From(x).Abs();
        Wide a;
        if (Wide.CompareMagnitude(ay, ax) <= 0)
        {
            a = Atan(ay / ax);
        }
        else
        {
            a = Wide.Pi.Scale(-1) - Atan(ax / ay);
        }
        if (x.Sign)
        {
            a = Wide.Pi - a;
        }
        return y.Sign ? a.Negate() : a;
    }

    /// <summary>atan(z) for 0 &lt;= z &lt;= 1: two argument halvings (z / (1 + sqrt(1 + z^2))), then the series.</summary>
    private static Wide Atan(Wide z)
    {
        if (z.IsZero)
        {
            return z;
        }
        if (z.Exp < TinyExponent)
        {
            return Nudge(z, awayFromZero: false); // atan z = z - z^3/3
        }
        int halvings = 0;
        while (z.Exp >= -3 && halvings < 3)
        {
            z /= Wide.One + Wide.Sqrt(Wide.One + (z * z));
            halvings++;
        }
        Wide z2 = z * z;
        Wide power = z, sum = z;
        for (uint k = 3; k < 400; k += 2)
        {
            power = (power * z2).Negate();
            Wide term = power.DivInt(k);
            sum += term;
            if (term.IsZero || term.Exp < sum.Exp - 130)
            {
                break;
            }
        }
        return sum.Scale(halvings);
    }
}
