using System.Globalization;

namespace Paravirt.Hypervisor.Debugging.Symbols;

/// <summary>What an address is in an image: function, offset in it, source line.</summary>
internal readonly record struct SymbolizedAddress(string? Function, ulong Offset, SourceLine? Source)
{
    /// <summary><c>func+0x12 (file.c:34)</c>, <c>func+0x12</c>, or empty when nothing is known.</summary>
    public override string ToString()
    {
        string text = Function is null ? "" : Offset == 0 ? Function : $"{Function}+0x{Offset:x}";
        if (Source is SourceLine s)
        {
            text += (text.Length > 0 ? " " : "") + "(" + s.File + ":" + s.Line.ToString(CultureInfo.InvariantCulture) + ")";
        }
        return text;
    }
}

/// <summary>
/// An image's debugging information, read once from the image file: function symbols (<see cref="ElfSymbolTable"/>),
/// unwind tables (<see cref="CallFrameTable"/>) and line tables (<see cref="DwarfLineTable"/>). Each part is empty
/// when the image lacks it or it is malformed; reading never throws for any file content.
/// </summary>
internal sealed class ImageSymbols
{
    private ImageSymbols(ElfSymbolTable symbols, CallFrameTable frames, DwarfLineTable lines)
    {
        Symbols = symbols;
        Frames = frames;
        Lines = lines;
    }

    public ElfSymbolTable Symbols { get; }

    public CallFrameTable Frames { get; }

    public DwarfLineTable Lines { get; }

    public static ImageSymbols Parse(byte[] file)
    {
        ArgumentNullException.ThrowIfNull(file);
        ElfSections sections = ElfSections.Parse(file);
        return new ImageSymbols(ElfSymbolTable.Parse(sections), CallFrameTable.Parse(sections), DwarfLineTable.Parse(sections));
    }

    /// <summary>The function and source line of the instruction at <paramref name="address"/>.</summary>
    public SymbolizedAddress Lookup(ulong address)
    {
        string? function = null;
        ulong offset = 0;
        if (Symbols.TryFind(address, out ElfSymbol symbol))
        {
            function = symbol.Name;
            offset = address - symbol.Address;
        }
        return new SymbolizedAddress(function, offset, Lines.Find(address));
    }
}
