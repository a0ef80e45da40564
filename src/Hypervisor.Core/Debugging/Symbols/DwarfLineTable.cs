namespace Paravirt.Hypervisor.Debugging.Symbols;

/// <summary>A source position: file path (directory joined when the table gives one) and 1-based line.</summary>
internal readonly record struct SourceLine(string File, int Line);

/// <summary>
/// The DWARF line-number tables of an image (<c>.debug_line</c>, versions 2 to 5, as gcc and NativeAOT emit them):
/// address -&gt; file and line. A small, bounds-checked reader and state machine (DWARF 5 section 6.2); a malformed
/// unit is skipped, the rest kept. Bounded: at most <see cref="MaxRows"/> rows in all, <see cref="MaxFiles"/>
/// file entries per unit.
/// </summary>
internal sealed class DwarfLineTable
{
    internal const int MaxRows = 1 << 22;
    internal const int MaxFiles = 1 << 16;

    // Forms that DWARF 5 directory and file entries use.
    private const ulong DW_FORM_block = 0x09, DW_FORM_block1 = 0x0a, DW_FORM_data1 = 0x0b, DW_FORM_data2 = 0x05, DW_FORM_data4 = 0x06,
        DW_FORM_data8 = 0x07, DW_FORM_data16 = 0x1e, DW_FORM_string = 0x08, DW_FORM_strp = 0x0e, DW_FORM_line_strp = 0x1f,
        DW_FORM_udata = 0x0f, DW_FORM_sdata = 0x0d, DW_FORM_strx = 0x1a, DW_FORM_strx1 = 0x25, DW_FORM_strx2 = 0x26, DW_FORM_strx4 = 0x28;
    private const ulong DW_LNCT_path = 1, DW_LNCT_directory_index = 2;

    /// <summary>One row of a sequence: an address, its file and line; <see cref="End"/> closes a sequence.</summary>
    private readonly record struct Row(ulong Address, int File, int Line, bool End, int Unit);

    private readonly List<Row> _rows = [];
    private readonly List<string[]> _unitFiles = [];

    public static DwarfLineTable Empty { get; } = new();

    public int RowCount => _rows.Count;

    public static DwarfLineTable Parse(ElfSections sections)
    {
        var table = new DwarfLineTable();
        if (sections.Find(".debug_line") is not ElfSection line)
        {
            return table;
        }
        ElfSection? lineStr = sections.Find(".debug_line_str");
        ElfSection? str = sections.Find(".debug_str");
        var r = new ByteReader(sections.File, line.Offset, line.End);
        try
        {
            while (!r.AtEnd && table._rows.Count < MaxRows)
            {
                ulong length = r.U32();
                bool dwarf64 = false;
                if (length == 0xFFFF_FFFF)
                {
                    length = r.U64();
                    dwarf64 = true;
                }
                else if (length >= 0xFFFF_FFF0)
                {
                    break; // reserved lengths
                }
                ByteReader unit = r.Slice(length);
                int rowsBefore = table._rows.Count;
                try
                {
                    table.ParseUnit(unit, dwarf64, sections.File, lineStr, str);
                }
                catch (DebugInfoFormatException)
                {
                    table._rows.RemoveRange(rowsBefore, table._rows.Count - rowsBefore); // drop the broken unit's rows
                }
            }
        }
        catch (DebugInfoFormatException)
        {
            // a broken unit length: keep the units read so far
        }
        // Sequences are sorted by their first address so lookups can binary-search the rows.
        table.SortSequences();
        return table;
    }

