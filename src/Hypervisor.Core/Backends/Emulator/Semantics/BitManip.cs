namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>The BMI2 operations (the <c>Cond</c> of a <c>Bmi2</c> op).</summary>
internal enum Bmi2Op : byte
{
    Bzhi,
    Pdep,
    Pext,
    Mulx,
    Rorx,
    Sarx,
    Shlx,
    Shrx,
}

/// <summary>Pure semantics of the BMI2 bit-manipulation instructions (operands already masked to the operand size).</summary>
internal static class BitManip
{
    /// <summary>pdep: the low bits of <paramref name="source"/>, deposited at the set bits of <paramref name="mask"/>.</summary>
    public static ulong Deposit(ulong source, ulong mask) => PairMaskBits(source, mask, extract: false);

    /// <summary>pext: the bits of <paramref name="source"/> at the set bits of <paramref name="mask"/>, packed into the low bits.</summary>
    public static ulong Extract(ulong source, ulong mask) => PairMaskBits(source, mask, extract: true);

    /// <summary>
    /// pdep and pext pair the k-th lowest set bit of <paramref name="mask"/> with bit k: pdep copies the source's bit k
    /// to the mask bit, pext copies the source's mask bit down to bit k (inlined, so each caller gets its own loop).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong PairMaskBits(ulong source, ulong mask, bool extract)
    {
        ulong r = 0;
        for (ulong bit = 1; mask != 0; bit <<= 1)
        {
            ulong lowest = mask & (0 - mask);
            if ((source & (extract ? lowest : bit)) != 0)
            {
                r |= extract ? bit : lowest;
            }
            mask &= mask - 1;
        }
        return r;
    }

    /// <summary>bzhi: <paramref name="source"/> with the bits from index (the low byte of <paramref name="control"/>) up cleared; <paramref name="carry"/> when the index is beyond the operand.</summary>
    public static ulong ZeroHighBits(ulong source, ulong control, int size, out bool carry)
    {
        int bits = size * 8;
        int index = (int)(control & 0xFF);
        carry = index > bits - 1;
        return index >= bits ? source : source & ((1UL << index) - 1);
    }

    /// <summary>rorx: rotate right by the immediate (masked to the operand size), no flags.</summary>
    public static ulong RotateRight(ulong v, int count, int size)
    {
        int bits = size * 8;
        count &= bits - 1;
        if (count == 0)
        {
            return v;
        }
        ulong mask = size == 8 ? ulong.MaxValue : (1UL << bits) - 1;
        return ((v >> count) | (v << (bits - count))) & mask;
    }

    /// <summary>sarx/shlx/shrx: shift by the count register masked to 5 or 6 bits, no flags.</summary>
    public static ulong Shift(Bmi2Op op, ulong v, ulong count, int size)
    {
        int c = (int)(count & (size == 8 ? 63UL : 31UL));
        ulong mask = size == 8 ? ulong.MaxValue : 0xFFFF_FFFF;
        return op switch
        {
            Bmi2Op.Shlx => (v << c) & mask,
            Bmi2Op.Shrx => v >> c,
            _ => (size == 8 ? (ulong)((long)v >> c) : (uint)((int)v >> c)) & mask,
        };
    }
}
