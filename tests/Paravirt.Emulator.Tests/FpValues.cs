namespace Paravirt.Emulator.Tests;

/// <summary>
/// Floating-point operands that reach the corners: signed zeros, denormals (smallest, largest, random), the
/// smallest normals, values near the overflow threshold, infinities, quiet and signaling NaNs with random payloads,
/// integers and halves (conversion and rounding ties), values near the 32/64-bit integer limits, short significands
/// (exact results) and ordinary numbers of moderate size.
/// </summary>
internal static class FpValues
{
    public static ulong Double(Random r)
    {
        ulong sign = (ulong)r.Next(2) << 63;
        ulong frac = (ulong)r.NextInt64() & 0x000F_FFFF_FFFF_FFFF;
        switch (r.Next(20))
        {
            case 0: return sign;
            case 1: return sign | (r.Next(4) switch { 0 => 1UL, 1 => 0x000F_FFFF_FFFF_FFFF, _ => frac | 1 });
            case 2: return sign | 0x7FF0_0000_0000_0000;
            case 3: return sign | 0x7FF8_0000_0000_0000 | (r.Next(2) == 0 ? 0 : frac);
            case 4: return sign | 0x7FF0_0000_0000_0000 | (frac & 0x0007_FFFF_FFFF_FFFF) | 1;
            case 5: return sign | ((ulong)r.Next(1, 60) << 52) | frac;               // near the underflow threshold
            case 6: return sign | ((ulong)r.Next(0x7C0, 0x7FF) << 52) | frac;         // near the overflow threshold
            case 7:
                return r.Next(5) switch
                {
                    0 => BitConverter.DoubleToUInt64Bits(r.Next(-1000, 1000)),
                    1 => BitConverter.DoubleToUInt64Bits(r.Next(-1000, 1000) + 0.5),
                    2 => BitConverter.DoubleToUInt64Bits((r.Next(2) == 0 ? -1 : 1) * (2147483648.0 + r.Next(-3, 3) + (r.Next(3) * 0.25))),
                    3 => BitConverter.DoubleToUInt64Bits((r.Next(2) == 0 ? -1 : 1) * (9223372036854775808.0 + (r.Next(-3, 3) * 1024.0))),
                    _ => BitConverter.DoubleToUInt64Bits(r.NextDouble() * 4 - 2),
                };
            case 8: return sign | ((ulong)r.Next(1023 - 3, 1023 + 3) << 52) | (r.Next(2) == 0 ? 0 : (ulong)r.Next(0, 4));
            case 9: return sign | ((ulong)r.Next(1, 0x7FF) << 52) | frac;             // anywhere
            case 10:
            case 11: return sign | ((ulong)r.Next(1023 - 30, 1023 + 30) << 52) | (frac & (0x000F_FFFF_FFFF_FFFFUL << r.Next(20, 52))); // short significand
            default: return sign | ((ulong)r.Next(1023 - 80, 1023 + 80) << 52) | frac;
        }
    }

    public static uint Single(Random r)
    {
        uint sign = (uint)r.Next(2) << 31;
        uint frac = (uint)r.Next() & 0x7F_FFFF;
        switch (r.Next(20))
        {
            case 0: return sign;
            case 1: return sign | (r.Next(4) switch { 0 => 1u, 1 => 0x7F_FFFFu, _ => frac | 1 });
            case 2: return sign | 0x7F80_0000;
            case 3: return sign | 0x7FC0_0000 | (r.Next(2) == 0 ? 0 : frac);
            case 4: return sign | 0x7F80_0000 | (frac & 0x3F_FFFF) | 1;
            case 5: return sign | ((uint)r.Next(1, 20) << 23) | frac;
            case 6: return sign | ((uint)r.Next(0xE0, 0xFF) << 23) | frac;
            case 7:
                return r.Next(4) switch
                {
                    0 => BitConverter.SingleToUInt32Bits(r.Next(-1000, 1000)),
                    1 => BitConverter.SingleToUInt32Bits(r.Next(-1000, 1000) + 0.5f),
                    2 => BitConverter.SingleToUInt32Bits((r.Next(2) == 0 ? -1 : 1) * (2147483648.0f + (r.Next(-3, 3) * 256.0f))),
                    _ => BitConverter.SingleToUInt32Bits((float)(r.NextDouble() * 4 - 2)),
                };
            case 8: return sign | ((uint)r.Next(127 - 3, 127 + 3) << 23) | (r.Next(2) == 0 ? 0 : (uint)r.Next(0, 4));
            case 9: return sign | ((uint)r.Next(1, 0xFF) << 23) | frac;
            case 10:
            case 11: return sign | ((uint)r.Next(127 - 20, 127 + 20) << 23) | (frac & (0x7F_FFFFu << r.Next(10, 23)));
            default: return sign | ((uint)r.Next(127 - 40, 127 + 40) << 23) | frac;
        }
    }

