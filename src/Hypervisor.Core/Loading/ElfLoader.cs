using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;

namespace Paravirt.Hypervisor.Loading;

/// <summary>
/// Parses and validates ELF64 x86-64 guest images. The image file is untrusted input: every header field, program
/// header and note is checked with overflow-safe arithmetic before it is used, and every problem is reported as an
/// <see cref="ImageFormatException"/> whose message is one line saying what is wrong and, where useful, what to do.
/// No other exception type escapes <see cref="Parse"/> for any byte content.
/// </summary>
/// <remarks>
/// Two kinds of image are accepted, both <c>ELFCLASS64</c>, little-endian, <c>EM_X86_64</c>, OS ABI System V or GNU,
/// with 1 to <see cref="MaxProgramHeaders"/> program headers, at least one <c>PT_LOAD</c> segment, segments not
/// overlapping and the entry point inside an executable segment:
/// <list type="bullet">
/// <item>A Paravirt guest image (<see cref="GuestImageKind.Paravirt"/>): it has a <see cref="ElfNote.Name"/> ABI note in a
/// <c>PT_NOTE</c> segment that this host's ABI version accepts; <c>ET_EXEC</c> (statically linked, not PIE), identity
/// mapped (<c>p_vaddr == p_paddr</c>), loaded at or above <see cref="EntryConvention.ImageMinAddress"/> and below
/// <see cref="GuestMemory.MaxSize"/>.</item>
/// <item>A static Linux executable (<see cref="GuestImageKind.LinuxExecutable"/>): no Paravirt ABI note; <c>ET_EXEC</c> or
/// static-pie <c>ET_DYN</c>, its segments in the user half of the x86-64 address space. It runs on the Linux
/// personality (a library OS the host loads with it).</item>
/// </list>
/// Program headers of other types (<c>PT_GNU_STACK</c>, <c>PT_GNU_PROPERTY</c>, <c>PT_TLS</c>, ...) are ignored,
/// except <c>PT_INTERP</c> (a dynamically linked image), which is refused.
/// </remarks>
public static class ElfLoader
{
    /// <summary>Most program headers an image may have.</summary>
    public const int MaxProgramHeaders = 64;

    /// <summary>Largest image file <see cref="LoadFile"/> reads (256 MiB).</summary>
    public const long MaxFileSize = 256L << 20;

    // ELF constants (names as in elf.h).
    private const int EI_NIDENT = 16, EI_CLASS = 4, EI_DATA = 5, EI_VERSION = 6, EI_OSABI = 7;
    private const byte ELFCLASS64 = 2, ELFDATA2LSB = 1, EV_CURRENT = 1;
    private const byte ELFOSABI_SYSV = 0, ELFOSABI_GNU = 3;
    private const ushort ET_REL = 1, ET_EXEC = 2, ET_DYN = 3, ET_CORE = 4;
    private const ushort EM_X86_64 = 62;
    private const int Elf64HeaderSize = 64, Elf64PhdrSize = 56, Elf64ShdrSize = 64;
    private const uint PT_LOAD = 1, PT_DYNAMIC = 2, PT_INTERP = 3, PT_NOTE = 4;
    private const uint PF_X = 1, PF_W = 2;
    private const int NoteHeaderSize = 12;
    private const uint ManifestFlagOptional = 1;
    // The notes' layouts are the ABI structs themselves (read with MemoryMarshal), never sizes re-typed here.
    private static int AbiNoteSize => Unsafe.SizeOf<AbiNote>();
    private static int ManifestHeaderSize => Unsafe.SizeOf<ManifestHeader>();
    private static int ManifestEntrySize => Unsafe.SizeOf<ManifestEntry>();
    private static int SandboxDeclarationSize => Unsafe.SizeOf<SandboxDeclaration>();

    /// <summary>First address past the user half of the x86-64 address space a Linux executable may occupy (Linux's TASK_SIZE).</summary>
    internal const ulong LinuxUserTop = 0x0000_7FFF_FFFF_F000;
    /// <summary>Lowest address a Linux executable may map (Linux's default vm.mmap_min_addr).</summary>
    internal const ulong LinuxMinAddress = 0x1_0000;

    private static ReadOnlySpan<byte> Magic => [0x7F, (byte)'E', (byte)'L', (byte)'F'];
    private static ReadOnlySpan<byte> NoteOwner => "Paravirt\0"u8;

