namespace Paravirt.Hypervisor.Debugging.Symbols;

/// <summary>
/// DWARF call-frame information (<c>.eh_frame</c>, as gcc and NativeAOT emit it, and <c>.debug_frame</c>): for any
/// code address, how to find the caller's registers. A small, bounds-checked reader and interpreter of the CFA
/// programs (DWARF 5 section 6.4): CIEs with the <c>z</c>, <c>R</c>, <c>P</c>, <c>L</c>, <c>S</c> augmentations,
/// every pointer encoding but indirect ones, and every CFA instruction except the DWARF-expression rules (a frame
/// that needs one is reported as not unwindable). Hostile input: a malformed entry is skipped; programs are bounded
/// in steps and in remember-state depth.
/// </summary>
internal sealed class CallFrameTable
{
    /// <summary>DWARF register numbers of x86-64 (System V psABI figure 3.36) used here.</summary>
    internal const int Rsp = 7, Rbp = 6, ReturnAddress = 16, RegisterCount = 17;
    private const int MaxEntries = 1 << 20;
    private const int MaxProgramSteps = 100_000;
    private const int MaxStateStack = 64;

    private readonly byte[] _file;
    private readonly List<Fde> _fdes;

    private CallFrameTable(byte[] file, List<Fde> fdes)
    {
        _file = file;
        _fdes = fdes;
    }

    public static CallFrameTable Empty { get; } = new([], []);

    public int Count => _fdes.Count;

    /// <summary>A CIE, decoded.</summary>
    private sealed record Cie(ulong CodeAlign, long DataAlign, int ReturnColumn, byte FdeEncoding, bool HasAugmentationData, int InitialStart, int InitialEnd, bool SignalFrame);

    /// <summary>An FDE: the code range it covers and where its instructions are.</summary>
    private readonly record struct Fde(ulong Start, ulong End, Cie Cie, int ProgramStart, int ProgramEnd);

    /// <summary>Reads <c>.eh_frame</c> and <c>.debug_frame</c> (both when present; .eh_frame first).</summary>
    public static CallFrameTable Parse(ElfSections sections)
    {
        var fdes = new List<Fde>();
        if (sections.Find(".eh_frame") is ElfSection eh)
        {
            ParseSection(sections.File, eh, isEh: true, fdes);
        }
        if (sections.Find(".debug_frame") is ElfSection debug)
        {
            ParseSection(sections.File, debug, isEh: false, fdes);
        }
        fdes.Sort(static (a, b) => a.Start.CompareTo(b.Start));
        return new CallFrameTable(sections.File, fdes);
    }

    private static void ParseSection(byte[] file, ElfSection section, bool isEh, List<Fde> fdes)
    {
        var cies = new Dictionary<int, Cie?>();
        var r = new ByteReader(file, section.Offset, section.End);
        try
        {
            while (!r.AtEnd && fdes.Count < MaxEntries)
            {
                int entryStart = r.Position;
                ulong length = r.U32();
                bool dwarf64 = false;
                if (length == 0)
                {
                    if (isEh)
                    {
                        break; // the .eh_frame terminator
                    }
                    continue;
                }
                if (length == 0xFFFF_FFFF)
                {
                    length = r.U64();
                    dwarf64 = true;
                }
                ByteReader entry = r.Slice(length);
                int idPosition = entry.Position;
                ulong id = dwarf64 ? entry.U64() : entry.U32();
                bool isCie = isEh ? id == 0 : id == (dwarf64 ? ulong.MaxValue : 0xFFFF_FFFF);
                if (isCie)
                {
                    cies[entryStart] = TryParseCie(entry, isEh);
                    continue;
                }
                // .eh_frame: the CIE pointer is relative to its own position; .debug_frame: an offset in the section.
                long ciePosition = isEh ? idPosition - (long)id : section.Offset + (long)id;
                if (ciePosition < section.Offset || ciePosition >= section.End)
                {
                    continue;
                }
                if (!cies.TryGetValue((int)ciePosition, out Cie? cie))
                {
                    cie = TryParseCieAt(file, section, (int)ciePosition, isEh);
                    cies[(int)ciePosition] = cie;
                }
                if (cie is null)
                {
                    continue;
                }
                try
                {
                    byte encoding = isEh ? cie.FdeEncoding : (byte)0x00; // .debug_frame: absolute target addresses
                    ulong start = ReadPointer(ref entry, encoding, section);
                    ulong range = ReadPointer(ref entry, (byte)(encoding & 0x0F), section);
                    if (cie.HasAugmentationData)
                    {
                        entry.Skip(entry.Uleb());
                    }
                    if (start + range >= start && range > 0)
                    {
                        fdes.Add(new Fde(start, start + range, cie, entry.Position, entry.End));
                    }
                }
                catch (DebugInfoFormatException)
                {
                    // a malformed FDE: skip it
                }
            }
        }
        catch (DebugInfoFormatException)
        {
            // a malformed length: the rest of the section is unusable, keep what was read
        }
    }