    /// <summary>An 80-bit value (significand, sign+exponent), including the encodings the x87 refuses (unnormals, pseudo-NaNs) and pseudo-denormals.</summary>
    public static (ulong Mant, ushort SignExp) Extended(Random r)
    {
        ushort sign = (ushort)(r.Next(2) << 15);
        ulong frac = (ulong)r.NextInt64() & 0x7FFF_FFFF_FFFF_FFFF;
        const ulong J = 0x8000_0000_0000_0000;
        switch (r.Next(24))
        {
            case 0: return (0, sign);
            case 1: return (r.Next(3) == 0 ? 1UL : frac | 1, sign);                                  // denormal
            case 2: return (J, (ushort)(sign | 0x7FFF));                                              // infinity
            case 3: return (J | 0x4000_0000_0000_0000 | (r.Next(2) == 0 ? 0 : frac), (ushort)(sign | 0x7FFF)); // quiet NaN
            case 4: return (J | (frac & 0x3FFF_FFFF_FFFF_FFFF) | 1, (ushort)(sign | 0x7FFF));        // signaling NaN
            case 5:
                return r.Next(4) switch
                {
                    0 => (J | frac, sign),                                                             // pseudo-denormal
                    1 => (frac, (ushort)(sign | r.Next(1, 0x7FFF))),                                  // unnormal
                    2 => (frac | 1, (ushort)(sign | 0x7FFF)),                                         // pseudo-NaN
                    _ => (0, (ushort)(sign | 0x7FFF)),                                                // pseudo-infinity
                };
            case 6: return (J | frac, (ushort)(sign | r.Next(1, 80)));                                // near the underflow threshold
            case 7: return (J | frac, (ushort)(sign | r.Next(0x7FFF - 80, 0x7FFF)));                  // near the overflow threshold
            case 8:
            {
                // An integer, or an integer plus a half (rounding ties), up to 2^70.
                int bits = r.Next(1, 70);
                ulong m = J | (frac & (ulong.MaxValue << Math.Max(0, 64 - bits)));
                if (r.Next(3) == 0 && bits < 64)
                {
                    m |= 1UL << (63 - bits);
                }
                return (m, (ushort)(sign | (16383 + bits - 1)));
            }
            case 9:
            {
                // Exactly a double or a float (loads and stores round-trip).
                ulong mask = r.Next(2) == 0 ? ~0x7FFUL : ~0xFF_FFFF_FFFFUL;
                return (J | (frac & mask), (ushort)(sign | r.Next(16383 - 120, 16383 + 120)));
            }
            case 10: return (J | (frac & (ulong.MaxValue << r.Next(30, 63))), (ushort)(sign | r.Next(16383 - 20, 16383 + 20))); // short significand
            case 11: return (J | frac, (ushort)(sign | r.Next(1, 0x7FFF)));                         // anywhere
            case 12: return (J | (r.Next(2) == 0 ? frac >> r.Next(50, 64) : ~(frac >> r.Next(50, 64)) & ~J), (ushort)(sign | r.Next(16383 - 2, 16383 + 2))); // near 1 and 2
            default: return (J | frac, (ushort)(sign | r.Next(16383 - 70, 16383 + 70)));
        }
    }

    public static int Int32(Random r) => r.Next(6) switch
    {
        0 => int.MinValue + r.Next(0, 3),
        1 => int.MaxValue - r.Next(0, 3),
        2 => r.Next(-100, 100),
        3 => (1 << r.Next(31)) + r.Next(-2, 3),
        _ => r.Next(int.MinValue, int.MaxValue),
    };

    public static Vector128<byte> Vector(Random r, LaneKind kind) => kind switch
    {
        LaneKind.Double => Vector128.Create(Double(r), Double(r)).AsByte(),
        LaneKind.Single => Vector128.Create(Single(r), Single(r), Single(r), Single(r)).AsByte(),
        _ => Vector128.Create(Int32(r), Int32(r), Int32(r), Int32(r)).AsByte(),
    };

    /// <summary>A valid MXCSR with every exception masked: often the everyday value with PE set (the emulator's fast path), otherwise random flags, rounding, DAZ and FTZ.</summary>
    public static uint Mxcsr(Random r)
    {
        if (r.Next(3) == 0)
        {
            return 0x1FA0;
        }
        uint mx = 0x1F80 | (uint)r.Next(64) | ((uint)r.Next(4) << 13);
        if (r.Next(4) == 0)
        {
            mx |= 0x40; // DAZ
        }
        if (r.Next(4) == 0)
        {
            mx |= 0x8000; // FTZ
        }
        return mx;
    }
}

/// <summary>How to fill the lanes of an operand.</summary>
internal enum LaneKind
{
    Single,
    Double,
    Int32,
}
