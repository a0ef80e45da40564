namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// Descriptor tables in 64-bit mode: reading descriptors from the GDT/LDT (implicit supervisor accesses through the
/// <see cref="Mmu"/>), turning them into loaded segment registers, and the protection checks of loading CS, SS, a
/// data segment, TR and LDTR, each raising the #GP/#NP/#SS/#TS with the selector error code the SDM specifies.
/// </summary>
internal sealed class Segmentation
{
    private readonly SystemRegisters _sys;
    private readonly Mmu _mmu;

    public Segmentation(SystemRegisters sys, Mmu mmu)
    {
        _sys = sys;
        _mmu = mmu;
    }

    /// <summary>Type bits of a descriptor (attribute bits 0-3).</summary>
    public const int TypeAccessed = 1, TypeWritable = 2, TypeConforming = 4, TypeCode = 8;
    /// <summary>System descriptor types in 64-bit mode.</summary>
    public const int TypeLdt = 2, TypeTssAvailable = 9, TypeTssBusy = 11, TypeInterruptGate = 14, TypeTrapGate = 15;

    /// <summary>The error code of a selector-related fault: the selector without RPL, with EXT when the event is external.</summary>
    public static int SelectorError(ushort selector, bool external) => (selector & 0xFFFC) | (external ? 1 : 0);

    /// <summary>
    /// Reads the 8-byte descriptor <paramref name="selector"/> names (GDT or LDT by its TI bit), and for a system
    /// descriptor (<paramref name="wide"/>) the 8 bytes after it; #GP(selector) past the table's limit.
    /// </summary>
    public (ulong Low, ulong High, ulong Address) Read(ushort selector, bool wide, bool external)
    {
        ulong tableBase;
        ulong limit;
        if ((selector & 4) != 0)
        {
            if (_sys.Ldtr.Attributes == 0)
            {
                GuestFault.GeneralProtection(SelectorError(selector, external), $"selector 0x{selector:x} names the LDT, but none is loaded");
            }
            (tableBase, limit) = (_sys.Ldtr.Base, _sys.Ldtr.Limit);
        }
        else
        {
            (tableBase, limit) = (_sys.Gdtr.Base, _sys.Gdtr.Limit);
        }
        ulong offset = (ulong)(selector & 0xFFF8);
        if (offset + (wide ? 15UL : 7UL) > limit)
        {
            GuestFault.GeneralProtection(SelectorError(selector, external), $"selector 0x{selector:x} is past the {((selector & 4) != 0 ? "LDT" : "GDT")} limit 0x{limit:x}");
        }
        ulong low = _mmu.ReadLinear64(tableBase + offset, user: false);
        ulong high = wide ? _mmu.ReadLinear64(tableBase + offset + 8, user: false) : 0;
        return (low, high, tableBase + offset);
    }

    /// <summary>The segment register a descriptor loads: base, limit scaled by G, attributes (descriptor bits 40-55 without the limit nibble).</summary>
    public static SegmentRegister FromDescriptor(ushort selector, ulong low, ulong high = 0, bool wide = false)
    {
        ulong limit = (low & 0xFFFF) | ((low >> 32) & 0xF_0000);
        ushort attributes = (ushort)((low >> 40) & 0xF0FF);
        if ((attributes & 0x8000) != 0)
        {
            limit = (limit << 12) | 0xFFF;
        }
        ulong @base = ((low >> 16) & 0xFF_FFFF) | ((low >> 32) & 0xFF00_0000);
        if (wide)
        {
            @base |= high << 32;
        }
        return new SegmentRegister(selector, @base, (uint)limit, attributes);
    }

    /// <summary>Sets the accessed bit of the descriptor at <paramref name="address"/> in memory, as the CPU does when it loads it.</summary>
    public void MarkAccessed(ulong address, ulong low)
    {
        if ((low & (1UL << 40)) == 0)
        {
            _mmu.WriteLinear64(address, low | (1UL << 40), user: false);
        }
    }

