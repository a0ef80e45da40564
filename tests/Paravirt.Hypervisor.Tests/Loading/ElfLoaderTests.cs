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

    [Fact]
    public void BadMagicIsRefused() => Refused(With(b => b.Magic = [0x4D, 0x5A, 0x90, 0x00]).Build(), "not an ELF file", "4d 5a 90 00");

    [Fact]
    public void ShortNonElfFileIsRefusedAsNotElf() => Refused("hello"u8.ToArray(), "not an ELF file");

    [Fact]
    public void Elf32IsRefused() => Refused(With(b => b.Class = 1).Build(), "not a 64-bit ELF file", "ELFCLASS32");

    [Fact]
    public void UnknownClassIsRefused() => Refused(With(b => b.Class = 7).Build(), "not a 64-bit ELF file", "EI_CLASS is 7");

    [Fact]
    public void BigEndianIsRefused() => Refused(With(b => b.Data = 2).Build(), "not a little-endian ELF file");

    [Fact]
    public void WrongIdentVersionIsRefused() => Refused(With(b => b.IdentVersion = 0).Build(), "EI_VERSION");

    [Fact]
    public void WrongElfVersionIsRefused() => Refused(With(b => b.Version = 2).Build(), "e_version");

    [Fact]
    public void ForeignOsAbiIsRefused() => Refused(With(b => b.OsAbi = 9).Build(), "OS ABI 9");

    [Fact]
    public void GnuOsAbiIsAccepted() => ElfLoader.Parse(With(b => b.OsAbi = 3).Build(), Host);

    [Fact]
    public void OtherMachineIsRefused() => Refused(With(b => b.Machine = 183).Build(), "not an x86-64 image", "EM_AARCH64");

    [Fact]
    public void PieIsRefused() => Refused(With(b => b.Type = 3).Build(), "ET_DYN", "PIE", "not supported", "Paravirt linker script");

    [Fact]
    public void RelocatableObjectIsRefused() => Refused(With(b => b.Type = 1).Build(), "relocatable", "ET_EXEC");

    [Fact]
    public void CoreDumpIsRefused() => Refused(With(b => b.Type = 4).Build(), "core dump");

    [Fact]
    public void UnknownTypeIsRefused() => Refused(With(b => b.Type = 0xFE00).Build(), "e_type", "ET_EXEC");

    [Fact]
    public void HeaderFlagsAreRefused() => Refused(With(b => b.Flags = 1).Build(), "e_flags");

    [Fact]
    public void WrongHeaderSizeIsRefused() => Refused(With(b => b.EhSize = 52).Build(), "e_ehsize");

    [Fact]
    public void WrongProgramHeaderEntrySizeIsRefused() => Refused(With(b => b.PhEntSize = 32).Build(), "e_phentsize");

    [Fact]
    public void NoProgramHeadersIsRefused() => Refused(With(b => b.PhNum = 0).Build(), "no program headers");

    [Fact]
    public void TooManyProgramHeadersIsRefused() => Refused(With(b => b.PhNum = 65).Build(), "too many program headers", "65");

    [Fact]
    public void ExtendedProgramHeaderCountIsRefused() => Refused(With(b => b.PhNum = 0xFFFF).Build(), "too many program headers");

    [Fact]
    public void ProgramHeaderTableOutsideTheFileIsRefused() => Refused(With(b => b.PhOff = 0x10000).Build(), "program header table", "outside");

    [Fact]
    public void ProgramHeaderTablePartlyOutsideTheFileIsRefused()
    {
        byte[] file = Valid().Build();
        Refused(file[..(64 + 56 * 2 + 10)], "program header table", "outside");
    }

    [Fact]
    public void OverflowingProgramHeaderOffsetIsRefused() => Refused(With(b => b.PhOff = ulong.MaxValue - 8).Build(), "program header table", "outside");

    [Fact]
    public void WrongSectionHeaderEntrySizeIsRefused() => Refused(With(b => { b.ShOff = 64; b.ShEntSize = 40; b.ShNum = 1; }).Build(), "e_shentsize");

    [Fact]
    public void SectionHeaderTableOutsideTheFileIsRefused() => Refused(With(b => { b.ShOff = ulong.MaxValue - 4; b.ShEntSize = 64; b.ShNum = 3; }).Build(), "section header table", "outside");

    // ---- program headers ----------------------------------------------------------------------------------

    [Fact]
    public void DynamicallyLinkedImageIsRefused() =>
        Refused(With(b => b.Segments.Add(new Segment { Type = PtInterp, Flags = PfR, Bytes = "/lib/ld.so\0"u8.ToArray() })).Build(), "dynamically linked", "PT_INTERP");

    [Fact]
    public void ImageWithoutLoadSegmentIsRefused() =>
        Refused(With(b => b.Segments.RemoveAll(s => s.Type == PtLoad)).Build(), "no loadable (PT_LOAD) segment");

    [Fact]
    public void LoadSegmentOutsideTheFileIsRefused() =>
        Refused(With(b => { b.Segments[1].FileSize = 0x10000; b.Segments[1].MemSize = 0x10000; }).Build(), "segment 1", "outside the", "truncated");

    [Fact]
    public void LoadSegmentWithOverflowingFileOffsetIsRefused() =>
        Refused(With(b => b.Segments[0].Offset = ulong.MaxValue - 4).Build(), "segment 0", "outside the");

    [Fact]
    public void TruncatedSegmentBytesAreRefused()
    {
        byte[] file = Valid().Build();
        int textEnd = (int)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(64 + 8)) + 32;
        Refused(file[..(textEnd - 1)], "segment 0", "outside the", "truncated");
    }

    [Fact]
    public void FileSizeLargerThanMemorySizeIsRefused() =>
        Refused(With(b => b.Segments[1].MemSize = 8).Build(), "segment 1", "p_filesz 0x10 is larger than p_memsz 0x8");

    [Fact]
    public void VirtualAddressDifferentFromPhysicalIsRefused() =>
        Refused(With(b => b.Segments[1].PAddr = 0x20_0000).Build(), "segment 1", "p_vaddr", "p_paddr", "identity mapped");

    [Fact]
    public void SegmentInTheHostReservedLowMegabyteIsRefused() =>
        Refused(With(b => b.Segments[1].VAddr = 0xF_F000).Build(), "segment 1", "0xff000", "reserved for the host");

    [Fact]
    public void SegmentStraddlingAddressZeroIsRefused() =>
        Refused(With(b => { b.Segments[1].VAddr = 0; b.Segments[1].MemSize = 0x20_0000; }).Build(), "segment 1", "reserved for the host");

    [Fact]
    public void SegmentWhoseEndOverflowsIsRefused() =>
        Refused(With(b => { b.Segments[1].VAddr = 0xFFFF_FFFF_FFFF_F000; b.Segments[1].MemSize = 0x2000; }).Build(), "segment 1", "overflows 64 bits");

    [Fact]
    public void SegmentBeyondTheLargestGuestMemoryIsRefused() =>
        Refused(With(b => { b.Segments[1].VAddr = 0x10_0000_0000; }).Build(), "segment 1", "largest guest memory");

    [Fact]
    public void AlignmentThatIsNotAPowerOfTwoIsRefused() =>
        Refused(With(b => b.Segments[1].Align = 24).Build(), "segment 1", "power of two");

    [Fact]
    public void AddressAndOffsetDisagreeingModuloAlignmentAreRefused() =>
        Refused(With(b => b.Segments[1].Offset = (ulong)(64 + 56 * 3 + 4)).Build(), "segment 1", "modulo p_align");

    [Fact]
    public void OverlappingSegmentsAreRefusedNamingBoth()
    {
        var ex = Refused(With(b => b.Segments[1].VAddr = TextAddress + 16).Build(), "overlap");
        Assert.Contains("segments 0 (0x100000-0x100020) and 1 (0x100010-0x100110)", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EntryOutsideEverySegmentIsRefused() =>
        Refused(With(b => b.Entry = 0x50_0000).Build(), "entry point 0x500000", "not inside");

    [Fact]
    public void EntryJustPastTheTextSegmentIsRefused() =>
        Refused(With(b => b.Entry = TextAddress + 32).Build(), "entry point", "not inside");

    [Fact]
    public void EntryInANonExecutableSegmentIsRefused() =>
        Refused(With(b => b.Entry = DataAddress).Build(), "entry point", "segment 1", "not executable", "PF_X");

    [Fact]
    public void EntryInTheZeroFilledTailIsRefused() =>
        Refused(With(b => { b.Segments[1].Flags |= PfX; b.Entry = DataAddress + 0x20; }).Build(), "entry point", "zero-filled");

    // ---- notes --------------------------------------------------------------------------------------------

    [Fact]
    public void NoteSegmentOutsideTheFileIsRefused() =>
        Refused(With(b => b.Segments[2].FileSize = 0x100000).Build(), "note segment 2", "outside the");

    [Fact]
    public void NoteWhoseSizesRunPastTheSegmentIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.AddNotes(Note(ElfNote.Name, ElfNote.TypeAbi, AbiDesc(1, 0), descSize: 0xFFFF_FFF0)); }).Build(), "note segment 2", "malformed", "past the end");

    [Fact]
    public void NoteWithHugeNameSizeIsRefused()
    {
        byte[] note = AbiNote(1, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(note, uint.MaxValue);
        Refused(With(b => { b.RemoveNotes(); b.AddNotes(note); }).Build(), "malformed");
    }

    [Fact]
    public void StrayBytesAfterTheLastNoteAreRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.AddNotes(AbiNote(1, 0), [0, 0, 0, 0]); }).Build(), "malformed", "stray bytes");

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
    public void ThirtyTwoBitLinuxExecutableIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.Class = 1; }).Build(), "not a 64-bit ELF file", "ELFCLASS32");

    [Fact]
    public void StaticPieLinuxExecutableParses()
    {
        ElfBuilder b = Linux();
        b.Type = 3;
        b.Segments.Add(new Segment { Type = 2 /* PT_DYNAMIC */, Flags = PfR | PfW, Bytes = new byte[16] });
        Assert.Equal(GuestImageKind.LinuxExecutable, ElfLoader.Parse(b.Build(), Host).Kind);
    }

    [Fact]
    public void SharedObjectWithoutDynamicSegmentIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.Type = 3; }).Build(), "ET_DYN", "static");

    [Fact]
    public void LinuxSegmentBelowTheLowestUserAddressIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.Segments[0].VAddr = 0x1000; b.Segments[0].PAddr = 0x1000; b.Entry = 0x1000; }).Build(), "outside the Linux user address space");

    [Fact]
    public void LinuxSegmentInTheKernelHalfIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.Segments[1].VAddr = 0xffff_8000_0000_0000; b.Segments[1].PAddr = 0xffff_8000_0000_0000; }).Build(), "outside the Linux user address space");

    [Fact]
    public void LinuxExecutableNeedsNoIdentityMapping()
    {
        ElfBuilder b = Linux();
        b.Segments[1].PAddr = 0x5000; // physical addresses mean nothing to a Linux executable
        Assert.Equal(GuestImageKind.LinuxExecutable, ElfLoader.Parse(b.Build(), Host).Kind);
    }

    [Fact]
    public void LinuxEntryOutsideAnExecutableSegmentIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.Entry = DataAddress; }).Build(), "entry point", "not executable");

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
    public void AbiNoteOfTheWrongSizeIsRefused() =>
        Refused(With(b => { b.RemoveNotes(); b.AddNotes(Note(ElfNote.Name, ElfNote.TypeAbi, [1, 0, 0, 0])); }).Build(), "ABI note has 4 bytes", "expected 8");

    [Fact]
    public void DuplicateAbiNoteIsRefused() =>
        Refused(With(b => b.AddNotes(AbiNote(1, 0))).Build(), "more than one Paravirt ABI note");

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

    [Fact]
    public void DuplicateManifestNoteIsRefused() =>
        Refused(With(b => b.AddNotes(ManifestNote())).Build(), "more than one Paravirt device manifest note");

    private static byte[] ManifestImage(byte[] manifestNote) =>
        With(b => { b.RemoveNotes(); b.AddNotes(AbiNote(1, 0), manifestNote); }).Build();
}