    /// <summary>Parses <paramref name="file"/> and checks it against the host ABI <paramref name="host"/>.</summary>
    /// <exception cref="ImageFormatException">The image is unusable; the message says why, in one line.</exception>
    public static GuestImage Parse(byte[] file, AbiVersion host) => ParseCore(file, host, physicalLoad: false);

    /// <summary>
    /// Parses the Linux personality's library OS: a Paravirt guest image linked to run above the identity map (its
    /// <c>p_vaddr</c> is where its own page tables put it), loaded at <c>p_paddr</c>, entered at a physical entry point.
    /// </summary>
    internal static GuestImage ParsePhysical(byte[] file, AbiVersion host) => ParseCore(file, host, physicalLoad: true);

    private static GuestImage ParseCore(byte[] file, AbiVersion host, bool physicalLoad)
    {
        ArgumentNullException.ThrowIfNull(file);
        ReadOnlySpan<byte> f = file;
        ulong fileLength = (ulong)f.Length;

        // --- ELF header -------------------------------------------------------------------------------------
        if (f.Length < Elf64HeaderSize)
        {
            if (f.Length >= Magic.Length && !f[..Magic.Length].SequenceEqual(Magic))
            {
                Fail($"not an ELF file (it starts with {Hex(f[..Magic.Length])}, an ELF file starts with 7f 45 4c 46)");
            }
            Fail($"the file is truncated: {f.Length} bytes is smaller than the 64-byte ELF64 header");
        }
        if (!f[..Magic.Length].SequenceEqual(Magic))
        {
            Fail($"not an ELF file (it starts with {Hex(f[..Magic.Length])}, an ELF file starts with 7f 45 4c 46)");
        }
        if (f[EI_CLASS] != ELFCLASS64)
        {
            Fail(f[EI_CLASS] == 1
                ? "not a 64-bit ELF file (it is ELFCLASS32); Paravirt guests are 64-bit x86-64 executables"
                : $"not a 64-bit ELF file (EI_CLASS is {f[EI_CLASS]}, expected 2 = ELFCLASS64)");
        }
        if (f[EI_DATA] != ELFDATA2LSB)
        {
            Fail($"not a little-endian ELF file (EI_DATA is {f[EI_DATA]}, expected 1 = ELFDATA2LSB)");
        }
        if (f[EI_VERSION] != EV_CURRENT)
        {
            Fail($"unsupported ELF version {f[EI_VERSION]} in e_ident[EI_VERSION] (expected 1 = EV_CURRENT)");
        }
        if (f[EI_OSABI] is not (ELFOSABI_SYSV or ELFOSABI_GNU))
        {
            Fail($"unsupported ELF OS ABI {f[EI_OSABI]} in e_ident[EI_OSABI] (expected 0 = System V or 3 = GNU); build the guest with a freestanding x86-64 ELF toolchain");
        }

        ushort type = U16(f, 16);
        ushort machine = U16(f, 18);
        uint version = U32(f, 20);
        ulong entry = U64(f, 24);
        ulong phoff = U64(f, 32);
        ulong shoff = U64(f, 40);
        uint flags = U32(f, 48);
        ushort ehsize = U16(f, 52);
        ushort phentsize = U16(f, 54);
        ushort phnum = U16(f, 56);
        ushort shentsize = U16(f, 58);
        ushort shnum = U16(f, 60);

        if (machine != EM_X86_64)
        {
            Fail($"not an x86-64 image (e_machine is {machine}{MachineName(machine)}, expected 62 = EM_X86_64)");
        }
        if (type is not (ET_EXEC or ET_DYN))
        {
            Fail(type switch
            {
                ET_REL => "the image is a relocatable object file (e_type ET_REL), not an executable (ET_EXEC): link it with the Paravirt linker script",
                ET_CORE => "the file is a core dump (e_type ET_CORE), not an executable (ET_EXEC)",
                _ => $"unsupported e_type {type}: a guest image must be an executable (ET_EXEC); link it with the Paravirt linker script",
            });
        }
        if (version != EV_CURRENT)
        {
            Fail($"unsupported ELF version {version} in e_version (expected 1 = EV_CURRENT)");
        }
        if (flags != 0)
        {
            Fail($"unexpected e_flags 0x{flags:x} (x86-64 defines no ELF header flags); the file is corrupt");
        }
        if (ehsize != Elf64HeaderSize)
        {
            Fail($"bad ELF header size e_ehsize {ehsize} (expected 64 for ELF64); the file is corrupt");
        }
        if (phentsize != Elf64PhdrSize)
        {
            Fail($"bad program header entry size e_phentsize {phentsize} (expected 56 for ELF64); the file is corrupt");
        }
        if (phnum == 0)
        {
            Fail("the image has no program headers (e_phnum is 0): it is not a linked executable");
        }
        if (phnum > MaxProgramHeaders)
        {
            Fail($"the image has too many program headers ({phnum}; at most {MaxProgramHeaders} are accepted)");
        }
        ulong phSize = (ulong)phnum * Elf64PhdrSize;
        if (!FitsIn(phoff, phSize, fileLength))
        {
            Fail($"the program header table (offset 0x{phoff:x}, {phnum} entries of 56 bytes) lies outside the {fileLength}-byte file; the file is truncated or corrupt");
        }
        // Section headers are not used, but a table that is there must be well formed (stripped images have none).
        if (shoff != 0)
        {
            if (shentsize != Elf64ShdrSize)
            {
                Fail($"bad section header entry size e_shentsize {shentsize} (expected 64 for ELF64); the file is corrupt");
            }
            ulong shSize = (ulong)Math.Max(shnum, (ushort)1) * Elf64ShdrSize;
            if (!FitsIn(shoff, shSize, fileLength))
            {
                Fail($"the section header table (offset 0x{shoff:x}, {shnum} entries) lies outside the {fileLength}-byte file; the file is truncated or corrupt");
            }
        }

        // --- Program headers: what every kind needs (file ranges), then the notes that say which kind it is ----------
        var loads = new List<(int Index, ImageSegment Segment, ulong PhysicalAddress)>();
        var notes = new List<(int Index, ulong Offset, ulong Size, ulong Align)>();
        int interp = -1;
        bool dynamic = false;
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = f.Slice((int)phoff + i * Elf64PhdrSize, Elf64PhdrSize);
            uint pType = U32(ph, 0);
            uint pFlags = U32(ph, 4);
            ulong pOffset = U64(ph, 8);
            ulong pVaddr = U64(ph, 16);
            ulong pPaddr = U64(ph, 24);
            ulong pFilesz = U64(ph, 32);
            ulong pMemsz = U64(ph, 40);
            ulong pAlign = U64(ph, 48);
            switch (pType)
            {
                case PT_INTERP:
                    interp = interp < 0 ? i : interp;
                    break;
                case PT_DYNAMIC:
                    dynamic = true;
                    break;
                case PT_NOTE:
                    if (!FitsIn(pOffset, pFilesz, fileLength))
                    {
                        Fail($"note segment {i} (PT_NOTE): its file bytes 0x{pOffset:x}+0x{pFilesz:x} lie outside the {fileLength}-byte file; the file is truncated or corrupt");
                    }
                    notes.Add((i, pOffset, pFilesz, pAlign));
                    break;
                case PT_LOAD:
                    ValidateLoadFileBytes(i, pOffset, pVaddr, pFilesz, pMemsz, fileLength);
                    if (pMemsz != 0)
                    {
                        loads.Add((i, new ImageSegment(pVaddr, pOffset, pFilesz, pMemsz, pFlags), pPaddr));
                        ValidateLoadAlignment(i, pOffset, pVaddr, pFilesz, pAlign);
                    }
                    break;
                default:
                    break; // PT_GNU_STACK, PT_GNU_PROPERTY, PT_TLS, PT_PHDR ...: not needed to load a guest.
            }
        }

