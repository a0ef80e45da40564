using static Paravirt.Hypervisor.Tests.Loading.ElfBuilder;

namespace Paravirt.Hypervisor.Tests.Loading;

public sealed class ElfLoaderFileAndLoadTests() : TestWithTempDirectory("loader")
{
    private string WriteFile(string name, byte[] bytes)
    {
        string path = Path.Combine(Dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ---- LoadFile -------------------------------------------------------------------------------------------

    [Fact]
    public void LoadFileParsesAValidImage()
    {
        string path = WriteFile("guest.elf", Valid().Build());
        Assert.Equal(TextAddress, ElfLoader.LoadFile(path, AbiVersion.Current).Entry);
    }

    [Fact]
    public void LoadFileOfAMissingFileSaysSo()
    {
        string path = Path.Combine(Dir, "missing.elf");
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadFile(path, AbiVersion.Current));
        Assert.Equal($"cannot read guest image '{path}': the file does not exist", ex.Message);
    }

    [Fact]
    public void LoadFileInAMissingDirectorySaysSo()
    {
        string path = Path.Combine(Dir, "nope", "guest.elf");
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadFile(path, AbiVersion.Current));
        Assert.StartsWith($"cannot read guest image '{path}': the file does not exist", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadFileOfADirectorySaysSo()
    {
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadFile(Dir, AbiVersion.Current));
        Assert.Equal($"cannot read guest image '{Dir}': it is a directory, not a file", ex.Message);
    }

    [Fact]
    public void LoadFileWithAnEmptyPathSaysSo()
    {
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadFile("", AbiVersion.Current));
        Assert.Contains("cannot read guest image", ex.Message, StringComparison.Ordinal);
    }

    [UnprivilegedUnixFact]
    public void LoadFileWithoutReadPermissionSaysSo()
    {
        string path = WriteFile("secret.elf", Valid().Build());
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.None);
        }
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadFile(path, AbiVersion.Current));
        Assert.Equal($"cannot read guest image '{path}': permission denied", ex.Message);
    }

    [Fact]
    public void LoadFileRefusesAFileOverTheSizeCap()
    {
        string path = Path.Combine(Dir, "huge.elf");
        using (var fs = new FileStream(path, FileMode.CreateNew))
        {
            fs.SetLength(ElfLoader.MaxFileSize + 1); // sparse: costs no disk
        }
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadFile(path, AbiVersion.Current));
        Assert.Contains($"cannot read guest image '{path}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("larger than the 256 MiB limit", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadFileNamesTheFileWhenTheImageIsBroken()
    {
        string path = WriteFile("text.elf", "#!/bin/sh\necho hi\n"u8.ToArray());
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadFile(path, AbiVersion.Current));
        Assert.StartsWith($"guest image '{path}': not an ELF file", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', ex.Message);
    }

    // ---- LoadInto -------------------------------------------------------------------------------------------

    [Fact]
    public void LoadIntoCopiesFileBytesAndZeroesTheRestOfEachSegment()
    {
        GuestImage image = Parse(Valid().Build());
        using var memory = new GuestMemory(GuestMemory.MinSize);
        // Dirty the whole image range first so that zeroing is observable.
        memory.GetSpan(new GuestAddress(TextAddress), 0x2000).Fill(0xAA);

        ulong end = ElfLoader.LoadInto(image, memory);

        Assert.Equal(DataAddress + 0x100, end);
        Assert.Equal(Pattern(32, 0x90), memory.GetSpan(new GuestAddress(TextAddress), 32).ToArray());
        Assert.Equal(Pattern(16, 0x40), memory.GetSpan(new GuestAddress(DataAddress), 16).ToArray());
        Assert.True(memory.GetSpan(new GuestAddress(DataAddress + 16), 0x100 - 16).IndexOfAnyExcept((byte)0) < 0, "bss not zeroed");
        // Bytes outside the segments are left alone.
        Assert.Equal(0xAA, memory.GetSpan(new GuestAddress(TextAddress + 32), 1)[0]);
        Assert.Equal(0xAA, memory.GetSpan(new GuestAddress(DataAddress + 0x100), 1)[0]);
    }

    [Fact]
    public void LoadIntoHandlesABssOnlySegmentWhoseFileOffsetIsPastTheFile()
    {
        var b = Valid();
        b.AddLoad(0x10_4000, [], 0x3000, PfR | PfW).Offset = 0xFFFF_FFFF; // ld writes p_offset 0 for such segments; any value must be harmless
        GuestImage image = Parse(b.Build());
        using var memory = new GuestMemory(GuestMemory.MinSize);
        memory.GetSpan(new GuestAddress(0x10_4000), 0x3000).Fill(0x55);

        Assert.Equal(0x10_7000UL, ElfLoader.LoadInto(image, memory));
        Assert.True(memory.GetSpan(new GuestAddress(0x10_4000), 0x3000).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void LoadIntoRefusesAnImageLargerThanGuestMemory()
    {
        var b = Valid();
        b.AddLoad(0x30_0000, [1], 0x8_0000, PfR | PfW);
        GuestImage image = Parse(b.Build());
        using var memory = new GuestMemory(GuestMemory.MinSize);

        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadInto(image, memory));
        Assert.Equal("the image needs 4 MiB but guest memory is 2 MiB; use a larger --memory", ex.Message);
    }

    [Fact]
    public void LoadIntoRefusesASegmentEndingOneBytePastMemory()
    {
        var b = new ElfBuilder();
        b.AddLoad(TextAddress, [0x90], GuestMemory.MinSize - TextAddress + 1, PfR | PfX | PfW);
        b.AddNotes(AbiNote(1, 0));
        GuestImage image = Parse(b.Build());
        using var memory = new GuestMemory(GuestMemory.MinSize);
        Assert.Throws<ImageFormatException>(() => ElfLoader.LoadInto(image, memory));
    }

    [Fact]
    public void LoadIntoAcceptsASegmentEndingExactlyAtTheEndOfMemory()
    {
        var b = new ElfBuilder();
        b.AddLoad(TextAddress, [0x90], GuestMemory.MinSize - TextAddress, PfR | PfX | PfW);
        b.AddNotes(AbiNote(1, 0));
        using var memory = new GuestMemory(GuestMemory.MinSize);
        Assert.Equal(GuestMemory.MinSize, ElfLoader.LoadInto(Parse(b.Build()), memory));
    }

    [Fact]
    public void LoadIntoRefusesAHandMadeImageWhoseFileRangeIsOutsideItsBytes()
    {
        // GuestImage's constructor is internal: only the parser makes them, but LoadInto still checks.
        var image = new GuestImage(new byte[16], TextAddress, [new ImageSegment(TextAddress, 8, 16, 16, PfX)], AbiVersion.Current, []);
        using var memory = new GuestMemory(GuestMemory.MinSize);
        var ex = Assert.Throws<ImageFormatException>(() => ElfLoader.LoadInto(image, memory));
        Assert.Contains("corrupt", ex.Message, StringComparison.Ordinal);
    }

    private static GuestImage Parse(byte[] file) => ElfLoader.Parse(file, AbiVersion.Current);
}