    private static Cie? TryParseCieAt(byte[] file, ElfSection section, int position, bool isEh)
    {
        try
        {
            var r = new ByteReader(file, position, section.End);
            ulong length = r.U32();
            bool dwarf64 = length == 0xFFFF_FFFF;
            if (dwarf64)
            {
                length = r.U64();
            }
            ByteReader entry = r.Slice(length);
            ulong id = dwarf64 ? entry.U64() : entry.U32();
            bool isCie = isEh ? id == 0 : id == (dwarf64 ? ulong.MaxValue : 0xFFFF_FFFF);
            return isCie ? TryParseCie(entry, isEh) : null;
        }
        catch (DebugInfoFormatException)
        {
            return null;
        }
    }

    /// <summary>Decodes a CIE whose reader stands just after its id.</summary>
    private static Cie? TryParseCie(ByteReader r, bool isEh)
    {
        try
        {
            byte version = r.U8();
            if (version is not (1 or 3 or 4))
            {
                return null;
            }
            string augmentation = r.CString(64);
            if (version == 4)
            {
                byte addressSize = r.U8();
                r.U8(); // segment selector size
                if (addressSize != 8)
                {
                    return null;
                }
            }
            if (augmentation.Contains("eh", StringComparison.Ordinal))
            {
                r.U64(); // the old GCC "eh" data pointer
            }
            ulong codeAlign = r.Uleb();
            long dataAlign = r.Sleb();
            int returnColumn = version == 1 ? r.U8() : (int)Math.Min(r.Uleb(), int.MaxValue);
            byte fdeEncoding = 0;
            bool hasData = false, signal = false;
            if (augmentation.StartsWith('z'))
            {
                hasData = true;
                ByteReader data = r.Slice(r.Uleb());
                foreach (char c in augmentation.AsSpan(1))
                {
                    switch (c)
                    {
                        case 'R':
                            fdeEncoding = data.U8();
                            break;
                        case 'L':
                            data.U8(); // LSDA encoding (the LSDA pointer in each FDE is skipped with the data)
                            break;
                        case 'P':
                            byte personalityEncoding = data.U8();
                            SkipPointer(ref data, personalityEncoding);
                            break;
                        case 'S':
                            signal = true;
                            break;
                        case 'B' or 'G':
                            break;
                        default:
                            goto Done; // unknown: the rest of the data is skipped by its length
                    }
                }
            Done:;
            }
            else if (augmentation.Length > 0 && augmentation != "eh")
            {
                return null; // an augmentation without 'z' cannot be skipped safely
            }
            if (!isEh && !hasData)
            {
                fdeEncoding = 0;
            }
            return new Cie(codeAlign, dataAlign, returnColumn, fdeEncoding, hasData, r.Position, r.End, signal);
        }
        catch (DebugInfoFormatException)
        {
            return null;
        }
    }

    private static void SkipPointer(ref ByteReader r, byte encoding)
    {
        switch (encoding & 0x0F)
        {
            case 0x00 or 0x04 or 0x0C: r.Skip(8); break;
            case 0x02 or 0x0A: r.Skip(2); break;
            case 0x03 or 0x0B: r.Skip(4); break;
            case 0x01: r.Uleb(); break;
            case 0x09: r.Sleb(); break;
            default: throw new DebugInfoFormatException($"pointer encoding 0x{encoding:x2}");
        }
    }

    /// <summary>Reads an encoded pointer (DW_EH_PE_*): the format in the low nibble, pc-relative application supported.</summary>
    private static ulong ReadPointer(ref ByteReader r, byte encoding, ElfSection section)
    {
        if (encoding == 0xFF)
        {
            throw new DebugInfoFormatException("omitted pointer");
        }
        int position = r.Position;
        ulong value = (encoding & 0x0F) switch
        {
            0x00 or 0x04 => r.U64(),
            0x02 => r.U16(),
            0x03 => r.U32(),
            0x0C => r.U64(),
            0x0A => (ulong)(long)(short)r.U16(),
            0x0B => (ulong)(long)(int)r.U32(),
            0x01 => r.Uleb(),
            0x09 => (ulong)r.Sleb(),
            _ => throw new DebugInfoFormatException($"pointer encoding 0x{encoding:x2}"),
        };
        switch (encoding & 0x70)
        {
            case 0x00:
                break;
            case 0x10: // pcrel: relative to the address of the encoded value
                value += section.Address + (ulong)(position - section.Offset);
                break;
            default:
                throw new DebugInfoFormatException($"pointer application 0x{encoding & 0x70:x2}");
        }
        if ((encoding & 0x80) != 0)
        {
            throw new DebugInfoFormatException("indirect pointer");
        }
        return value;
    }

