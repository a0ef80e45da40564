namespace Paravirt.Hypervisor.Debugging.Symbols;

/// <summary>A code symbol: name, start address and size (0 when the assembler gave none).</summary>
internal readonly record struct ElfSymbol(string Name, ulong Address, ulong Size);

/// <summary>
/// The function symbols of an image's <c>.symtab</c> (C functions, assembly labels typed as functions, and the
/// methods NativeAOT compiled, under ILC's mangled names), sorted for address lookup. Bounded: at most
/// <see cref="MaxSymbols"/> symbols and 512 bytes per name; a malformed table gives no symbols.
/// </summary>
internal sealed class ElfSymbolTable
{
    private const uint SHT_SYMTAB = 2;
    private const int STT_NOTYPE = 0, STT_FUNC = 2;
    private const int SymbolSize = 24;
    internal const int MaxSymbols = 1 << 20;

    private readonly ElfSymbol[] _symbols;

    private ElfSymbolTable(ElfSymbol[] symbols) => _symbols = symbols;

    public static ElfSymbolTable Empty { get; } = new([]);

    public int Count => _symbols.Length;

    public static ElfSymbolTable Parse(ElfSections sections)
    {
        try
        {
            return ParseCore(sections);
        }
        catch (DebugInfoFormatException)
        {
            return Empty;
        }
    }

    private static ElfSymbolTable ParseCore(ElfSections sections)
    {
        ElfSection? symtab = null;
        foreach (ElfSection s in sections.All)
        {
            if (s.Type == SHT_SYMTAB)
            {
                symtab = s;
                break;
            }
        }
        if (symtab is not ElfSection table || sections.At(table.Link) is not ElfSection strtab)
        {
            return Empty;
        }
        int count = Math.Min(table.Size / SymbolSize, MaxSymbols);
        var list = new List<ElfSymbol>();
        var r = new ByteReader(sections.File, table.Offset, table.End);
        for (int i = 0; i < count; i++)
        {
            uint name = r.U32();
            byte info = r.U8();
            r.U8(); // st_other
            ushort shndx = r.U16();
            ulong value = r.U64();
            ulong size = r.U64();
            int type = info & 0xF;
            if ((type != STT_FUNC && type != STT_NOTYPE) || shndx == 0 || value == 0 || name == 0)
            {
                continue;
            }
            if (type == STT_NOTYPE && !IsExecutable(sections, shndx))
            {
                continue; // data labels
            }
            string n;
            try
            {
                n = ByteReader.StringAt(sections.File, strtab.Offset, strtab.End, name, 512);
            }
            catch (DebugInfoFormatException)
            {
                continue;
            }
            if (n.Length == 0 || n.StartsWith(".L", StringComparison.Ordinal))
            {
                continue;
            }
            list.Add(new ElfSymbol(n, value, size));
        }
        // Sorted by address; among symbols at one address, a sized one (a function) wins over a bare label.
        list.Sort(static (a, b) => a.Address != b.Address ? a.Address.CompareTo(b.Address) : b.Size.CompareTo(a.Size));
        return new ElfSymbolTable([.. list]);
    }

    private static bool IsExecutable(ElfSections sections, ushort index)
    {
        const ulong SHF_EXECINSTR = 4;
        return index < 0xFF00 && sections.At(index) is ElfSection s && (s.Flags & SHF_EXECINSTR) != 0;
    }

    /// <summary>The function containing <paramref name="address"/>: the closest symbol at or below it, within its size when it has one.</summary>
    public bool TryFind(ulong address, out ElfSymbol symbol)
    {
        symbol = default;
        int best = SortedByAddress.LastAtOrBelow(_symbols, address, static s => s.Address);
        if (best < 0)
        {
            return false;
        }
        // Step back to the first (largest-size) symbol at this address.
        while (best > 0 && _symbols[best - 1].Address == _symbols[best].Address)
        {
            best--;
        }
        ElfSymbol s = _symbols[best];
        if (s.Size != 0 && address - s.Address >= s.Size)
        {
            return false;
        }
        if (s.Size == 0 && address - s.Address > 0x10000)
        {
            return false; // a bare label far below: not a plausible function
        }
        symbol = s;
        return true;
    }

    /// <summary>The address of the function named <paramref name="name"/>, or null.</summary>
    public ulong? AddressOf(string name)
    {
        foreach (ElfSymbol s in _symbols)
        {
            if (s.Name == name)
            {
                return s.Address;
            }
        }
        return null;
    }
}
