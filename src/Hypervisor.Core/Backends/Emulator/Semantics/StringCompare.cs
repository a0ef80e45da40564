using System.Numerics;
using System.Runtime.Intrinsics;

namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>
/// SSE4.2 packed string comparison (pcmpestri, pcmpestrm, pcmpistri, pcmpistrm): the imm8 control (element format,
/// aggregation, polarity, output selection), explicit or implicit (NUL-terminated) lengths, the override rules for
/// invalid elements and the flags, as specified in the Intel SDM (Vol. 2, 4.1 "Imprecise... String and Text
/// Processing Instructions").
/// </summary>
internal static class StringCompare
{
    /// <summary>The comparison result: IntRes2 (one bit per element), and the flags.</summary>
    public readonly record struct Result(int Mask, ulong Flags);

    /// <summary>
    /// Compares <paramref name="a"/> (the register operand) with <paramref name="b"/> (register or memory) under
    /// control <paramref name="imm"/>. With <paramref name="explicitLengths"/> (pcmpestr*) the lengths are
    /// <paramref name="lengthA"/> (EAX/RAX) and <paramref name="lengthB"/> (EDX/RDX); otherwise (pcmpistr*) the
    /// strings end at their first NUL element.
    /// </summary>
    public static Result Compare(Vector128<byte> a, Vector128<byte> b, int imm, bool explicitLengths, long lengthA, long lengthB)
    {
        bool words = (imm & 1) != 0;
        bool signed = (imm & 2) != 0;
        int aggregation = (imm >> 2) & 3;
        int polarity = (imm >> 4) & 3;
        int n = words ? 8 : 16;
        Span<int> ea = stackalloc int[16];
        Span<int> eb = stackalloc int[16];
        for (int i = 0; i < n; i++)
        {
            ea[i] = Element(a, i, words, signed);
            eb[i] = Element(b, i, words, signed);
        }
        int la = explicitLengths ? Saturate(lengthA, n) : ImplicitLength(a, n, words);
        int lb = explicitLengths ? Saturate(lengthB, n) : ImplicitLength(b, n, words);

        int res1 = 0;
        switch (aggregation)
        {
            case 0: // equal any: b[j] equals some valid a[i]
                for (int j = 0; j < n; j++)
                {
                    if (j >= lb)
                    {
                        continue;
                    }
                    for (int i = 0; i < la; i++)
                    {
                        if (eb[j] == ea[i])
                        {
                            res1 |= 1 << j;
                            break;
                        }
                    }
                }
                break;
            case 1: // ranges: a[2k] <= b[j] <= a[2k+1] for some valid pair
                for (int j = 0; j < n; j++)
                {
                    if (j >= lb)
                    {
                        continue;
                    }
                    for (int i = 0; i + 1 < n; i += 2)
                    {
                        bool lo = i < la && eb[j] >= ea[i];
                        bool hi = i + 1 < la && eb[j] <= ea[i + 1];
                        if (lo && hi)
                        {
                            res1 |= 1 << j;
                            break;
                        }
                    }
                }
                break;
            case 2: // equal each: a[i] == b[i]; both invalid counts as equal, one invalid as different
                for (int i = 0; i < n; i++)
                {
                    bool va = i < la, vb = i < lb;
                    bool eq = va && vb ? ea[i] == eb[i] : !va && !vb;
                    if (eq)
                    {
                        res1 |= 1 << i;
                    }
                }
                break;
            default: // equal ordered: a (the needle) occurs in b starting at j
                for (int j = 0; j < n; j++)
                {
                    bool match = true;
                    for (int k = 0; k < n - j && match; k++)
                    {
                        bool va = k < la, vb = j + k < lb;
                        match = !va || (vb && ea[k] == eb[j + k]);
                    }
                    if (match)
                    {
                        res1 |= 1 << j;
                    }
                }
                break;
        }
        int all = (1 << n) - 1;
        int res2 = polarity switch
        {
            1 => ~res1 & all,
            3 => (res1 ^ ((1 << lb) - 1)) & all, // negate only the valid elements of b
            _ => res1,
        };
        const ulong CF = 0x1, ZF = 0x40, SF = 0x80, OF = 0x800;
        ulong flags = (res2 != 0 ? CF : 0) | (lb < n ? ZF : 0) | (la < n ? SF : 0) | ((res2 & 1) != 0 ? OF : 0);
        return new Result(res2, flags);
    }

    /// <summary>pcmp?stri: the least (imm[6] clear) or most significant set bit of the mask, or the element count when none is set.</summary>
    public static uint Index(int mask, int imm)
    {
        int n = (imm & 1) != 0 ? 8 : 16;
        if (mask == 0)
        {
            return (uint)n;
        }
        return (imm & 0x40) != 0 ? (uint)(31 - BitOperations.LeadingZeroCount((uint)mask)) : (uint)BitOperations.TrailingZeroCount(mask);
    }

    /// <summary>pcmp?strm: the mask as bits in the low lanes (imm[6] clear) or expanded to whole bytes/words.</summary>
    public static Vector128<byte> MaskVector(int mask, int imm)
    {
        bool words = (imm & 1) != 0;
        if ((imm & 0x40) == 0)
        {
            return Vector128.CreateScalar((ushort)mask).AsByte();
        }
        Span<byte> r = stackalloc byte[16];
        int n = words ? 8 : 16;
        int width = words ? 2 : 1;
        for (int i = 0; i < n; i++)
        {
            byte v = ((mask >> i) & 1) != 0 ? (byte)0xFF : (byte)0;
            for (int k = 0; k < width; k++)
            {
                r[(i * width) + k] = v;
            }
        }
        return Vector128.Create((ReadOnlySpan<byte>)r);
    }

    private static int Element(Vector128<byte> v, int i, bool words, bool signed)
    {
        if (words)
        {
            ushort w = v.AsUInt16()[i];
            return signed ? (short)w : w;
        }
        byte x = v[i];
        return signed ? (sbyte)x : x;
    }

    private static int ImplicitLength(Vector128<byte> v, int n, bool words)
    {
        for (int i = 0; i < n; i++)
        {
            if ((words ? v.AsUInt16()[i] : v[i]) == 0)
            {
                return i;
            }
        }
        return n;
    }

    /// <summary>The absolute value of an explicit length, saturated to the element count.</summary>
    private static int Saturate(long length, int n)
    {
        if (length == long.MinValue)
        {
            return n;
        }
        long abs = Math.Abs(length);
        return abs >= n ? n : (int)abs;
    }
}
