namespace Paravirt.Emulator.Tests;

/// <summary>
/// <see cref="GuestMemory.IsKnownZero"/>: pages of fresh or pooled memory that no tracked write marked are zero
/// without reading them (the identity page tables skip their 63 unused directories on such memory); anything written
/// around the dirty page map makes nothing known.
/// </summary>
public sealed unsafe class KnownZeroMemoryTests
{
    private const ulong Page = 0x5000;

    [Fact]
    public void FreshMemory_IsKnownZero_UntilAPageIsWritten()
    {
        using var memory = new GuestMemory(2UL << 20);
        Assert.True(memory.IsKnownZero(new GuestAddress(Page), 0x2000));

        memory.Write(new GuestAddress(Page + 8), 1UL);

        Assert.False(memory.IsKnownZero(new GuestAddress(Page), 0x1000));
        Assert.False(memory.IsKnownZero(new GuestAddress(Page - 0x1000), 0x2000));
        Assert.True(memory.IsKnownZero(new GuestAddress(Page + 0x1000), 0x1000));
        Assert.False(memory.IsKnownZero(new GuestAddress(memory.Size - 0x1000), 0x2000)); // outside: not known
    }

    [Fact]
    public void AfterTheRawHostAddressIsHandedOut_NothingIsKnownZero()
    {
        using var memory = new GuestMemory(2UL << 20);
        ((byte*)memory.HostAddress)[Page] = 1; // a write the dirty page map never sees

        Assert.False(memory.IsKnownZero(new GuestAddress(Page), 0x1000));
    }

    [Fact]
    public void AfterTheDirtyPageMapIsCleared_NothingIsKnownZero()
    {
        using var memory = new GuestMemory(2UL << 20);
        memory.Write(new GuestAddress(Page), 1UL);
        memory.ClearDirtyPages(); // the page still holds 1, unmarked

        Assert.False(memory.IsKnownZero(new GuestAddress(Page), 0x1000));
    }

    [Fact]
    public void IdentityPageTables_ClearAnUnusedDirectory_OnMemoryNotKnownToBeZero()
    {
        // Memory whose unused page directory holds garbage written around the dirty map (as a snapshot's or a
        // hardware backend's memory may): the tables must still come out exactly as on fresh memory.
        using var memory = new GuestMemory(4UL << 20);
        ulong unused = GuestLayout.FirstPd + (5 * 0x1000);
        new Span<byte>((byte*)memory.HostAddress + unused, 0x1000).Fill(0xCC);

        LongModeSetup.Write(memory);

        Assert.True(memory.GetSpan(new GuestAddress(unused), 0x1000).IndexOfAnyExcept((byte)0) < 0, "the unused directory still holds garbage");
    }
}
