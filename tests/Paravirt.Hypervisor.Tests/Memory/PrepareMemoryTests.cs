namespace Paravirt.Hypervisor.Tests.Memory;

public sealed class PrepareMemoryTests : IDisposable
{
    private readonly GuestMemory _memory = new(8UL << 20);

    public void Dispose() => _memory.Dispose();

    private ReadOnlySpan<byte> Bytes(ulong address, ulong length) => _memory.GetSpan(new GuestAddress(address), length);

    [Fact]
    public void WritesTheHypercallPage()
    {
        _memory.GetSpan(new GuestAddress(GuestLayout.HypercallPage), HypercallPage.Size).Fill(0xCC);

        GuestRunner.PrepareMemory(_memory, 0x10_2000, []);

        ReadOnlySpan<byte> page = Bytes(GuestLayout.HypercallPage, HypercallPage.Size);
        Assert.Equal(new byte[] { 0xE6, 0xE2, 0xC3 }, page[..3].ToArray()); // out 0xE2, al; ret
        Assert.True(page[3..(int)HypercallPage.MagicOffset].IndexOfAnyExcept((byte)0) < 0, "the rest of the page is zero");
        Assert.Equal(0x43485650u, BinaryPrimitives.ReadUInt32LittleEndian(page[0xFF8..]));
        Assert.Equal("PVHC"u8.ToArray(), page.Slice(0xFF8, 4).ToArray());
        Assert.Equal(AbiVersion.Current.Packed, BinaryPrimitives.ReadUInt32LittleEndian(page[0xFFC..]));
    }

    [Fact]
    public void WritesTheBootInfo()
    {
        byte[] cmd = Encoding.UTF8.GetBytes("console=on disk0=ro");

        GuestRunner.PrepareMemory(_memory, 0x10_1234, cmd);

        // Raw offsets, as the guest's C header sees them.
        ReadOnlySpan<byte> b = Bytes(GuestLayout.BootInfo, BootInfo.CurrentSize);
        Assert.Equal(80u, BinaryPrimitives.ReadUInt32LittleEndian(b));
        Assert.Equal(AbiVersion.Current.Major, BinaryPrimitives.ReadUInt16LittleEndian(b[4..]));
        Assert.Equal(AbiVersion.Current.Minor, BinaryPrimitives.ReadUInt16LittleEndian(b[6..]));
        Assert.Equal(GuestLayout.HypercallPage, BinaryPrimitives.ReadUInt64LittleEndian(b[8..]));
        Assert.Equal(_memory.Size, BinaryPrimitives.ReadUInt64LittleEndian(b[16..]));
        Assert.Equal(0x10_2000UL, BinaryPrimitives.ReadUInt64LittleEndian(b[24..])); // heap start page aligned up
        Assert.Equal(GuestLayout.CommandLine, BinaryPrimitives.ReadUInt64LittleEndian(b[32..]));
        Assert.Equal((uint)cmd.Length, BinaryPrimitives.ReadUInt32LittleEndian(b[40..]));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(b[44..]));
        // The base offer of every session (GuestSession.BaseFeatures): the boot info must say what the session answers.
        Assert.Equal((ulong)(FeatureBits.Console | FeatureBits.WallClock | FeatureBits.Poll | FeatureBits.Entropy), BinaryPrimitives.ReadUInt64LittleEndian(b[48..]));
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(b[56..]));
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(b[64..])); // no boot modules for a Paravirt image
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(b[72..]));
    }

    [Theory]
    [InlineData(0x10_2000UL, 0x10_2000UL)] // already aligned: unchanged
    [InlineData(0x10_2001UL, 0x10_3000UL)]
    [InlineData(0x10_0000UL, 0x10_0000UL)]
    public void HeapStartIsTheImageEndRoundedUpToAPage(ulong imageEnd, ulong heapStart)
    {
        GuestRunner.PrepareMemory(_memory, imageEnd, []);
        Assert.Equal(heapStart, _memory.Read<BootInfo>(new GuestAddress(GuestLayout.BootInfo)).HeapStart);
    }

    [Fact]
    public void WritesTheCommandLineNulTerminatedOverStaleBytes()
    {
        _memory.GetSpan(new GuestAddress(GuestLayout.CommandLine), (ulong)GuestLayout.CommandLineMax).Fill((byte)'x');
        byte[] cmd = Encoding.UTF8.GetBytes("hello wörld");

        GuestRunner.PrepareMemory(_memory, 0x10_1000, cmd);

        ReadOnlySpan<byte> area = Bytes(GuestLayout.CommandLine, (ulong)GuestLayout.CommandLineMax);
        Assert.Equal(cmd, area[..cmd.Length].ToArray());
        Assert.True(area[cmd.Length..].IndexOfAnyExcept((byte)0) < 0, "NUL terminated and the stale bytes cleared");
    }

    [Fact]
    public void EmptyCommandLineIsAddressZero()
    {
        GuestRunner.PrepareMemory(_memory, 0x10_1000, []);
        BootInfo info = _memory.Read<BootInfo>(new GuestAddress(GuestLayout.BootInfo));
        Assert.Equal(0UL, info.CommandLine);
        Assert.Equal(0u, info.CommandLineLength);
        Assert.Equal(0, Bytes(GuestLayout.CommandLine, 1)[0]);
    }

    [Fact]
    public void LongestCommandLineFits()
    {
        byte[] cmd = new byte[GuestLayout.CommandLineMax - 1];
        cmd.AsSpan().Fill((byte)'a');
        GuestRunner.PrepareMemory(_memory, 0x10_1000, cmd);
        Assert.Equal(0, Bytes(GuestLayout.CommandLine + (ulong)cmd.Length, 1)[0]);
        Assert.Equal((uint)cmd.Length, _memory.Read<BootInfo>(new GuestAddress(GuestLayout.BootInfo)).CommandLineLength);
    }
}