    /// <summary>
    /// Checks and reads a 64-bit code segment that a far transfer (interrupt gate, IRET, far return) loads into CS
    /// (at the privilege its selector RPL or the gate determines); returns it with the selector's RPL set to the new CPL.
    /// </summary>
    /// <param name="selector">The selector.</param>
    /// <param name="external">EXT for the error codes.</param>
    /// <param name="newCpl">The CPL after the transfer (the descriptor's DPL for a non-conforming segment).</param>
    /// <param name="gateTarget">True for an interrupt gate's target (DPL &lt;= CPL), false for a return (DPL == RPL).</param>
    public SegmentRegister LoadCode(ushort selector, bool external, out int newCpl, bool gateTarget)
    {
        if ((selector & 0xFFFC) == 0)
        {
            GuestFault.GeneralProtection(external ? 1 : 0, "a null code-segment selector");
        }
        (ulong low, _, ulong address) = Read(selector, wide: false, external);
        SegmentRegister s = FromDescriptor(selector, low);
        int error = SelectorError(selector, external);
        if (!s.IsCodeOrData || (s.Type & TypeCode) == 0)
        {
            GuestFault.GeneralProtection(error, $"selector 0x{selector:x} is not a code segment");
        }
        bool conforming = (s.Type & TypeConforming) != 0;
        int rpl = selector & 3;
        if (gateTarget)
        {
            if (s.Dpl > _sys.Cpl)
            {
                GuestFault.GeneralProtection(error, $"the gate's code segment 0x{selector:x} has DPL {s.Dpl} above CPL {_sys.Cpl}");
            }
            newCpl = conforming ? _sys.Cpl : s.Dpl;
        }
        else
        {
            if (conforming ? s.Dpl > rpl : s.Dpl != rpl)
            {
                GuestFault.GeneralProtection(error, $"code segment 0x{selector:x} has DPL {s.Dpl}, the selector RPL {rpl}");
            }
            newCpl = rpl;
        }
        if (!s.Present)
        {
            GuestFault.Raise(Vectors.NP, error, $"code segment 0x{selector:x} is not present");
        }
        if (!s.Long || s.DefaultBig)
        {
            GuestFault.NotImplemented($"a transfer to code segment 0x{selector:x}, which is not a 64-bit code segment (the emulator runs 64-bit code only)");
        }
        MarkAccessed(address, low);
        return s with { Selector = (ushort)((selector & 0xFFFC) | newCpl), Attributes = (ushort)(s.Attributes | TypeAccessed) };
    }

    /// <summary>Checks and reads the stack segment for privilege <paramref name="cpl"/> (MOV SS, POP SS, IRET, far return). A null selector is allowed below CPL 3 in 64-bit mode.</summary>
    public SegmentRegister LoadStack(ushort selector, int cpl)
    {
        if ((selector & 0xFFFC) == 0)
        {
            if (cpl == 3 || (selector & 3) != cpl)
            {
                GuestFault.GeneralProtection(0, $"null stack segment 0x{selector:x} at CPL {cpl}");
            }
            return NullStack(cpl, selector);
        }
        int error = SelectorError(selector, false);
        if ((selector & 3) != cpl)
        {
            GuestFault.GeneralProtection(error, $"stack segment 0x{selector:x} has RPL {selector & 3}, CPL is {cpl}");
        }
        (ulong low, _, ulong address) = Read(selector, wide: false, external: false);
        SegmentRegister s = FromDescriptor(selector, low);
        if (!s.IsCodeOrData || (s.Type & (TypeCode | TypeWritable)) != TypeWritable || s.Dpl != cpl)
        {
            GuestFault.GeneralProtection(error, $"selector 0x{selector:x} is not a writable data segment of DPL {cpl}");
        }
        if (!s.Present)
        {
            GuestFault.Raise(Vectors.SS, error, $"stack segment 0x{selector:x} is not present");
        }
        MarkAccessed(address, low);
        return s with { Attributes = (ushort)(s.Attributes | TypeAccessed) };
    }

    /// <summary>SS after a null selector is loaded (or after an interrupt switches stacks in 64-bit mode): unusable, DPL = CPL.</summary>
    public static SegmentRegister NullStack(int cpl, ushort selector) =>
        new((ushort)selector, 0, 0, cpl == 0 ? (ushort)0 : SegmentRegister.MakeAttributes(3, codeOrData: true, dpl: cpl, present: false));

