using System.Runtime.Intrinsics;

namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>An 80-bit x87 register: explicit-integer-bit significand and the sign+exponent word.</summary>
internal struct Float80
{
    public ulong Mant;
    public ushort SignExp;

    public Float80(ulong mant, ushort signExp)
    {
        Mant = mant;
        SignExp = signExp;
    }

    public override readonly string ToString() => $"{SignExp:x4}:{Mant:x16}";
}

/// <summary>The eight physical x87 data registers R0..R7 (ST(i) is R[(TOP + i) mod 8]).</summary>
[InlineArray(8)]
internal struct X87Registers
{
    private Float80 _element;
}

/// <summary>
/// The x87 and SSE control state of a vCPU: the x87 registers (physical order), control, status (TOP kept apart) and
/// tag words, and MXCSR. Together with the XMM registers it is exactly what FXSAVE stores, and
/// <see cref="WriteFxsave"/>/<see cref="ReadFxrstor"/> convert to and from that 512-byte image, the format
/// saved/restored state uses (KVM's <c>kvm_fpu</c> holds the same fields). The instruction and data pointers
/// (FIP/FDP/FOP) are not tracked: they are saved as zero, which is what a processor that saves them only with an
/// exception pending (AMD) stores.
/// </summary>
internal struct FpuState
{
    /// <summary>FCW after FNINIT: all exceptions masked, 64-bit precision, round to nearest.</summary>
    public const ushort FcwDefault = 0x037F;
    /// <summary>Status word bits kept in <see cref="Fsw"/>: exception flags, SF, C0-C3 (ES and B are derived, TOP is <see cref="Top"/>).</summary>
    public const ushort FswStored = 0x477F;
    public const ushort C0 = 0x100, C1 = 0x200, C2 = 0x400, C3 = 0x4000, SF = 0x40;

    public ushort Fcw;
    /// <summary>Status word: flags IE..PE, SF, C0..C3; TOP lives in <see cref="Top"/>, ES and B are computed.</summary>
    public ushort Fsw;
    public int Top;
    /// <summary>Abridged tag word: bit i set = physical register i holds a value (clear = empty).</summary>
    public byte Valid;
    public uint Mxcsr;
    public X87Registers Regs;

    /// <summary>The state after reset (FNINIT and MXCSR's reset value; registers zero, all empty).</summary>
    public static FpuState Initial => new() { Fcw = FcwDefault, Mxcsr = SseFloat.MxcsrDefault };

    /// <summary>The architectural status word: stored bits, TOP, and ES/B set while an unmasked exception flag is set.</summary>
    public readonly ushort StatusWord
    {
        get
        {
            int sw = (Fsw & FswStored) | ((Top & 7) << 11);
            if ((Fsw & ~Fcw & 0x3F) != 0)
            {
                sw |= 0x8080; // ES and B
            }
            return (ushort)sw;
        }
    }

    public void SetStatusWord(ushort sw)
    {
        Fsw = (ushort)(sw & FswStored);
        Top = (sw >> 11) & 7;
    }

    /// <summary>The full tag word (FNSTENV/FNSAVE): per physical register 00 valid, 01 zero, 10 special, 11 empty.</summary>
    public readonly ushort FullTagWord()
    {
        int tw = 0;
        for (int i = 0; i < 8; i++)
        {
            tw |= Tag(i) << (2 * i);
        }
        return (ushort)tw;
    }

    /// <summary>The two-bit tag of physical register <paramref name="i"/>, derived from its contents.</summary>
    public readonly int Tag(int i)
    {
        if ((Valid & (1 << i)) == 0)
        {
            return 3;
        }
        Float80 r = Regs[i];
        int exp = r.SignExp & 0x7FFF;
        if (exp == 0x7FFF)
        {
            return 2;
        }
        if (exp == 0)
        {
            return r.Mant == 0 ? 1 : 2;
        }
        return (r.Mant >> 63) != 0 ? 0 : 2; // unnormal: special
    }

    /// <summary>Sets the abridged tags from a full tag word (FLDENV/FRSTOR: only "empty" matters; the rest is derived).</summary>
    public void SetFullTagWord(ushort tw)
    {
        int valid = 0;
        for (int i = 0; i < 8; i++)
        {
            if (((tw >> (2 * i)) & 3) != 3)
            {
                valid |= 1 << i;
            }
        }
        Valid = (byte)valid;
    }

    /// <summary>
    /// Stores the FNSTENV environment: 28 bytes (32/64-bit format: each field in a doubleword, the unused upper words
    /// 0xFFFF as the hardware writes them) or 14 bytes (16-bit format). Instruction and data pointers are zero.
    /// </summary>
    public readonly void WriteEnvironment(Span<byte> env)
    {
        if (env.Length == 14)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(env, Fcw);
            BinaryPrimitives.WriteUInt16LittleEndian(env[2..], StatusWord);
            BinaryPrimitives.WriteUInt16LittleEndian(env[4..], FullTagWord());
            env[6..14].Clear();
            return;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(env, 0xFFFF_0000u | Fcw);
        BinaryPrimitives.WriteUInt32LittleEndian(env[4..], 0xFFFF_0000u | StatusWord);
        BinaryPrimitives.WriteUInt32LittleEndian(env[8..], 0xFFFF_0000u | FullTagWord());
        env[12..24].Clear(); // FIP, FCS, FOP, FDP
        BinaryPrimitives.WriteUInt32LittleEndian(env[24..], 0xFFFF_0000u); // FDS
    }

