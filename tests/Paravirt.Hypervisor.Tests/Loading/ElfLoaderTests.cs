using static Paravirt.Hypervisor.Tests.Loading.ElfBuilder;

namespace Paravirt.Hypervisor.Tests.Loading;

public sealed class ElfLoaderTests
{
    private static readonly AbiVersion Host = AbiVersion.Current;

    private static ImageFormatException Refused(byte[] file, params string[] words) => Refused(file, Host, words);

    private static ImageFormatException Refused(byte[] file, AbiVersion host, params string[] words)
    {
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.Parse(file, host));
        Assert.DoesNotContain('\n', ex.Message);
        Assert.False(string.IsNullOrWhiteSpace(ex.Message));
        foreach (string w in words)
        {
            Assert.Contains(w, ex.Message, StringComparison.Ordinal);
        }
        return ex;
    }

    private static ElfBuilder With(Action<ElfBuilder> change)
    {
        ElfBuilder b = Valid();
        change(b);
        return b;
    }

    private static byte[] Set(byte[] file, int offset, ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(offset), value);
        return file;
    }

    // ---- valid images ---------------------------------------------------------------------------------------

    [Fact]
    public void ValidImageParsesEntrySegmentsVersionAndManifest()
    {
        GuestImage image = ElfLoader.Parse(Valid().Build(), Host);

        Assert.Equal(TextAddress, image.Entry);
        Assert.Equal(Host, image.AbiVersion);
        Assert.Equal(2, image.Segments.Count);
        Assert.Equal(TextAddress, image.Segments[0].Address);
        Assert.Equal(32UL, image.Segments[0].FileSize);
        Assert.Equal(32UL, image.Segments[0].MemorySize);
        Assert.Equal(PfR | PfX, image.Segments[0].Flags);
        Assert.Equal(DataAddress, image.Segments[1].Address);
        Assert.Equal(16UL, image.Segments[1].FileSize);
        Assert.Equal(0x100UL, image.Segments[1].MemorySize);
        Assert.Equal(DataAddress + 0x100, image.End);
        Assert.Equal(
            [new ManifestDevice(DeviceKind.Console, "console", false), new ManifestDevice(DeviceKind.Block, "disk0", true)],
            image.Manifest);
    }

    [Fact]
    public void SegmentsAreSortedByAddress()
    {
        var b = new ElfBuilder { Entry = TextAddress };
        b.AddLoad(0x30_0000, [1, 2, 3], 3, PfR);
        b.AddLoad(TextAddress, [0x90], 1, PfR | PfX);
        b.AddLoad(0x20_0000, [4], 0x10, PfR | PfW);
        b.AddNotes(AbiNote(1, 0));

        GuestImage image = ElfLoader.Parse(b.Build(), Host);

        Assert.Equal([TextAddress, 0x20_0000UL, 0x30_0000UL], image.Segments.Select(s => s.Address));
        Assert.Equal(0x30_0003UL, image.End);
    }

    [Fact]
    public void ImageWithoutManifestHasEmptyManifest()
    {
        byte[] file = With(b => { b.RemoveNotes(); b.AddNotes(AbiNote(1, 0)); }).Build();
        Assert.Empty(ElfLoader.Parse(file, Host).Manifest);
    }

    [Fact]
    public void OlderMinorVersionIsAccepted()
    {
        byte[] file = With(b => { b.RemoveNotes(); b.AddNotes(AbiNote(1, 1)); }).Build();
        Assert.Equal(new AbiVersion(1, 1), ElfLoader.Parse(file, new AbiVersion(1, 3)).AbiVersion);
    }

    [Fact]
    public void UnknownParavirtNoteTypesAndForeignNotesAreIgnored()
    {
        byte[] file = With(b =>
        {
            b.RemoveNotes();
            b.AddNotes(
                Note("GNU", 1, [1, 2, 3]),                  // type 1 of another owner: not our ABI note
                Note(ElfNote.Name, 99, [9, 9, 9, 9, 9]),    // a note type from a newer SDK
                Note("Paravirt2", ElfNote.TypeAbi, [1]),    // a different owner that shares a prefix
                AbiNote(1, 0));
        }).Build();
        Assert.Equal(new AbiVersion(1, 0), ElfLoader.Parse(file, Host).AbiVersion);
    }

    [Fact]
    public void NotesInAnEightByteAlignedNoteSegmentParse()
    {
        byte[] file = With(b =>
        {
            b.RemoveNotes();
            b.AddNoteSegment(8, Note("GNU", 5, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], align: 8), Note(ElfNote.Name, ElfNote.TypeAbi, AbiDesc(1, 0), align: 8));
        }).Build();
        Assert.Equal(new AbiVersion(1, 0), ElfLoader.Parse(file, Host).AbiVersion);
    }

    [Fact]
    public void EmptyLoadSegmentsAndOtherProgramHeadersAreIgnored()
    {
        byte[] file = With(b =>
        {
            b.AddLoad(0, [], 0, PfR); // empty: occupies nothing, its address does not matter
            b.Segments.Add(new Segment { Type = PtGnuStack, Flags = PfR | PfW, Offset = ulong.MaxValue, FileSize = ulong.MaxValue });
        }).Build();
        Assert.Equal(2, ElfLoader.Parse(file, Host).Segments.Count);
    }

    [Fact]
    public void ImageLinkedByGnuLdWithTheParavirtLinkerScriptParses()
    {
        using Stream s = typeof(ElfLoaderTests).Assembly.GetManifestResourceStream("minimal-guest.elf")!;
        var ms = new MemoryStream();
        s.CopyTo(ms);

        GuestImage image = ElfLoader.Parse(ms.ToArray(), Host);

        Assert.Equal(0x10_0000UL, image.Entry);
        Assert.Equal(new AbiVersion(1, 0), image.AbiVersion);
        Assert.Equal([0x10_0000UL, 0x10_1000UL, 0x10_2000UL], image.Segments.Select(x => x.Address));
        Assert.Equal(0UL, image.Segments[2].FileSize); // .bss only
        Assert.Equal(
            [new ManifestDevice(DeviceKind.Console, "console", false), new ManifestDevice(DeviceKind.Block, "disk0", true)],
            image.Manifest);
    }

    // ---- ELF header ---------------------------------------------------------------------------------------

    [Fact]
    public void TruncatedFileIsRefused() => Refused(Valid().Build()[..40], "truncated", "64-byte");

    [Fact]
    public void EmptyFileIsRefused() => Refused([], "truncated");

    /// <summary>
    /// Images made from the valid one by one change the loader must refuse, by name, with words the refusal must
    /// contain (one test case each).
    /// </summary>
    private static readonly Dictionary<string, (Action<ElfBuilder> Change, string[] Words)> Refusals = new()
    {
        ["BadMagic"] = (b => b.Magic = [0x4D, 0x5A, 0x90, 0x00], ["not an ELF file", "4d 5a 90 00"]),
        ["Elf32"] = (b => b.Class = 1, ["not a 64-bit ELF file", "ELFCLASS32"]),
        ["UnknownClass"] = (b => b.Class = 7, ["not a 64-bit ELF file", "EI_CLASS is 7"]),
        ["BigEndian"] = (b => b.Data = 2, ["not a little-endian ELF file"]),
        ["WrongIdentVersion"] = (b => b.IdentVersion = 0, ["EI_VERSION"]),
        ["WrongElfVersion"] = (b => b.Version = 2, ["e_version"]),
        ["ForeignOsAbi"] = (b => b.OsAbi = 9, ["OS ABI 9"]),
        ["OtherMachine"] = (b => b.Machine = 183, ["not an x86-64 image", "EM_AARCH64"]),
        ["Pie"] = (b => b.Type = 3, ["ET_DYN", "PIE", "not supported", "Paravirt linker script"]),
        ["RelocatableObject"] = (b => b.Type = 1, ["relocatable", "ET_EXEC"]),
        ["CoreDump"] = (b => b.Type = 4, ["core dump"]),
        ["UnknownType"] = (b => b.Type = 0xFE00, ["e_type", "ET_EXEC"]),
        ["HeaderFlags"] = (b => b.Flags = 1, ["e_flags"]),
        ["WrongHeaderSize"] = (b => b.EhSize = 52, ["e_ehsize"]),
        ["WrongProgramHeaderEntrySize"] = (b => b.PhEntSize = 32, ["e_phentsize"]),
        ["NoProgramHeaders"] = (b => b.PhNum = 0, ["no program headers"]),
        ["TooManyProgramHeaders"] = (b => b.PhNum = 65, ["too many program headers", "65"]),
        ["ExtendedProgramHeaderCount"] = (b => b.PhNum = 0xFFFF, ["too many program headers"]),
        ["ProgramHeaderTableOutsideTheFile"] = (b => b.PhOff = 0x10000, ["program header table", "outside"]),
        ["OverflowingProgramHeaderOffset"] = (b => b.PhOff = ulong.MaxValue - 8, ["program header table", "outside"]),
        ["WrongSectionHeaderEntrySize"] = (b => { b.ShOff = 64; b.ShEntSize = 40; b.ShNum = 1; }, ["e_shentsize"]),
        ["SectionHeaderTableOutsideTheFile"] = (b => { b.ShOff = ulong.MaxValue - 4; b.ShEntSize = 64; b.ShNum = 3; }, ["section header table", "outside"]),
        ["DynamicallyLinkedImage"] = (b => b.Segments.Add(new Segment { Type = PtInterp, Flags = PfR, Bytes = "/lib/ld.so\0"u8.ToArray() }), ["dynamically linked", "PT_INTERP"]),
        ["ImageWithoutLoadSegment"] = (b => b.Segments.RemoveAll(s => s.Type == PtLoad), ["no loadable (PT_LOAD) segment"]),
        ["LoadSegmentOutsideTheFile"] = (b => { b.Segments[1].FileSize = 0x10000; b.Segments[1].MemSize = 0x10000; }, ["segment 1", "outside the", "truncated"]),
        ["LoadSegmentWithOverflowingFileOffset"] = (b => b.Segments[0].Offset = ulong.MaxValue - 4, ["segment 0", "outside the"]),
        ["FileSizeLargerThanMemorySize"] = (b => b.Segments[1].MemSize = 8, ["segment 1", "p_filesz 0x10 is larger than p_memsz 0x8"]),
        ["VirtualAddressDifferentFromPhysical"] = (b => b.Segments[1].PAddr = 0x20_0000, ["segment 1", "p_vaddr", "p_paddr", "identity mapped"]),
        ["SegmentInTheHostReservedLowMegabyte"] = (b => b.Segments[1].VAddr = 0xF_F000, ["segment 1", "0xff000", "reserved for the host"]),
        ["SegmentStraddlingAddressZero"] = (b => { b.Segments[1].VAddr = 0; b.Segments[1].MemSize = 0x20_0000; }, ["segment 1", "reserved for the host"]),
        ["SegmentWhoseEndOverflows"] = (b => { b.Segments[1].VAddr = 0xFFFF_FFFF_FFFF_F000; b.Segments[1].MemSize = 0x2000; }, ["segment 1", "overflows 64 bits"]),
        ["SegmentBeyondTheLargestGuestMemory"] = (b => { b.Segments[1].VAddr = 0x10_0000_0000; }, ["segment 1", "largest guest memory"]),
        ["AlignmentThatIsNotAPowerOfTwo"] = (b => b.Segments[1].Align = 24, ["segment 1", "power of two"]),
        ["AddressAndOffsetDisagreeingModuloAlignment"] = (b => b.Segments[1].Offset = (ulong)(64 + 56 * 3 + 4), ["segment 1", "modulo p_align"]),
        ["EntryOutsideEverySegment"] = (b => b.Entry = 0x50_0000, ["entry point 0x500000", "not inside"]),
        ["EntryJustPastTheTextSegment"] = (b => b.Entry = TextAddress + 32, ["entry point", "not inside"]),
        ["EntryInANonExecutableSegment"] = (b => b.Entry = DataAddress, ["entry point", "segment 1", "not executable", "PF_X"]),
        ["EntryInTheZeroFilledTail"] = (b => { b.Segments[1].Flags |= PfX; b.Entry = DataAddress + 0x20; }, ["entry point", "zero-filled"]),
        ["NoteSegmentOutsideTheFile"] = (b => b.Segments[2].FileSize = 0x100000, ["note segment 2", "outside the"]),
        ["NoteWhoseSizesRunPastTheSegment"] = (b => { b.RemoveNotes(); b.AddNotes(Note(ElfNote.Name, ElfNote.TypeAbi, AbiDesc(1, 0), descSize: 0xFFFF_FFF0)); }, ["note segment 2", "malformed", "past the end"]),
        ["StrayBytesAfterTheLastNote"] = (b => { b.RemoveNotes(); b.AddNotes(AbiNote(1, 0), [0, 0, 0, 0]); }, ["malformed", "stray bytes"]),
        ["ThirtyTwoBitLinuxExecutable"] = (b => { b.RemoveNotes(); b.Class = 1; }, ["not a 64-bit ELF file", "ELFCLASS32"]),
        ["SharedObjectWithoutDynamicSegment"] = (b => { b.RemoveNotes(); b.Type = 3; }, ["ET_DYN", "static"]),
        ["LinuxSegmentBelowTheLowestUserAddress"] = (b => { b.RemoveNotes(); b.Segments[0].VAddr = 0x1000; b.Segments[0].PAddr = 0x1000; b.Entry = 0x1000; }, ["outside the Linux user address space"]),
        ["LinuxSegmentInTheKernelHalf"] = (b => { b.RemoveNotes(); b.Segments[1].VAddr = 0xffff_8000_0000_0000; b.Segments[1].PAddr = 0xffff_8000_0000_0000; }, ["outside the Linux user address space"]),
        ["LinuxEntryOutsideAnExecutableSegment"] = (b => { b.RemoveNotes(); b.Entry = DataAddress; }, ["entry point", "not executable"]),
        ["AbiNoteOfTheWrongSize"] = (b => { b.RemoveNotes(); b.AddNotes(Note(ElfNote.Name, ElfNote.TypeAbi, [1, 0, 0, 0])); }, ["ABI note has 4 bytes", "expected 8"]),
        ["DuplicateAbiNote"] = (b => b.AddNotes(AbiNote(1, 0)), ["more than one Paravirt ABI note"]),
        ["DuplicateManifestNote"] = (b => b.AddNotes(ManifestNote()), ["more than one Paravirt device manifest note"]),
    };

    public static TheoryData<string> RefusalNames => new(Refusals.Keys);

    [Theory]
    [MemberData(nameof(RefusalNames))]
    public void A_changed_header_or_segment_is_refused(string name)
    {
        (Action<ElfBuilder> change, string[] words) = Refusals[name];
        Refused(With(change).Build(), words);
    }

    [Fact]
    public void ShortNonElfFileIsRefusedAsNotElf() => Refused("hello"u8.ToArray(), "not an ELF file");

    [Fact]
    public void GnuOsAbiIsAccepted() => ElfLoader.Parse(With(b => b.OsAbi = 3).Build(), Host);

    [Fact]
    public void ProgramHeaderTablePartlyOutsideTheFileIsRefused()
    {
        byte[] file = Valid().Build();
        Refused(file[..(64 + 56 * 2 + 10)], "program header table", "outside");
    }

    // ---- program headers ----------------------------------------------------------------------------------

    [Fact]
    public void TruncatedSegmentBytesAreRefused()
    {
        byte[] file = Valid().Build();
        int textEnd = (int)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(64 + 8)) + 32;
        Refused(file[..(textEnd - 1)], "segment 0", "outside the", "truncated");
    }

    [Fact]
    public void OverlappingSegmentsAreRefusedNamingBoth()
    {
        var ex = Refused(With(b => b.Segments[1].VAddr = TextAddress + 16).Build(), "overlap");
        Assert.Contains("segments 0 (0x100000-0x100020) and 1 (0x100010-0x100110)", ex.Message, StringComparison.Ordinal);
    }

    // ---- notes --------------------------------------------------------------------------------------------

    [Fact]
    public void NoteWithHugeNameSizeIsRefused()
    {
        byte[] note = AbiNote(1, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(note, uint.MaxValue);
        Refused(With(b => { b.RemoveNotes(); b.AddNotes(note); }).Build(), "malformed");
    }

    // ---- static Linux executables (no Paravirt note) --------------------------------------------------------

    [Fact]
    public void ImageWithoutAbiNoteIsALinuxExecutable()
    {
        GuestImage image = ElfLoader.Parse(With(b => b.RemoveNotes()).Build(), Host);
        Assert.Equal(GuestImageKind.LinuxExecutable, image.Kind);
        Assert.Equal(TextAddress, image.Entry);
        Assert.Equal(2, image.Segments.Count);
        Assert.Empty(image.Manifest);
        Assert.Equal(AbiVersion.Current, image.AbiVersion); // the Linux personality's
        Assert.Equal(GuestImageKind.Paravirt, ElfLoader.Parse(Valid().Build(), Host).Kind);
    }

    [Fact]
    public void ImageWithOnlyForeignNotesIsALinuxExecutable() =>
        Assert.Equal(GuestImageKind.LinuxExecutable, ElfLoader.Parse(With(b => { b.RemoveNotes(); b.AddNotes(Note("GNU", 1, AbiDesc(1, 0))); }).Build(), Host).Kind);

    [Fact]
    public void OwnerWithoutTerminatingNulIsNotParavirt() =>
        Assert.Equal(GuestImageKind.LinuxExecutable, ElfLoader.Parse(With(b => { b.RemoveNotes(); b.AddNotes(Note("", ElfNote.TypeAbi, AbiDesc(1, 0), nameBytes: "Paravirt"u8.ToArray())); }).Build(), Host).Kind);

    [Fact]
    public void LinuxExecutableAtTheUsualAddressParses()
    {
        ElfBuilder b = Linux();
        b.Segments.ForEach(s => s.VAddr += 0x30_0000); // 0x400000, where static executables are linked
        b.Entry += 0x30_0000;
        GuestImage image = ElfLoader.Parse(b.Build(), Host);
        Assert.Equal(0x40_0000UL, image.Segments[0].Address);
    }

    [Fact]
    public void DynamicallyLinkedLinuxExecutableIsRefusedWithTheStaticLinkAdvice() =>
        Refused(With(b => { b.RemoveNotes(); b.Segments.Add(new Segment { Type = PtInterp, Flags = PfR, Bytes = "/lib64/ld-linux-x86-64.so.2\0"u8.ToArray() }); }).Build(),
            "dynamically linked Linux executable", "PT_INTERP", "-static");

    [Fact]
    public void StaticPieLinuxExecutableParses()
    {
        ElfBuilder b = Linux();
        b.Type = 3;
        b.Segments.Add(new Segment { Type = 2 /* PT_DYNAMIC */, Flags = PfR | PfW, Bytes = new byte[16] });
        Assert.Equal(GuestImageKind.LinuxExecutable, ElfLoader.Parse(b.Build(), Host).Kind);
    }

    [Fact]
    public void LinuxExecutableNeedsNoIdentityMapping()
    {
        ElfBuilder b = Linux();
        b.Segments[1].PAddr = 0x5000; // physical addresses mean nothing to a Linux executable
        Assert.Equal(GuestImageKind.LinuxExecutable, ElfLoader.Parse(b.Build(), Host).Kind);
    }

    [Fact]
    public void LinuxExecutableIsNotLoadedDirectly()
    {
        GuestImage image = ElfLoader.Parse(Linux().Build(), Host);
        using var memory = new Paravirt.Hypervisor.Memory.GuestMemory(4UL << 20);
        Refused(() => ElfLoader.LoadInto(image, memory), "Linux personality");
    }

    private static ElfBuilder Linux() => With(b => b.RemoveNotes());

    private static void Refused(Action action, params string[] words)
    {
        var ex = Assert.Throws<ImageFormatException>(action);
        foreach (string w in words)
        {
            Assert.Contains(w, ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void OtherMajorVersionIsRefused()
    {
        byte[] file = With(b => { b.RemoveNotes(); b.AddNotes(AbiNote(2, 0)); }).Build();
        var ex = Refused(file, new AbiVersion(1, 0), "ABI 2.0", "major versions must match");
        Assert.True(new AbiVersion(1, 0).TryExplainRefusal(new AbiVersion(2, 0), out string? reason));
        Assert.Equal(reason, ex.Message);
    }

    [Fact]
    public void NewerMinorVersionIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.AddNotes(AbiNote(1, 5)); }).Build(), new AbiVersion(1, 2), "ABI 1.5", "newer than this host");

    [Fact]
    public void ManifestShorterThanItsHeaderIsRefused() =>
        Refused(ManifestImage(Note(ElfNote.Name, ElfNote.TypeManifest, [1, 0, 0])), "manifest", "too few for its 8-byte header");

    [Fact]
    public void ManifestWithTooManyEntriesIsRefused() =>
        Refused(ManifestImage(Note(ElfNote.Name, ElfNote.TypeManifest, ManifestDescRaw(65))), "manifest lists 65 devices", "at most 64");

    [Fact]
    public void ManifestWhoseSizeDisagreesWithItsCountIsRefused() =>
        Refused(ManifestImage(Note(ElfNote.Name, ElfNote.TypeManifest, ManifestDescRaw(2, ManifestEntry(1, 0, "console"u8.ToArray())))), "announces 2 devices");

    [Fact]
    public void ManifestWithUnknownDeviceKindIsRefused() =>
        Refused(ManifestImage(Note(ElfNote.Name, ElfNote.TypeManifest, ManifestDescRaw(1, ManifestEntry(7, 0, "gpu0"u8.ToArray())))), "entry 0", "unknown device kind 7");

    [Fact]
    public void ManifestWithDeviceKindNoneIsRefused() =>
        Refused(ManifestImage(Note(ElfNote.Name, ElfNote.TypeManifest, ManifestDescRaw(1, ManifestEntry(0, 0, "x"u8.ToArray())))), "unknown device kind 0");

    [Theory]
    [InlineData("")]                                   // empty
    [InlineData("abcdefghijklmnopqrstuvwx")]           // 24 characters: no NUL left
    [InlineData("disk\u00e90")]                        // not ASCII
    [InlineData("disk 0")]                             // space is not printable-visible
    [InlineData("disk0\0x")]                           // garbage after the NUL
    public void ManifestWithInvalidDeviceNameIsRefused(string name) =>
        Refused(ManifestImage(Note(ElfNote.Name, ElfNote.TypeManifest, ManifestDescRaw(1, ManifestEntry(2, 0, Encoding.Latin1.GetBytes(name))))), "entry 0", "invalid device name");

    [Fact]
    public void ManifestNameOfTwentyThreeCharactersIsAccepted()
    {
        GuestImage image = ElfLoader.Parse(ManifestImage(ManifestNote((DeviceKind.Net, "abcdefghijklmnopqrstuvw", false))), Host);
        Assert.Equal("abcdefghijklmnopqrstuvw", Assert.Single(image.Manifest).Name);
    }

    [Fact]
    public void ManifestNamingADeviceTwiceIsRefused() =>
        Refused(ManifestImage(ManifestNote((DeviceKind.Block, "disk0", false), (DeviceKind.Block, "disk0", true))), "device 'disk0' twice");

    private static byte[] ManifestImage(byte[] manifestNote) =>
        With(b => { b.RemoveNotes(); b.AddNotes(AbiNote(1, 0), manifestNote); }).Build();
}