    /// <summary>How to recover a register in the caller.</summary>
    private enum RuleKind : byte { Undefined, SameValue, Offset, ValOffset, Register, Unsupported }

    private struct Rule
    {
        public RuleKind Kind;
        public long Value;
    }

    /// <summary>The rows of a CFA program at one address.</summary>
    private sealed class Row
    {
        public int CfaRegister;
        public long CfaOffset;
        public bool CfaUnsupported;
        public Rule[] Rules = new Rule[RegisterCount];

        public Row Clone() => new() { CfaRegister = CfaRegister, CfaOffset = CfaOffset, CfaUnsupported = CfaUnsupported, Rules = (Rule[])Rules.Clone() };
    }

    /// <summary>True when an FDE covers <paramref name="pc"/>.</summary>
    public bool Covers(ulong pc) => FindFde(pc) is not null;

    private Fde? FindFde(ulong pc)
    {
        int best = SortedByAddress.LastAtOrBelow(_fdes, pc, static f => f.Start);
        // FDEs may overlap (two sections describe the same code): look back a little for one that covers pc.
        for (int i = best; i >= 0 && i > best - 8; i--)
        {
            if (_fdes[i].Start <= pc && pc < _fdes[i].End)
            {
                return _fdes[i];
            }
        }
        return null;
    }

    /// <summary>
    /// One unwind step: from the registers of a frame (<paramref name="registers"/>, DWARF numbering; null = unknown)
    /// at <paramref name="pc"/> computes the caller's. <paramref name="readStack"/> reads guest memory.
    /// Returns false when no FDE covers <paramref name="pc"/> or its rules cannot be followed; sets
    /// <paramref name="outermost"/> when the return address is undefined (the bottom of the stack).
    /// </summary>
    public bool TryUnwind(ulong pc, ulong?[] registers, Func<ulong, ulong?> readStack, out ulong?[] caller, out bool outermost)
    {
        caller = new ulong?[RegisterCount];
        outermost = false;
        if (FindFde(pc) is not Fde fde)
        {
            return false;
        }
        Row row;
        try
        {
            row = Execute(fde, pc);
        }
        catch (DebugInfoFormatException)
        {
            return false;
        }
        if (row.CfaUnsupported || (uint)row.CfaRegister >= RegisterCount || registers[row.CfaRegister] is not ulong cfaBase)
        {
            return false;
        }
        ulong cfa = cfaBase + (ulong)row.CfaOffset;
        for (int reg = 0; reg < RegisterCount; reg++)
        {
            Rule rule = row.Rules[reg];
            caller[reg] = rule.Kind switch
            {
                RuleKind.Undefined => reg is Rsp or ReturnAddress ? null : CalleeSavedOrNull(reg, registers),
                RuleKind.SameValue => registers[reg],
                RuleKind.Offset => readStack(cfa + (ulong)rule.Value),
                RuleKind.ValOffset => cfa + (ulong)rule.Value,
                RuleKind.Register => (uint)rule.Value < RegisterCount ? registers[rule.Value] : null,
                _ => null,
            };
        }
        int ra = fde.Cie.ReturnColumn;
        if ((uint)ra >= RegisterCount)
        {
            return false;
        }
        if (row.Rules[ra].Kind == RuleKind.Undefined)
        {
            outermost = true;
        }
        caller[ReturnAddress] = caller[ra];
        caller[Rsp] = cfa;
        return true;
    }

    /// <summary>Registers without a rule keep their value when callee-saved (rbx, rbp, r12-r15), else become unknown.</summary>
    private static ulong? CalleeSavedOrNull(int reg, ulong?[] registers) =>
        reg is 3 or Rbp or 12 or 13 or 14 or 15 ? registers[reg] : null;

