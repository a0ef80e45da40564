using System.Numerics;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>Which ALU op last set the arithmetic flags lazily (<see cref="None"/>: they are in RFLAGS).</summary>
internal enum LazyKind
{
    None,
    Add,
    Sub,
    Logic,
    Inc,
    Dec,
    Shl,
    Shr,
    Sar,
}

/// <summary>
/// The arithmetic flags of a lazily recorded ALU op (its kind, operands, result and size; <see cref="CpuState"/>'s
/// lazy record), computed only when something reads them. One definition for the interpreter and translated code, so
/// both tiers produce the same bits, the flags the SDM leaves undefined included.
/// </summary>
internal static class LazyFlags
{
    public const ulong CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, OF = 0x800;
    public const ulong Arith = CF | PF | AF | ZF | SF | OF;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong SignBit(int size) => 1UL << ((size << 3) - 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long SignExtend(ulong v, int size) => size switch
    {
        1 => (sbyte)v,
        2 => (short)v,
        4 => (int)v,
        _ => (long)v,
    };

    /// <summary>SF, ZF and PF of result <paramref name="r"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Szp(ulong r, int size)
    {
        ulong f = (ulong)((~BitOperations.PopCount((uint)(r & 0xFF)) & 1) << 2);
        if (r == 0)
        {
            f |= ZF;
        }
        return f | (((r >> ((size << 3) - 1)) & 1) << 7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong AddFlags(ulong a, ulong b, ulong r, int size, bool carry) =>
        Szp(r, size) | (carry ? CF : 0) | ((a ^ b ^ r) & AF) | ((((a ^ r) & (b ^ r)) & SignBit(size)) != 0 ? OF : 0);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong SubFlags(ulong a, ulong b, ulong r, int size, bool borrow) =>
        Szp(r, size) | (borrow ? CF : 0) | ((a ^ b ^ r) & AF) | ((((a ^ b) & (a ^ r)) & SignBit(size)) != 0 ? OF : 0);

    /// <summary>CF of a shift by a non-zero count.</summary>
    public static ulong ShiftCarry(LazyKind kind, ulong a, int count, int size)
    {
        int bits = size << 3;
        return kind switch
        {
            LazyKind.Shl => count <= bits ? (a >> (bits - count)) & 1 : 0,
            LazyKind.Shr => (a >> (count - 1)) & 1,
            _ => (ulong)(SignExtend(a, size) >> (count - 1)) & 1,
        };
    }

    /// <summary>
    /// The six arithmetic flags of the record (<paramref name="rf"/> supplies CF for inc/dec); with
    /// <paramref name="flagOverride"/>, CF and OF come from <paramref name="overrideFlags"/> (a rotate after the op).
    /// </summary>
    public static ulong Compute(LazyKind kind, ulong a, ulong b, ulong r, int size, ulong rf, bool flagOverride, ulong overrideFlags)
    {
        ulong f = kind switch
        {
            LazyKind.None => rf & Arith,
            LazyKind.Add => AddFlags(a, b, r, size, r < a),
            LazyKind.Sub => SubFlags(a, b, r, size, a < b),
            LazyKind.Inc => AddFlags(a, 1, r, size, false) | (rf & CF),
            LazyKind.Dec => SubFlags(a, 1, r, size, false) | (rf & CF),
            LazyKind.Shl => Szp(r, size) | ShiftCarry(LazyKind.Shl, a, (int)b, size) | ((((r & SignBit(size)) != 0) ^ (ShiftCarry(LazyKind.Shl, a, (int)b, size) != 0)) ? OF : 0),
            LazyKind.Shr => Szp(r, size) | ShiftCarry(LazyKind.Shr, a, (int)b, size) | ((a & SignBit(size)) != 0 ? OF : 0),
            LazyKind.Sar => Szp(r, size) | ShiftCarry(LazyKind.Sar, a, (int)b, size),
            _ => Szp(r, size),
        };
        if (flagOverride && kind != LazyKind.None)
        {
            f = (f & ~(CF | OF)) | overrideFlags;
        }
        return f;
    }

    /// <summary>RFLAGS with the record's arithmetic flags computed in (translated code calls this where it needs them all).</summary>
    public static ulong Materialize(int kind, ulong a, ulong b, ulong r, int size, ulong rf, bool flagOverride, ulong overrideFlags) =>
        (rf & ~Arith) | Compute((LazyKind)kind, a, b, r, size, rf, flagOverride, overrideFlags);

    /// <summary>CF alone.</summary>
    public static ulong Carry(int kind, ulong a, ulong b, ulong r, int size, ulong rf, bool flagOverride, ulong overrideFlags)
    {
        if (flagOverride && (LazyKind)kind != LazyKind.None)
        {
            return overrideFlags & CF;
        }
        return (LazyKind)kind switch
        {
            LazyKind.None or LazyKind.Inc or LazyKind.Dec => rf & CF,
            LazyKind.Add => r < a ? CF : 0,
            LazyKind.Sub => a < b ? CF : 0,
            LazyKind.Shl or LazyKind.Shr or LazyKind.Sar => ShiftCarry((LazyKind)kind, a, (int)b, size),
            _ => 0,
        };
    }

    /// <summary>Condition <paramref name="cc"/> (the x86 tttn encoding) of the record: from the operands directly after sub/cmp and logic ops.</summary>
    public static bool Condition(int cc, int kind, ulong a, ulong b, ulong r, int size, ulong rf, bool flagOverride, ulong overrideFlags)
    {
        if (!flagOverride)
        {
            if ((LazyKind)kind == LazyKind.Sub)
            {
                bool t;
                switch (cc >> 1)
                {
                    case 1: t = a < b; break;
                    case 2: t = a == b; break;
                    case 3: t = a <= b; break;
                    case 4: t = (r & SignBit(size)) != 0; break;
                    case 6: t = SignExtend(a, size) < SignExtend(b, size); break;
                    case 7: t = SignExtend(a, size) <= SignExtend(b, size); break;
                    default: goto Slow;
                }
                return t ^ ((cc & 1) != 0);
            }
            if ((LazyKind)kind == LazyKind.Logic)
            {
                bool neg = (r & SignBit(size)) != 0;
                bool t;
                switch (cc >> 1)
                {
                    case 0: case 1: t = false; break;
                    case 2: case 3: t = r == 0; break;
                    case 4: case 6: t = neg; break;
                    case 7: t = r == 0 || neg; break;
                    default: goto Slow;
                }
                return t ^ ((cc & 1) != 0);
            }
        }
    Slow:
        return FromRflags(cc, Compute((LazyKind)kind, a, b, r, size, rf, flagOverride, overrideFlags));
    }

    /// <summary>Condition <paramref name="cc"/> of materialized flags <paramref name="f"/>.</summary>
    public static bool FromRflags(int cc, ulong f)
    {
        bool t = (cc >> 1) switch
        {
            0 => (f & OF) != 0,
            1 => (f & CF) != 0,
            2 => (f & ZF) != 0,
            3 => (f & (CF | ZF)) != 0,
            4 => (f & SF) != 0,
            5 => (f & PF) != 0,
            6 => (((f >> 7) ^ (f >> 11)) & 1) != 0,
            _ => (f & ZF) != 0 || (((f >> 7) ^ (f >> 11)) & 1) != 0,
        };
        return t ^ ((cc & 1) != 0);
    }

    /// <summary>The flags condition <paramref name="cc"/> reads.</summary>
    public static ulong ConditionReads(int cc) => (cc >> 1) switch
    {
        0 => OF,
        1 => CF,
        2 => ZF,
        3 => CF | ZF,
        4 => SF,
        5 => PF,
        6 => SF | OF,
        _ => ZF | SF | OF,
    };
}
