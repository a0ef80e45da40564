namespace Paravirt.Hypervisor.Loading;

/// <summary>One loadable segment of a guest image (an ELF <c>PT_LOAD</c>), already validated.</summary>
/// <param name="Address">Guest-physical load address (<c>p_paddr</c>, equal to <c>p_vaddr</c>: guests are identity mapped).</param>
/// <param name="FileOffset">Offset of the segment's bytes in the file.</param>
/// <param name="FileSize">Bytes copied from the file.</param>
/// <param name="MemorySize">Bytes occupied in memory (the rest, past <paramref name="FileSize"/>, is zeroed).</param>
/// <param name="Flags">ELF <c>p_flags</c> (PF_X=1, PF_W=2, PF_R=4).</param>
public readonly record struct ImageSegment(ulong Address, ulong FileOffset, ulong FileSize, ulong MemorySize, uint Flags);

/// <summary>A device the guest's manifest note asks for.</summary>
/// <param name="Kind">The device kind.</param>
/// <param name="Name">The device name (e.g. "disk0").</param>
/// <param name="Optional">True when the guest runs without it.</param>
public readonly record struct ManifestDevice(DeviceKind Kind, string Name, bool Optional);

/// <summary>What a <see cref="GuestImage"/> is, and so how <see cref="Running.GuestRunner"/> runs it.</summary>
public enum GuestImageKind
{
    /// <summary>A Paravirt guest image (built with Paravirt.Guest.Sdk): it runs on the hypercall ABI, loaded as its segments say.</summary>
    Paravirt,
    /// <summary>A static Linux x86-64 executable: it runs on the Linux personality, a library OS the host loads with it.</summary>
    LinuxExecutable,
}

/// <summary>
/// A parsed and validated guest image: an ELF64 x86-64 executable, either a Paravirt guest image (with the Paravirt ABI
/// note) or a static Linux executable (see <see cref="Kind"/>). Produced by <see cref="ElfLoader"/>; a Paravirt image
/// is loaded into guest memory by <see cref="ElfLoader.LoadInto"/>, a Linux executable by the runner's Linux personality.
/// </summary>
public sealed class GuestImage
{
    private readonly byte[] _file;

    internal GuestImage(byte[] file, ulong entry, IReadOnlyList<ImageSegment> segments, AbiVersion abiVersion, IReadOnlyList<ManifestDevice> manifest, GuestImageKind kind = GuestImageKind.Paravirt)
    {
        _file = file;
        Kind = kind;
        Entry = entry;
        Segments = segments;
        AbiVersion = abiVersion;
        Manifest = manifest;
        ulong end = 0;
        foreach (ImageSegment s in segments)
        {
            end = Math.Max(end, s.Address + s.MemorySize);
        }
        End = end;
    }

    /// <summary>Whether this is a Paravirt guest image or a static Linux executable.</summary>
    public GuestImageKind Kind { get; }
    /// <summary>Entry point (guest-physical for a Paravirt image; the executable's own virtual address for a Linux executable).</summary>
    public ulong Entry { get; }
    /// <summary>Loadable segments, sorted by address, non-overlapping (for a Linux executable: at its virtual addresses, before any static-pie relocation).</summary>
    public IReadOnlyList<ImageSegment> Segments { get; }
    /// <summary>The ABI version the guest was built for (from its ELF note; for a Linux executable, the version of the Linux personality that runs it).</summary>
    public AbiVersion AbiVersion { get; }
    /// <summary>Devices the guest asks for (from its manifest note; empty when it has none).</summary>
    public IReadOnlyList<ManifestDevice> Manifest { get; }
    /// <summary>First address past the highest segment.</summary>
    public ulong End { get; }

    /// <summary>The file the image was read from (<see cref="ElfLoader.LoadFile"/>), or null.</summary>
    public string? SourcePath { get; internal set; }

    /// <summary>The guest functions the image serves as a sandbox (its <c>PV_GUEST_FUNCTION</c> notes), in note order; empty for a plain guest.</summary>
    public IReadOnlyList<string> Functions { get; internal init; } = [];

    /// <summary>The page-aligned guest-physical address of the guard page below the image's stack (from its sandbox note), or null when it declares none.</summary>
    public ulong? StackGuard { get; internal init; }

    /// <summary>The bytes of the whole image file.</summary>
    public ReadOnlySpan<byte> FileBytes => _file;

    /// <summary>The image file's name when it was loaded from a file (core files name the program after it), else null.</summary>
    internal string? FileName { get; set; }

    /// <summary>The image's symbols, unwind tables and line tables, read on first use (crash reports, debugger).</summary>
    internal Debugging.Symbols.ImageSymbols Symbols => _symbols ??= Debugging.Symbols.ImageSymbols.Parse(_file);

    private Debugging.Symbols.ImageSymbols? _symbols;
}

/// <summary>
/// A guest image is unusable: not ELF, truncated, wrong architecture, a segment out of range or overlapping, no
/// Paravirt note, or an ABI this host does not run. The message is one clear line for the user.
/// </summary>
public sealed class ImageFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ImageFormatException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public ImageFormatException() { }
    /// <summary>Creates the exception.</summary>
    public ImageFormatException(string message, Exception inner) : base(message, inner) { }
}