    private void ParseUnit(ByteReader r, bool dwarf64, byte[] file, ElfSection? lineStr, ElfSection? str)
    {
        ushort version = r.U16();
        if (version is < 2 or > 5)
        {
            return;
        }
        if (version >= 5)
        {
            byte addressSize = r.U8();
            r.U8(); // segment selector size
            if (addressSize != 8)
            {
                return;
            }
        }
        ulong headerLength = dwarf64 ? r.U64() : r.U32();
        ByteReader header = r.Slice(headerLength);
        byte minInstructionLength = header.U8();
        if (version >= 4)
        {
            header.U8(); // maximum operations per instruction (VLIW only)
        }
        header.U8(); // default_is_stmt
        sbyte lineBase = (sbyte)header.U8();
        byte lineRange = header.U8();
        byte opcodeBase = header.U8();
        if (lineRange == 0 || opcodeBase == 0)
        {
            return;
        }
        var standardLengths = new byte[opcodeBase];
        for (int i = 1; i < opcodeBase; i++)
        {
            standardLengths[i] = header.U8();
        }
        var directories = new List<string>();
        var files = new List<string>();
        if (version >= 5)
        {
            ReadEntries(ref header, dwarf64, file, lineStr, str, directories, null);
            ReadEntries(ref header, dwarf64, file, lineStr, str, files, directories);
        }
        else
        {
            directories.Add("");
            while (true)
            {
                string dir = header.CString();
                if (dir.Length == 0)
                {
                    break;
                }
                directories.Add(dir);
            }
            files.Add(""); // DWARF 2-4 number files from 1
            while (files.Count < MaxFiles)
            {
                string name = header.CString();
                if (name.Length == 0)
                {
                    break;
                }
                ulong dir = header.Uleb();
                header.Uleb(); // mtime
                header.Uleb(); // length
                files.Add(Join(directories, dir, name));
            }
        }
        int unitIndex = _unitFiles.Count;
        _unitFiles.Add([.. files]);

        // The line-number program (DWARF 5 section 6.2.5).
        ulong address = 0;
        int fileIndex = 1, line = 1;
        while (!r.AtEnd)
        {
            if (_rows.Count >= MaxRows)
            {
                return;
            }
            byte op = r.U8();
            if (op >= opcodeBase)
            {
                int adjusted = op - opcodeBase;
                address += (ulong)(adjusted / lineRange) * minInstructionLength;
                line += lineBase + (adjusted % lineRange);
                Emit(false);
                continue;
            }
            switch (op)
            {
                case 0: // extended
                {
                    ulong len = r.Uleb();
                    if (len == 0)
                    {
                        break;
                    }
                    ByteReader ext = r.Slice(len);
                    byte sub = ext.U8();
                    switch (sub)
                    {
                        case 1: // end_sequence
                            Emit(true);
                            address = 0;
                            fileIndex = 1;
                            line = 1;
                            break;
                        case 2: // set_address
                            address = ext.Remaining >= 8 ? ext.U64() : ext.U32();
                            break;
                        default: // define_file, set_discriminator, vendor: skipped by length
                            break;
                    }
                    break;
                }
                case 1: Emit(false); break; // copy
                case 2: address += r.Uleb() * minInstructionLength; break; // advance_pc
                case 3: line += (int)r.Sleb(); break; // advance_line
                case 4: fileIndex = (int)Math.Min(r.Uleb(), int.MaxValue); break; // set_file
                case 5: r.Uleb(); break; // set_column
                case 6: case 7: case 10: case 11: break; // negate_stmt, set_basic_block, prologue_end, epilogue_begin
                case 8: address += (ulong)((255 - opcodeBase) / lineRange) * minInstructionLength; break; // const_add_pc
                case 9: address += r.U16(); break; // fixed_advance_pc
                case 12: r.Uleb(); break; // set_isa
                default:
                    for (int i = 0; i < standardLengths[op]; i++)
                    {
                        r.Uleb();
                    }
                    break;
            }
        }

        void Emit(bool end) => _rows.Add(new Row(address, fileIndex, line, end, unitIndex));
    }