    /// <summary>Loads an FLDENV environment (28 or 14 bytes): control word (normalized), status word with TOP, tags.</summary>
    public void ReadEnvironment(ReadOnlySpan<byte> env)
    {
        int step = env.Length == 14 ? 2 : 4;
        Fcw = X87.NormalizeControlWord(BinaryPrimitives.ReadUInt16LittleEndian(env));
        SetStatusWord(BinaryPrimitives.ReadUInt16LittleEndian(env[step..]));
        SetFullTagWord(BinaryPrimitives.ReadUInt16LittleEndian(env[(2 * step)..]));
    }

    /// <summary>FNSAVE: the environment then ST(0)..ST(7), 10 bytes each (108 or 94 bytes).</summary>
    public readonly void WriteSave(Span<byte> image)
    {
        int envSize = image.Length - 80;
        WriteEnvironment(image[..envSize]);
        for (int i = 0; i < 8; i++)
        {
            Float80 r = Regs[(Top + i) & 7];
            BinaryPrimitives.WriteUInt64LittleEndian(image[(envSize + (10 * i))..], r.Mant);
            BinaryPrimitives.WriteUInt16LittleEndian(image[(envSize + (10 * i) + 8)..], r.SignExp);
        }
    }

    /// <summary>FRSTOR: the inverse of <see cref="WriteSave"/>.</summary>
    public void ReadSave(ReadOnlySpan<byte> image)
    {
        int envSize = image.Length - 80;
        ReadEnvironment(image[..envSize]);
        for (int i = 0; i < 8; i++)
        {
            Regs[(Top + i) & 7] = new Float80(BinaryPrimitives.ReadUInt64LittleEndian(image[(envSize + (10 * i))..]),
                BinaryPrimitives.ReadUInt16LittleEndian(image[(envSize + (10 * i) + 8)..]));
        }
    }

    /// <summary>Stores the FXSAVE image (512 bytes; bytes 416-511 are not written, as hardware leaves them).</summary>
    public readonly void WriteFxsave(Span<byte> image, ReadOnlySpan<Vector128<byte>> xmm)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(image, Fcw);
        BinaryPrimitives.WriteUInt16LittleEndian(image[2..], StatusWord);
        image[4] = Valid;
        image[5] = 0;
        image[6..24].Clear(); // FOP, FIP, FDP (and FCS/FDS in the 32-bit form): not tracked
        BinaryPrimitives.WriteUInt32LittleEndian(image[24..], Mxcsr);
        BinaryPrimitives.WriteUInt32LittleEndian(image[28..], SseFloat.MxcsrMask);
        for (int i = 0; i < 8; i++)
        {
            Span<byte> slot = image.Slice(32 + (16 * i), 16);
            Float80 r = Regs[(Top + i) & 7];
            BinaryPrimitives.WriteUInt64LittleEndian(slot, r.Mant);
            BinaryPrimitives.WriteUInt16LittleEndian(slot[8..], r.SignExp);
            slot[10..].Clear();
        }
        for (int i = 0; i < 16; i++)
        {
            xmm[i].CopyTo(image.Slice(160 + (16 * i), 16));
        }
    }

    /// <summary>Loads an FXSAVE image; false (and nothing changed) when its MXCSR sets a reserved bit (#GP).</summary>
    public bool ReadFxrstor(ReadOnlySpan<byte> image, Span<Vector128<byte>> xmm)
    {
        uint mxcsr = BinaryPrimitives.ReadUInt32LittleEndian(image[24..]);
        if ((mxcsr & ~SseFloat.MxcsrMask) != 0)
        {
            return false;
        }
        Fcw = X87.NormalizeControlWord(BinaryPrimitives.ReadUInt16LittleEndian(image));
        SetStatusWord(BinaryPrimitives.ReadUInt16LittleEndian(image[2..]));
        Valid = image[4];
        Mxcsr = mxcsr;
        for (int i = 0; i < 8; i++)
        {
            ReadOnlySpan<byte> slot = image.Slice(32 + (16 * i), 16);
            Regs[(Top + i) & 7] = new Float80(BinaryPrimitives.ReadUInt64LittleEndian(slot), BinaryPrimitives.ReadUInt16LittleEndian(slot[8..]));
        }
        for (int i = 0; i < 16; i++)
        {
            xmm[i] = Vector128.Create(image.Slice(160 + (16 * i), 16));
        }
        return true;
    }
}