    private Row Execute(Fde fde, ulong pc)
    {
        Cie cie = fde.Cie;
        var row = new Row();
        for (int i = 0; i < RegisterCount; i++)
        {
            row.Rules[i].Kind = RuleKind.Undefined;
        }
        ulong location = fde.Start;
        int steps = 0;
        Run(cie.InitialStart, cie.InitialEnd, null);
        Row initial = row.Clone();
        Run(fde.ProgramStart, fde.ProgramEnd, initial);
        return row;

        void Run(int start, int end, Row? initialRow)
        {
            var r = new ByteReader(_file, start, end);
            var stack = new Stack<Row>();
            while (!r.AtEnd)
            {
                if (++steps > MaxProgramSteps)
                {
                    throw new DebugInfoFormatException("CFA program too long");
                }
                byte op = r.U8();
                int high = op >> 6, low = op & 0x3F;
                ulong advance = 0;
                switch (high)
                {
                    case 1: // DW_CFA_advance_loc
                        advance = (ulong)low * cie.CodeAlign;
                        break;
                    case 2: // DW_CFA_offset
                        SetRule(low, RuleKind.Offset, (long)r.Uleb() * cie.DataAlign);
                        continue;
                    case 3: // DW_CFA_restore
                        Restore(low);
                        continue;
                }
                if (high == 0)
                {
                    switch (low)
                    {
                        case 0x00: break; // nop
                        case 0x01: location = r.U64(); if (location > pc) { return; } break; // set_loc
                        case 0x02: advance = r.U8() * cie.CodeAlign; break;
                        case 0x03: advance = r.U16() * cie.CodeAlign; break;
                        case 0x04: advance = r.U32() * cie.CodeAlign; break;
                        case 0x05: SetRule(Reg(r.Uleb()), RuleKind.Offset, (long)r.Uleb() * cie.DataAlign); break;
                        case 0x06: Restore(Reg(r.Uleb())); break;
                        case 0x07: SetRule(Reg(r.Uleb()), RuleKind.Undefined, 0); break;
                        case 0x08: SetRule(Reg(r.Uleb()), RuleKind.SameValue, 0); break;
                        case 0x09: { int reg = Reg(r.Uleb()); SetRule(reg, RuleKind.Register, Reg(r.Uleb())); break; }
                        case 0x0A:
                            if (stack.Count >= MaxStateStack)
                            {
                                throw new DebugInfoFormatException("remember_state too deep");
                            }
                            stack.Push(row.Clone());
                            break;
                        case 0x0B:
                            if (stack.Count == 0)
                            {
                                throw new DebugInfoFormatException("restore_state without remember_state");
                            }
                            Row saved = stack.Pop();
                            // restore_state restores the register rules and the CFA rule
                            row.Rules = saved.Rules;
                            row.CfaRegister = saved.CfaRegister;
                            row.CfaOffset = saved.CfaOffset;
                            row.CfaUnsupported = saved.CfaUnsupported;
                            break;
                        case 0x0C: row.CfaRegister = Reg(r.Uleb()); row.CfaOffset = (long)r.Uleb(); row.CfaUnsupported = false; break;
                        case 0x0D: row.CfaRegister = Reg(r.Uleb()); break;
                        case 0x0E: row.CfaOffset = (long)r.Uleb(); break;
                        case 0x0F: r.Skip(r.Uleb()); row.CfaUnsupported = true; break; // def_cfa_expression
                        case 0x10: { int reg = Reg(r.Uleb()); r.Skip(r.Uleb()); SetRule(reg, RuleKind.Unsupported, 0); break; } // expression
                        case 0x11: SetRule(Reg(r.Uleb()), RuleKind.Offset, r.Sleb() * cie.DataAlign); break;
                        case 0x12: row.CfaRegister = Reg(r.Uleb()); row.CfaOffset = r.Sleb() * cie.DataAlign; row.CfaUnsupported = false; break;
                        case 0x13: row.CfaOffset = r.Sleb() * cie.DataAlign; break;
                        case 0x14: SetRule(Reg(r.Uleb()), RuleKind.ValOffset, (long)r.Uleb() * cie.DataAlign); break;
                        case 0x15: SetRule(Reg(r.Uleb()), RuleKind.ValOffset, r.Sleb() * cie.DataAlign); break;
                        case 0x16: { int reg = Reg(r.Uleb()); r.Skip(r.Uleb()); SetRule(reg, RuleKind.Unsupported, 0); break; } // val_expression
                        case 0x2E: r.Uleb(); break; // GNU_args_size
                        case 0x2F: SetRule(Reg(r.Uleb()), RuleKind.Offset, -(long)r.Uleb() * cie.DataAlign); break;
                        default: throw new DebugInfoFormatException($"CFA opcode 0x{op:x2}");
                    }
                }
                if (advance != 0)
                {
                    if (location + advance > pc || location + advance < location)
                    {
                        return; // the row for pc is complete
                    }
                    location += advance;
                }
            }

            void Restore(int reg)
            {
                if ((uint)reg < RegisterCount)
                {
                    row.Rules[reg] = initialRow is null ? new Rule { Kind = RuleKind.Undefined } : initialRow.Rules[reg];
                }
            }
        }

        void SetRule(int reg, RuleKind kind, long value)
        {
            if ((uint)reg < RegisterCount)
            {
                row.Rules[reg] = new Rule { Kind = kind, Value = value };
            }
        }

        static int Reg(ulong value) => value > int.MaxValue ? int.MaxValue : (int)value;
    }
}
