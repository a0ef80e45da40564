namespace Paravirt.Hypervisor.Tests.Memory;

public sealed class GuestMemoryTests : IDisposable
{
    private const ulong Size = GuestMemory.MinSize;
    private readonly GuestMemory _memory = new(Size);

    public void Dispose() => _memory.Dispose();

    private static GuestAddress A(ulong value) => new(value);

    // ---- construction -----------------------------------------------------------------------------------------

    [Theory]
    [InlineData(0UL)]
    [InlineData(GuestMemory.MinSize - 0x1000)]
    [InlineData(GuestMemory.MinSize + 1)]          // not page aligned
    [InlineData(GuestMemory.MinSize + 0x800)]      // not page aligned
    [InlineData(GuestMemory.MaxSize + 0x1000)]
    [InlineData(ulong.MaxValue)]
    public void ConstructorRefusesBadSizes(ulong size)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new GuestMemory(size));
        Assert.Contains("multiple of 4 KiB", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ConstructorAcceptsTheSmallestSizeAndMemoryStartsZeroed()
    {
        Assert.Equal(GuestMemory.MinSize, _memory.Size);
        Assert.True(_memory.GetSpan(A(0), Size).IndexOfAnyExcept((byte)0) < 0);
        Assert.NotEqual(0, _memory.HostAddress);
        Assert.Equal(0, _memory.HostAddress % 4096);
    }

    [Fact]
    public void ConstructorAcceptsAPageMultipleAboveTheMinimum()
    {
        using var m = new GuestMemory(GuestMemory.MinSize + 0x1000);
        Assert.Equal(GuestMemory.MinSize + 0x1000, m.Size);
    }

    // ---- range checks at the edges ------------------------------------------------------------------------------

    [Theory]
    [InlineData(0UL, 0UL, true)]
    [InlineData(0UL, Size, true)]
    [InlineData(Size, 0UL, true)]               // empty range at the very end
    [InlineData(Size - 1, 1UL, true)]           // last byte
    [InlineData(Size, 1UL, false)]              // one past the end
    [InlineData(Size - 1, 2UL, false)]
    [InlineData(0UL, Size + 1, false)]
    [InlineData(Size + 1, 0UL, false)]          // empty range beyond the end
    [InlineData(ulong.MaxValue, 0UL, false)]
    [InlineData(ulong.MaxValue, 2UL, false)]    // address + length wraps to 1
    [InlineData(0x10UL, ulong.MaxValue - 8, false)] // wraps to 7
    [InlineData(0xFFFF_FFFF_FFFF_FFF0UL, 0x20UL, false)]
    public void RangeChecksAreExactAndOverflowSafe(ulong address, ulong length, bool inside)
    {
        Assert.Equal(inside, _memory.Contains(A(address), length));
        Assert.Equal(inside, _memory.TryGetSpan(A(address), length, out Span<byte> span));
        if (inside)
        {
            Assert.Equal((int)length, span.Length);
        }
        else
        {
            Assert.True(span.IsEmpty);
            var ex = Assert.Throws<GuestMemoryException>(() => _memory.GetSpan(A(address), length).Length);
            Assert.Contains("outside guest memory", ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void TryGetSpanRefusesLengthsBeyondIntMaxValueEvenInsideMemory()
    {
        using var big = new GuestMemory(4UL << 30); // reserved lazily: costs no RAM until touched
        Assert.True(big.Contains(A(0), (ulong)int.MaxValue + 1));
        Assert.False(big.TryGetSpan(A(0), (ulong)int.MaxValue + 1, out _));
        Assert.Throws<GuestMemoryException>(() => big.GetSpan(A(0), (ulong)int.MaxValue + 1).Length);
        Assert.True(big.TryGetSpan(A(1), int.MaxValue, out Span<byte> s));
        Assert.Equal(int.MaxValue, s.Length);
    }

    [Fact]
    public void SpansAliasGuestMemory()
    {
        _memory.GetSpan(A(0x1234), 4).Fill(0x5A);
        Assert.Equal(new byte[] { 0, 0x5A, 0x5A, 0x5A, 0x5A, 0 }, _memory.GetSpan(A(0x1233), 6).ToArray());
    }

    // ---- byte ranges --------------------------------------------------------------------------------------------

    [Fact]
    public void WriteThenReadRoundTrips()
    {
        byte[] data = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        _memory.Write(A(0x10_0000), data);
        byte[] back = new byte[9];
        _memory.Read(A(0x10_0000), back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void TryWriteThenTryReadRoundTripsAtTheLastBytes()
    {
        byte[] data = [0xDE, 0xAD, 0xBE, 0xEF];
        Assert.True(_memory.TryWrite(A(Size - 4), data));
        byte[] back = new byte[4];
        Assert.True(_memory.TryRead(A(Size - 4), back));
        Assert.Equal(data, back);
    }

    [Fact]
    public void TryFormsRefuseOutOfRangeWithoutSideEffects()
    {
        byte[] back = [7, 7, 7, 7];
        Assert.False(_memory.TryWrite(A(Size - 3), new byte[] { 1, 2, 3, 4 }));
        Assert.True(_memory.GetSpan(A(Size - 3), 3).IndexOfAnyExcept((byte)0) < 0, "a refused write must write nothing");
        Assert.False(_memory.TryRead(A(Size - 3), back));
        Assert.Equal(new byte[] { 7, 7, 7, 7 }, back);
        Assert.False(_memory.TryRead(A(ulong.MaxValue - 1), back));
        Assert.False(_memory.TryWrite(A(ulong.MaxValue - 1), back));
    }

    [Fact]
    public void ThrowingFormsThrowGuestMemoryExceptionWithAMessage()
    {
        void Check(Action action)
        {
            var ex = Assert.Throws<GuestMemoryException>(action);
            Assert.Contains("outside guest memory", ex.Message, StringComparison.Ordinal);
            Assert.Contains($"0x{Size:x}", ex.Message, StringComparison.Ordinal);
        }

        Check(() => _memory.Read(A(Size - 1), new byte[2]));
        Check(() => _memory.Write(A(Size), new byte[1]));
        Check(() => _ = _memory.Read<ulong>(A(Size - 7)));
        Check(() => _memory.Write(A(Size - 4), 0UL));
        Check(() => _memory.WriteUInt64(A(ulong.MaxValue - 3), 1));
        Check(() => _memory.Clear(A(Size - 4), 8));
        Check(() => _ = _memory.GetSpan(A(0xFFFF_FFFF_FFFF_FFF0), 0x20).Length);
    }

    // ---- values ---------------------------------------------------------------------------------------------

    private struct Pair
    {
        public uint A;
        public ulong B;
    }

    [Fact]
    public void ValuesRoundTripAndAreLittleEndian()
    {
        _memory.Write(A(0x2000), 0x1122_3344_5566_7788UL);
        Assert.Equal(0x1122_3344_5566_7788UL, _memory.Read<ulong>(A(0x2000)));
        Assert.Equal(0x88, _memory.GetSpan(A(0x2000), 1)[0]);

        _memory.WriteUInt64(A(0x3000), 0x0102_0304_0506_0708);
        Assert.Equal(new byte[] { 8, 7, 6, 5, 4, 3, 2, 1 }, _memory.GetSpan(A(0x3000), 8).ToArray());

        var pair = new Pair { A = 5, B = 6 };
        Assert.True(_memory.TryWrite(A(Size - 16), in pair));
        Assert.True(_memory.TryRead(A(Size - 16), out Pair back));
        Assert.Equal(pair, back);
    }

    [Fact]
    public void TryReadOfAValueOutOfRangeReturnsDefault()
    {
        Assert.False(_memory.TryRead(A(Size - 4), out ulong value));
        Assert.Equal(0UL, value);
        Assert.False(_memory.TryWrite(A(Size - 4), 1UL));
    }

    [Fact]
    public void ReadValueIsACopy()
    {
        _memory.Write(A(0x5000), 41u);
        uint copy = _memory.Read<uint>(A(0x5000));
        _memory.Write(A(0x5000), 99u);
        Assert.Equal(41u, copy);
    }

    [Fact]
    public void ClearZeroesExactlyTheRange()
    {
        _memory.GetSpan(A(0x1000), 0x100).Fill(0xFF);
        _memory.Clear(A(0x1010), 0x20);
        Span<byte> s = _memory.GetSpan(A(0x1000), 0x100);
        Assert.Equal(0xFF, s[0x0F]);
        Assert.True(s.Slice(0x10, 0x20).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0xFF, s[0x30]);
        _memory.Clear(A(0), Size); // whole memory
        _memory.Clear(A(Size), 0); // empty at the end
    }

    // ---- disposal -------------------------------------------------------------------------------------------

    [Fact]
    public void DisposedMemoryRefusesAccessAndDisposeIsIdempotent()
    {
        var m = new GuestMemory(GuestMemory.MinSize);
        m.Dispose();
        Assert.Throws<ObjectDisposedException>(() => m.HostAddress);
        Assert.False(m.TryGetSpan(A(0), 1, out _));
        Assert.False(m.TryWrite(A(0), 1u));
        Assert.Throws<GuestMemoryException>(() => m.GetSpan(A(0), 1).Length);
        m.Dispose();
    }
}