        AbiVersion? guestVersion = null;
        List<ManifestDevice>? manifest = null;
        var sandbox = new SandboxNotes();
        foreach ((int index, ulong offset, ulong size, ulong align) in notes)
        {
            ParseNotes(f.Slice((int)offset, (int)size), index, align, ref guestVersion, ref manifest, sandbox);
        }

        if (guestVersion is null && !physicalLoad)
        {
            return ParseLinux(file, type, entry, loads.ConvertAll(l => (l.Index, l.Segment)), interp, dynamic);
        }

        // --- A Paravirt guest image -------------------------------------------------------------------------
        if (type != ET_EXEC)
        {
            Fail("the image is a position-independent executable or shared object (e_type ET_DYN), not a plain executable (ET_EXEC): PIE and shared objects are not supported; link with -static -no-pie and the Paravirt linker script");
        }
        if (interp >= 0)
        {
            Fail("the image is dynamically linked (it has a PT_INTERP program header); link it statically (-static -nostdlib) with the Paravirt linker script");
        }
        var placed = new List<(int Index, ImageSegment Segment)>(loads.Count);
        foreach ((int i, ImageSegment seg, ulong paddr) in loads)
        {
            ulong at = physicalLoad ? paddr : seg.Address;
            if (!physicalLoad && seg.Address != paddr)
            {
                Fail($"segment {i} (PT_LOAD): p_vaddr 0x{seg.Address:x} differs from p_paddr 0x{paddr:x}; Paravirt guests are identity mapped (link with the Paravirt linker script)");
            }
            ValidateParavirtPlacement(i, at, seg.MemorySize);
            placed.Add((i, seg with { Address = at }));
        }
        if (placed.Count == 0)
        {
            Fail("the image has no loadable (PT_LOAD) segment with contents; link it with the Paravirt linker script");
        }
        CheckOverlaps(placed);
        ValidateEntry(entry, placed);

