namespace Paravirt.Hypervisor.Debugging.Symbols;

/// <summary>One section header of an ELF64 file, checked to lie inside the file.</summary>
internal readonly record struct ElfSection(string Name, uint Type, ulong Flags, ulong Address, int Offset, int Size, uint Link)
{
    public int End => Offset + Size;
}

/// <summary>
/// The section headers of an ELF64 little-endian image (the loader already checked the program headers; sections
/// matter only for symbols and debug information). Hostile input: a header outside the file, a section outside the
/// file or an absurd count makes the table empty or drops that section; nothing throws.
/// </summary>
internal sealed class ElfSections
{
    private const uint SHT_NOBITS = 8;
    private const int MaxSections = 4096;

    private readonly List<ElfSection> _sections = [];

    private ElfSections(byte[] file) => File = file;

    /// <summary>The image file.</summary>
    public byte[] File { get; }

    public IReadOnlyList<ElfSection> All => _sections;

    /// <summary>The first section named <paramref name="name"/> that has bytes in the file.</summary>
    public ElfSection? Find(string name)
    {
        foreach (ElfSection s in _sections)
        {
            if (s.Name == name && s.Type != SHT_NOBITS)
            {
                return s;
            }
        }
        return null;
    }

    /// <summary>The section at index <paramref name="index"/> (for sh_link), or null.</summary>
    public ElfSection? At(uint index) => index < (uint)_indexed.Count ? _indexed[(int)index] : null;

    private readonly List<ElfSection?> _indexed = [];

    public static ElfSections Parse(byte[] file)
    {
        var result = new ElfSections(file);
        try
        {
            result.Read();
        }
        catch (DebugInfoFormatException)
        {
            result._sections.Clear();
            result._indexed.Clear();
        }
        return result;
    }

    private void Read()
    {
        var h = new ByteReader(File, 0, File.Length);
        if (File.Length < 64 || File[0] != 0x7F || File[1] != (byte)'E' || File[2] != (byte)'L' || File[3] != (byte)'F' || File[4] != 2 || File[5] != 1)
        {
            return;
        }
        h.Seek(0x28);
        ulong shoff = h.U64();
        h.Seek(0x3A);
        ushort shentsize = h.U16();
        ushort shnum = h.U16();
        ushort shstrndx = h.U16();
        if (shoff == 0 || shnum == 0 || shnum > MaxSections || shentsize < 64 || shoff > (ulong)File.Length
            || (ulong)shnum * shentsize > (ulong)File.Length - shoff)
        {
            return;
        }
        var raw = new (uint Name, uint Type, ulong Flags, ulong Addr, ulong Offset, ulong Size, uint Link)[shnum];
        for (int i = 0; i < shnum; i++)
        {
            var r = new ByteReader(File, (int)shoff + (i * shentsize), (int)shoff + (i * shentsize) + 64);
            raw[i] = (r.U32(), r.U32(), r.U64(), r.U64(), r.U64(), r.U64(), r.U32());
        }
        (int strStart, int strEnd) = (0, 0);
        if (shstrndx < shnum && raw[shstrndx].Type != SHT_NOBITS && raw[shstrndx].Offset <= (ulong)File.Length
            && raw[shstrndx].Size <= (ulong)File.Length - raw[shstrndx].Offset)
        {
            strStart = (int)raw[shstrndx].Offset;
            strEnd = strStart + (int)raw[shstrndx].Size;
        }
        for (int i = 0; i < shnum; i++)
        {
            var s = raw[i];
            bool inFile = s.Type == SHT_NOBITS || (s.Offset <= (ulong)File.Length && s.Size <= (ulong)File.Length - s.Offset);
            if (!inFile)
            {
                _indexed.Add(null);
                continue;
            }
            string name = "";
            if (strEnd > strStart)
            {
                try
                {
                    name = ByteReader.StringAt(File, strStart, strEnd, s.Name, 256);
                }
                catch (DebugInfoFormatException)
                {
                    name = "";
                }
            }
            var section = new ElfSection(name, s.Type, s.Flags, s.Addr, s.Type == SHT_NOBITS ? 0 : (int)s.Offset, s.Type == SHT_NOBITS ? 0 : (int)s.Size, s.Link);
            _indexed.Add(section);
            _sections.Add(section);
        }
    }
}