    /// <summary>Checks and reads a data segment for DS, ES, FS or GS (MOV, POP); a null selector loads an unusable segment.</summary>
    public SegmentRegister LoadData(ushort selector, SegmentRegister current, bool keepBase)
    {
        if ((selector & 0xFFFC) == 0)
        {
            // Intel clears the base of a null-loaded FS/GS; the 64-bit base MSRs are how 64-bit code sets them.
            return new SegmentRegister(selector, keepBase ? current.Base : 0, 0, 0);
        }
        int error = SelectorError(selector, false);
        (ulong low, _, ulong address) = Read(selector, wide: false, external: false);
        SegmentRegister s = FromDescriptor(selector, low);
        bool code = (s.Type & TypeCode) != 0;
        if (!s.IsCodeOrData || (code && (s.Type & TypeWritable) == 0))
        {
            GuestFault.GeneralProtection(error, $"selector 0x{selector:x} is neither a data segment nor readable code");
        }
        if ((!code || (s.Type & TypeConforming) == 0) && ((selector & 3) > s.Dpl || _sys.Cpl > s.Dpl))
        {
            GuestFault.GeneralProtection(error, $"data segment 0x{selector:x} has DPL {s.Dpl}, below CPL {_sys.Cpl} or RPL {selector & 3}");
        }
        if (!s.Present)
        {
            GuestFault.Raise(Vectors.NP, error, $"segment 0x{selector:x} is not present");
        }
        MarkAccessed(address, low);
        return s with { Attributes = (ushort)(s.Attributes | TypeAccessed) };
    }

    /// <summary>LTR: an available 64-bit TSS in the GDT, marked busy in memory.</summary>
    public SegmentRegister LoadTask(ushort selector)
    {
        if ((selector & 0xFFFC) == 0)
        {
            GuestFault.GeneralProtection(0, "LTR of a null selector");
        }
        int error = SelectorError(selector, false);
        if ((selector & 4) != 0)
        {
            GuestFault.GeneralProtection(error, $"LTR selector 0x{selector:x} names the LDT");
        }
        (ulong low, ulong high, ulong address) = Read(selector, wide: true, external: false);
        SegmentRegister s = FromDescriptor(selector, low, high, wide: true);
        if (s.IsCodeOrData || s.Type != TypeTssAvailable)
        {
            GuestFault.GeneralProtection(error, $"selector 0x{selector:x} is not an available 64-bit TSS");
        }
        if (!s.Present)
        {
            GuestFault.Raise(Vectors.NP, error, $"TSS 0x{selector:x} is not present");
        }
        if (!SystemRegisters.IsCanonical(s.Base))
        {
            GuestFault.GeneralProtection(error, $"TSS 0x{selector:x} has a non-canonical base");
        }
        _mmu.WriteLinear64(address, low | (2UL << 40), user: false); // busy
        return s with { Attributes = (ushort)((s.Attributes & ~0xF) | TypeTssBusy) };
    }

    /// <summary>LLDT: an LDT descriptor in the GDT, or a null selector (no LDT).</summary>
    public SegmentRegister LoadLdt(ushort selector)
    {
        if ((selector & 0xFFFC) == 0)
        {
            return new SegmentRegister(selector, 0, 0, 0);
        }
        int error = SelectorError(selector, false);
        if ((selector & 4) != 0)
        {
            GuestFault.GeneralProtection(error, $"LLDT selector 0x{selector:x} names the LDT");
        }
        (ulong low, ulong high, _) = Read(selector, wide: true, external: false);
        SegmentRegister s = FromDescriptor(selector, low, high, wide: true);
        if (s.IsCodeOrData || s.Type != TypeLdt)
        {
            GuestFault.GeneralProtection(error, $"selector 0x{selector:x} is not an LDT descriptor");
        }
        if (!s.Present)
        {
            GuestFault.Raise(Vectors.NP, error, $"LDT 0x{selector:x} is not present");
        }
        return s;
    }
}