        AbiVersion gv = guestVersion
            ?? throw new ImageFormatException("not a Paravirt guest image: it has no Paravirt ABI note (build it with Paravirt.Guest.Sdk)");
        if (host.TryExplainRefusal(gv, out string? reason))
        {
            Fail(reason);
        }

        List<ImageSegment> segments = placed.ConvertAll(static l => l.Segment);
        if (sandbox.StackGuard is ulong guard && !InsideWritableSegment(guard, SandboxConstants.GuardPageSize, segments))
        {
            Fail($"the stack guard page 0x{guard:x} declared in the image's sandbox note is not inside a writable loaded segment; the image is badly linked");
        }
        return new GuestImage(file, entry, segments, gv, (IReadOnlyList<ManifestDevice>?)manifest ?? [], GuestImageKind.Paravirt)
        {
            Functions = sandbox.Functions,
            StackGuard = sandbox.StackGuard,
        };
    }

    /// <summary>The rules for an image without a Paravirt note: a static Linux executable for the Linux personality.</summary>
    private static GuestImage ParseLinux(byte[] file, ushort type, ulong entry, List<(int Index, ImageSegment Segment)> loads, int interp, bool dynamic)
    {
        if (interp >= 0)
        {
            Fail("the image is a dynamically linked Linux executable (it has a PT_INTERP program header); Paravirt runs static executables: link it with -static (for a .NET app: dotnet publish -p:PublishAot=true -p:StaticExecutable=true -p:PositionIndependentExecutable=false)");
        }
        if (type == ET_DYN && !dynamic)
        {
            Fail("the image is a shared object or a position-independent executable without a PT_DYNAMIC segment (e_type ET_DYN): a Linux executable must be static (ET_EXEC, or static-pie ET_DYN)");
        }
        if (loads.Count == 0)
        {
            Fail("the Linux executable has no loadable (PT_LOAD) segment with contents");
        }
        ulong low = ulong.MaxValue, high = 0;
        foreach ((int i, ImageSegment s) in loads)
        {
            if (s.Address + s.MemorySize < s.Address)
            {
                Fail($"segment {i} (PT_LOAD): address 0x{s.Address:x} + size 0x{s.MemorySize:x} overflows 64 bits; the file is corrupt");
            }
            low = Math.Min(low, s.Address);
            high = Math.Max(high, s.Address + s.MemorySize);
        }
        // ET_EXEC runs at its addresses; static-pie is moved to the library OS's load base, so only its span counts.
        ulong span = high - (low & ~(EntryConvention.PageSize - 1));
        if (type == ET_EXEC)
        {
            foreach ((int i, ImageSegment s) in loads)
            {
                if (s.Address < LinuxMinAddress || s.Address + s.MemorySize > LinuxUserTop)
                {
                    Fail($"segment {i} (PT_LOAD) at 0x{s.Address:x}-0x{s.Address + s.MemorySize:x} lies outside the Linux user address space (0x{LinuxMinAddress:x}-0x{LinuxUserTop:x})");
                }
            }
        }
        else if (span > 1UL << 40)
        {
            Fail($"the static-pie executable spans 0x{span:x} bytes of address space, more than the 1 TiB the Linux personality maps it into");
        }
        CheckOverlaps(loads);
        ValidateEntry(entry, loads);
        return new GuestImage(file, entry, loads.ConvertAll(static l => l.Segment), AbiVersion.Current, [], GuestImageKind.LinuxExecutable);
    }

    private static void CheckOverlaps(List<(int Index, ImageSegment Segment)> loads)
    {
        loads.Sort(static (a, b) => a.Segment.Address.CompareTo(b.Segment.Address));
        for (int k = 1; k < loads.Count; k++)
        {
            (int pi, ImageSegment p) = loads[k - 1];
            (int ci, ImageSegment c) = loads[k];
            if (p.Address + p.MemorySize > c.Address) // no overflow: checked by the placement rules
            {
                Fail($"segments {pi} (0x{p.Address:x}-0x{p.Address + p.MemorySize:x}) and {ci} (0x{c.Address:x}-0x{c.Address + c.MemorySize:x}) overlap in memory; the file is corrupt or badly linked");
            }
        }
    }

    /// <summary>Reads and parses the image at <paramref name="path"/>.</summary>
    /// <exception cref="ImageFormatException">The file cannot be read or the image is unusable.</exception>
    public static GuestImage LoadFile(string path, AbiVersion host)
    {
        byte[] bytes = ReadImageFile(path);
        try
        {
            GuestImage image = Parse(bytes, host);
            image.SourcePath = path;
            image.FileName = Path.GetFileName(path);
            return image;
        }
        catch (ImageFormatException ex)
        {
            throw new ImageFormatException($"guest image '{path}': {ex.Message}", ex);
        }
    }

    /// <summary>Copies the image's segments into <paramref name="memory"/> (zeroing each segment's tail) and returns <see cref="GuestImage.End"/>.</summary>
    /// <exception cref="ImageFormatException">A segment does not fit in <paramref name="memory"/>.</exception>
    public static ulong LoadInto(GuestImage image, GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(memory);
        if (image.Kind != GuestImageKind.Paravirt)
        {
            throw new ImageFormatException("a Linux executable is not loaded directly: GuestRunner runs it on the Linux personality");
        }
        ReadOnlySpan<byte> file = image.FileBytes;
        IReadOnlyList<ImageSegment> segments = image.Segments;
        for (int i = 0; i < segments.Count; i++) // indexed: an interface enumerator was an allocation every VM
        {
            ImageSegment s = segments[i];
            if (!memory.Contains(new GuestAddress(s.Address), s.MemorySize))
            {
                ulong needMiB = image.End / (1UL << 20) + (image.End % (1UL << 20) == 0 ? 0UL : 1UL);
                throw new ImageFormatException($"the image needs {needMiB} MiB but guest memory is {memory.Size >> 20} MiB; use a larger --memory");
            }
            if (s.FileSize > s.MemorySize || (s.FileSize != 0 && !FitsIn(s.FileOffset, s.FileSize, (ulong)file.Length)))
            {
                throw new ImageFormatException($"the segment at 0x{s.Address:x} has file bytes 0x{s.FileOffset:x}+0x{s.FileSize:x} outside the {file.Length}-byte image; the image is corrupt");
            }
            if (s.FileSize != 0)
            {
                memory.Write(new GuestAddress(s.Address), file.Slice((int)s.FileOffset, (int)s.FileSize));
            }
            // No overflow: Contains checked Address + MemorySize above.
            memory.Clear(new GuestAddress(s.Address + s.FileSize), s.MemorySize - s.FileSize);
        }
        return image.End;
    }

    private static void ValidateLoadFileBytes(int i, ulong offset, ulong vaddr, ulong filesz, ulong memsz, ulong fileLength)
    {
        if (filesz > memsz)
        {
            Fail($"segment {i} (PT_LOAD at 0x{vaddr:x}): p_filesz 0x{filesz:x} is larger than p_memsz 0x{memsz:x}; the file is corrupt");
        }
        if (filesz != 0 && !FitsIn(offset, filesz, fileLength))
        {
            Fail($"segment {i} (PT_LOAD at 0x{vaddr:x}): its file bytes 0x{offset:x}+0x{filesz:x} lie outside the {fileLength}-byte file; the file is truncated or corrupt");
        }
    }

    private static void ValidateLoadAlignment(int i, ulong offset, ulong vaddr, ulong filesz, ulong align)
    {
        if (align > 1)
        {
            if ((align & (align - 1)) != 0)
            {
                Fail($"segment {i} (PT_LOAD): p_align 0x{align:x} is not a power of two; the file is corrupt");
            }
            if (filesz != 0 && ((vaddr - offset) & (align - 1)) != 0) // p_offset means nothing without file bytes
            {
                Fail($"segment {i} (PT_LOAD): p_vaddr 0x{vaddr:x} and p_offset 0x{offset:x} disagree modulo p_align 0x{align:x}; the file is corrupt");
            }
        }
    }

    private static void ValidateParavirtPlacement(int i, ulong address, ulong memsz)
    {
        if (address < EntryConvention.ImageMinAddress)
        {
            Fail($"segment {i} (PT_LOAD) starts at 0x{address:x}, below 0x{EntryConvention.ImageMinAddress:x}: the low 1 MiB of guest memory is reserved for the host; link the guest at 1 MiB or above (the Paravirt linker script does)");
        }
        if (address + memsz < address)
        {
            Fail($"segment {i} (PT_LOAD): address 0x{address:x} + size 0x{memsz:x} overflows 64 bits; the file is corrupt");
        }
        if (address + memsz > GuestMemory.MaxSize)
        {
            Fail($"segment {i} (PT_LOAD) ends at 0x{address + memsz:x}, beyond the largest guest memory this host supports ({GuestMemory.MaxSize >> 30} GiB)");
        }
    }

    private static void ValidateEntry(ulong entry, List<(int Index, ImageSegment Segment)> loads)
    {
        foreach ((int index, ImageSegment s) in loads)
        {
            if (entry < s.Address || entry - s.Address >= s.MemorySize)
            {
                continue;
            }
            if ((s.Flags & PF_X) == 0)
            {
                Fail($"the entry point 0x{entry:x} lies in segment {index}, which is not executable (no PF_X flag); the image is badly linked");
            }
            if (entry - s.Address >= s.FileSize)
            {
                Fail($"the entry point 0x{entry:x} lies in the zero-filled part of segment {index}, past its bytes in the file; the image is badly linked");
            }
            return;
        }
        Fail($"the entry point 0x{entry:x} is not inside any loaded segment (it must point into an executable PT_LOAD segment with PF_X)");
    }

    private static void ParseNotes(ReadOnlySpan<byte> segment, int index, ulong align, ref AbiVersion? abi, ref List<ManifestDevice>? manifest, SandboxNotes sandbox)
    {
        // ELF notes are 4-byte aligned in practice; a PT_NOTE with p_align 8 (e.g. GNU property notes) uses 8.
        int a = align == 8 ? 8 : 4;
        int pos = 0;
        while (pos < segment.Length)
        {
            if (segment.Length - pos < NoteHeaderSize)
            {
                Fail($"note segment {index} (PT_NOTE) is malformed: {segment.Length - pos} stray bytes at its end are too few for a note header; the file is corrupt");
            }
            uint namesz = U32(segment, pos);
            uint descsz = U32(segment, pos + 4);
            uint noteType = U32(segment, pos + 8);
            // 64-bit arithmetic: namesz and descsz are at most 2^32 - 1 each, so nothing overflows.
            long nameStart = pos + NoteHeaderSize;
            long descStart = AlignUp(nameStart + namesz, a);
            long descEnd = descStart + descsz;
            if (descEnd > segment.Length)
            {
                Fail($"note segment {index} (PT_NOTE) is malformed: the note at offset 0x{pos:x} claims a {namesz}-byte name and {descsz} bytes of data, past the end of the {segment.Length}-byte segment; the file is corrupt");
            }
            ReadOnlySpan<byte> name = segment.Slice((int)nameStart, (int)namesz);
            ReadOnlySpan<byte> desc = segment.Slice((int)descStart, (int)descsz);
            if (name.SequenceEqual(NoteOwner))
            {
                switch (noteType)
                {
                    case ElfNote.TypeAbi:
                        if (abi is not null)
                        {
                            Fail("the image has more than one Paravirt ABI note; the file is corrupt or badly linked");
                        }
                        abi = ParseAbiNote(desc);
                        break;
                    case ElfNote.TypeManifest:
                        if (manifest is not null)
                        {
                            Fail("the image has more than one Paravirt device manifest note; the file is corrupt or badly linked");
                        }
                        manifest = ParseManifest(desc);
                        break;
                    case ElfNote.TypeSandbox:
                        ParseSandboxDeclaration(desc, sandbox);
                        break;
                    default:
                        break; // a note type from a newer SDK: ignored (forward compatibility)
                }
            }
            long next = AlignUp(descEnd, a);
            pos = next >= segment.Length ? segment.Length : (int)next;
        }
    }

    private static AbiVersion ParseAbiNote(ReadOnlySpan<byte> desc)
    {
        if (desc.Length != AbiNoteSize)
        {
            Fail($"the Paravirt ABI note has {desc.Length} bytes of data, expected {AbiNoteSize} (a pv_abi_note); the image is corrupt or was built by an incompatible SDK");
        }
        AbiNote note = MemoryMarshal.Read<AbiNote>(desc);
        return new AbiVersion(note.AbiMajor, note.AbiMinor);
    }

    private static List<ManifestDevice> ParseManifest(ReadOnlySpan<byte> desc)
    {
        if (desc.Length < ManifestHeaderSize)
        {
            Fail($"the Paravirt device manifest note has {desc.Length} bytes of data, too few for its {ManifestHeaderSize}-byte header; the image is corrupt");
        }
        uint count = MemoryMarshal.Read<ManifestHeader>(desc).Count;
        if (count > ElfNote.ManifestMaxEntries)
        {
            Fail($"the Paravirt device manifest lists {count} devices; at most {ElfNote.ManifestMaxEntries} are accepted");
        }
        int expected = ManifestHeaderSize + (int)count * ManifestEntrySize;
        if (desc.Length != expected)
        {
            Fail($"the Paravirt device manifest note has {desc.Length} bytes of data, but its header announces {count} devices ({expected} bytes); the image is corrupt");
        }
        var devices = new List<ManifestDevice>((int)count);
        for (int i = 0; i < (int)count; i++)
        {
            ManifestEntry e = MemoryMarshal.Read<ManifestEntry>(desc.Slice(ManifestHeaderSize + i * ManifestEntrySize, ManifestEntrySize));
            uint kind = e.Kind;
            uint entryFlags = e.Flags;
            if (kind is not ((uint)DeviceKind.Console or (uint)DeviceKind.Block or (uint)DeviceKind.Net) && kind < DeviceTypes.UserFirst)
            {
                Fail($"the Paravirt device manifest entry {i} has unknown device kind {kind}; this host knows console (1), block (2), net (3) and user-defined types from 0x{DeviceTypes.UserFirst:x}: update the host or rebuild the guest");
            }
            string? name;
            unsafe
            {
                // Safe: e is a local copy; the fixed buffer is VirtualDevice.MaxNameLength + 1 bytes.
                name = DecodeName(new ReadOnlySpan<byte>(e.Name, Devices.VirtualDevice.MaxNameLength + 1));
            }
            if (name is null)
            {
                Fail($"the Paravirt device manifest entry {i} has an invalid device name (a name is 1 to {Devices.VirtualDevice.MaxNameLength} printable ASCII characters, NUL-padded); the image is corrupt");
            }
            foreach (ManifestDevice d in devices)
            {
                if (d.Name == name)
                {
                    Fail($"the Paravirt device manifest lists device '{name}' twice; the image is corrupt");
                }
            }
            devices.Add(new ManifestDevice((DeviceKind)kind, name, (entryFlags & ManifestFlagOptional) != 0));
        }
        return devices;
    }

    /// <summary>What the image's sandbox notes declare.</summary>
    private sealed class SandboxNotes
    {
        public List<string> Functions { get; } = [];
        public ulong? StackGuard { get; set; }
    }

    private static void ParseSandboxDeclaration(ReadOnlySpan<byte> desc, SandboxNotes sandbox)
    {
        if (desc.Length != SandboxDeclarationSize)
        {
            Fail($"a Paravirt sandbox note has {desc.Length} bytes of data, expected {SandboxDeclarationSize} (a pv_sandbox_decl); the image is corrupt or was built by an incompatible SDK");
        }
        SandboxDeclaration declaration = MemoryMarshal.Read<SandboxDeclaration>(desc);
        uint kind = declaration.Kind;
        ulong address = declaration.Address;
        switch (kind)
        {
            case (uint)SandboxDeclarationKind.Function:
                string? name;
                unsafe
                {
                    // Safe: declaration is a local copy; the fixed buffer is NameMax + 1 bytes.
                    name = DecodeName(new ReadOnlySpan<byte>(declaration.Name, (int)SandboxConstants.NameMax + 1));
                }
                if (name is null)
                {
                    Fail($"a Paravirt sandbox note declares a guest function with an invalid name (1 to {SandboxConstants.NameMax} printable ASCII characters, NUL-padded); the image is corrupt");
                }
                if (sandbox.Functions.Contains(name))
                {
                    Fail($"the image declares guest function '{name}' twice (PV_GUEST_FUNCTION names must be unique)");
                }
                if (sandbox.Functions.Count >= SandboxConstants.MaxFunctions)
                {
                    Fail($"the image declares more than {SandboxConstants.MaxFunctions} guest functions");
                }
                sandbox.Functions.Add(name);
                break;
            case (uint)SandboxDeclarationKind.StackGuard:
                if (sandbox.StackGuard is not null)
                {
                    Fail("the image declares more than one stack guard page; the file is corrupt or badly linked");
                }
                if (address % SandboxConstants.GuardPageSize != 0 || address < EntryConvention.ImageMinAddress)
                {
                    Fail($"the stack guard page 0x{address:x} declared in the image is not a page-aligned address at or above 1 MiB; the image is corrupt");
                }
                sandbox.StackGuard = address;
                break;
            default:
                break; // a declaration kind from a newer SDK: ignored (forward compatibility)
        }
    }

    private static bool InsideWritableSegment(ulong address, ulong length, List<ImageSegment> segments)
    {
        foreach (ImageSegment s in segments)
        {
            if ((s.Flags & PF_W) != 0 && address >= s.Address && address - s.Address <= s.MemorySize && length <= s.MemorySize - (address - s.Address))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Decodes a NUL-padded ASCII name: printable characters, then only NULs (at least one). Null when invalid.</summary>
    private static string? DecodeName(ReadOnlySpan<byte> field)
    {
        int length = field.IndexOf((byte)0);
        if (length <= 0)
        {
            return null; // empty, or no terminating NUL
        }
        foreach (byte b in field[..length])
        {
            if (b is < 0x21 or > 0x7E)
            {
                return null;
            }
        }
        if (field[length..].IndexOfAnyExcept((byte)0) >= 0)
        {
            return null;
        }
        return Encoding.ASCII.GetString(field[..length]);
    }

    private static byte[] ReadImageFile(string path)
    {
        if (string.IsNullOrEmpty(path))
        {
            throw new ImageFormatException("cannot read guest image '': no path was given");
        }
        try
        {
            if (Directory.Exists(path))
            {
                throw new ImageFormatException($"cannot read guest image '{path}': it is a directory, not a file");
            }
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            if (stream.CanSeek && stream.Length > MaxFileSize)
            {
                throw new ImageFormatException($"cannot read guest image '{path}': it is {stream.Length >> 20} MiB, larger than the {MaxFileSize >> 20} MiB limit for a guest image");
            }
            // Read to the end but never past the cap (a device or FIFO has no trustworthy length).
            using var buffer = new MemoryStream(stream.CanSeek ? (int)stream.Length : 0);
            byte[] chunk = new byte[81920];
            int n;
            while ((n = stream.Read(chunk, 0, chunk.Length)) > 0)
            {
                if (buffer.Length + n > MaxFileSize)
                {
                    throw new ImageFormatException($"cannot read guest image '{path}': it is larger than the {MaxFileSize >> 20} MiB limit for a guest image");
                }
                buffer.Write(chunk, 0, n);
            }
            return buffer.ToArray();
        }
        catch (FileNotFoundException)
        {
            throw new ImageFormatException($"cannot read guest image '{path}': the file does not exist");
        }
        catch (DirectoryNotFoundException)
        {
            throw new ImageFormatException($"cannot read guest image '{path}': the file does not exist (its directory is missing)");
        }
        catch (UnauthorizedAccessException)
        {
            throw new ImageFormatException($"cannot read guest image '{path}': permission denied");
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or NotSupportedException or System.Security.SecurityException)
        {
            throw new ImageFormatException($"cannot read guest image '{path}': {OneLine(ex.Message)}", ex);
        }
    }

    /// <summary>True when <c>[offset, offset + length)</c> lies inside <c>[0, limit)</c>, overflow-safe.</summary>
    private static bool FitsIn(ulong offset, ulong length, ulong limit) => offset <= limit && length <= limit - offset;

    private static long AlignUp(long value, int alignment) => (value + alignment - 1) & ~(long)(alignment - 1);

    private static ushort U16(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt16LittleEndian(s[offset..]);
    private static uint U32(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(s[offset..]);
    private static ulong U64(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(s[offset..]);

    private static string Hex(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder();
        foreach (byte b in bytes)
        {
            if (sb.Length > 0)
            {
                sb.Append(' ');
            }
            sb.Append(b.ToString("x2", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    private static string MachineName(ushort machine) => machine switch
    {
        3 => " = EM_386, 32-bit x86",
        40 => " = EM_ARM",
        183 => " = EM_AARCH64",
        243 => " = EM_RISCV",
        _ => "",
    };

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    [DoesNotReturn]
    private static void Fail(string message) => throw new ImageFormatException(message);
}