    /// <summary>A DWARF 5 directory or file entry table: format list, count, entries.</summary>
    private static void ReadEntries(ref ByteReader header, bool dwarf64, byte[] file, ElfSection? lineStr, ElfSection? str, List<string> into, List<string>? directories)
    {
        int formatCount = header.U8();
        var formats = new (ulong Content, ulong Form)[formatCount];
        for (int i = 0; i < formatCount; i++)
        {
            formats[i] = (header.Uleb(), header.Uleb());
        }
        ulong count = header.Uleb();
        if (count > MaxFiles)
        {
            throw new DebugInfoFormatException($"{count} entries");
        }
        for (ulong n = 0; n < count; n++)
        {
            string path = "";
            ulong dir = 0;
            foreach ((ulong content, ulong form) in formats)
            {
                string? text = null;
                ulong number = 0;
                switch (form)
                {
                    case DW_FORM_string: text = header.CString(); break;
                    case DW_FORM_line_strp: text = StringFrom(file, lineStr, dwarf64 ? header.U64() : header.U32()); break;
                    case DW_FORM_strp: text = StringFrom(file, str, dwarf64 ? header.U64() : header.U32()); break;
                    case DW_FORM_udata: number = header.Uleb(); break;
                    case DW_FORM_sdata: header.Sleb(); break;
                    case DW_FORM_data1: number = header.U8(); break;
                    case DW_FORM_data2: number = header.U16(); break;
                    case DW_FORM_data4: number = header.U32(); break;
                    case DW_FORM_data8: number = header.U64(); break;
                    case DW_FORM_data16: header.Skip(16); break;
                    case DW_FORM_block: header.Skip(header.Uleb()); break;
                    case DW_FORM_block1: header.Skip(header.U8()); break;
                    case DW_FORM_strx or DW_FORM_strx1 or DW_FORM_strx2 or DW_FORM_strx4:
                        throw new DebugInfoFormatException("indexed strings in a line table header");
                    default:
                        throw new DebugInfoFormatException($"form 0x{form:x} in a line table header");
                }
                if (content == DW_LNCT_path && text is not null)
                {
                    path = text;
                }
                else if (content == DW_LNCT_directory_index)
                {
                    dir = number;
                }
            }
            into.Add(directories is null ? path : Join(directories, dir, path));
        }
    }

    private static string StringFrom(byte[] file, ElfSection? section, ulong offset) =>
        section is ElfSection s ? ByteReader.StringAt(file, s.Offset, s.End, offset) : throw new DebugInfoFormatException("string section missing");

    private static string Join(List<string> directories, ulong dir, string name)
    {
        if (name.StartsWith('/') || dir >= (ulong)directories.Count || directories[(int)dir].Length == 0)
        {
            return name;
        }
        return directories[(int)dir].TrimEnd('/') + "/" + name;
    }

    /// <summary>Reorders whole sequences by start address (rows inside a sequence keep their order).</summary>
    private void SortSequences()
    {
        var sequences = new List<(ulong Start, int From, int Count)>();
        int from = 0;
        for (int i = 0; i < _rows.Count; i++)
        {
            if (_rows[i].End)
            {
                sequences.Add((_rows[from].Address, from, i - from + 1));
                from = i + 1;
            }
        }
        _rows.RemoveRange(from, _rows.Count - from); // an unterminated tail is not a sequence
        sequences.Sort(static (a, b) => a.Start.CompareTo(b.Start));
        var sorted = new List<Row>(_rows.Count);
        foreach ((_, int f, int c) in sequences)
        {
            sorted.AddRange(_rows.GetRange(f, c));
        }
        _rows.Clear();
        _rows.AddRange(sorted);
    }

    /// <summary>The source line of the instruction at <paramref name="address"/>, or null.</summary>
    public SourceLine? Find(ulong address)
    {
        int best = SortedByAddress.LastAtOrBelow(_rows, address, static r => r.Address);
        // The last row at or below address; an end-of-sequence row there means address lies past that sequence.
        if (best < 0 || _rows[best].End)
        {
            return null;
        }
        Row row = _rows[best];
        string[] files = _unitFiles[row.Unit];
        if ((uint)row.File >= (uint)files.Length || row.Line <= 0)
        {
            return null;
        }
        return new SourceLine(files[row.File], row.Line);
    }
}
