namespace Paravirt.Hypervisor.Tests.Memory;

public sealed class LongModeSetupTests
{
    private const ulong PresentWritable = 0x3, Large = 0x80;

    private static ulong Entry(GuestMemory m, ulong address) => m.Read<ulong>(new GuestAddress(address));

    [Fact]
    public void IdentityMapsSixtyFourMiBWithTwoMiBPages()
    {
        using var memory = new GuestMemory(64UL << 20);
        memory.GetSpan(new GuestAddress(GuestLayout.Pml4), (2 + GuestLayout.PdCount) * 0x1000UL).Fill(0xFF); // stale tables must be cleared

        LongModeState state = LongModeSetup.Write(memory);

        Assert.Equal(GuestLayout.Pdpt | PresentWritable, Entry(memory, GuestLayout.Pml4));
        for (ulong i = 1; i < 512; i++)
        {
            Assert.Equal(0UL, Entry(memory, GuestLayout.Pml4 + i * 8));
        }
        Assert.Equal(GuestLayout.FirstPd | PresentWritable, Entry(memory, GuestLayout.Pdpt));
        Assert.Equal(0UL, Entry(memory, GuestLayout.Pdpt + 8)); // only one GiB
        for (ulong j = 0; j < 32; j++)
        {
            Assert.Equal((j << 21) | PresentWritable | Large, Entry(memory, GuestLayout.FirstPd + j * 8));
        }
        Assert.Equal(0UL, Entry(memory, GuestLayout.FirstPd + 32 * 8)); // nothing mapped past the end of memory
        Assert.Equal(0UL, Entry(memory, GuestLayout.FirstPd + 0x1000));

        Assert.Equal(GuestLayout.Pml4, state.Cr3);
        Assert.Equal(LongModeSetup.Cr0, state.Cr0);
        Assert.Equal(LongModeSetup.Cr4, state.Cr4);
        Assert.Equal(LongModeSetup.Efer, state.Efer);
        Assert.True((state.Cr0 & 0x8000_0001) == 0x8000_0001, "PE and PG");
        Assert.True((state.Cr4 & 0x20) != 0, "PAE");
        Assert.True((state.Efer & 0x500) == 0x500, "LME and LMA");
    }

    [Fact]
    public void MemoryNotAMultipleOfTwoMiBAndOverAGiBMapsItsLastPartialPage()
    {
        ulong size = (2UL << 30) + 0x1000; // 2 GiB + 4 KiB: three PDs, the last maps one 2 MiB page
        using var memory = new GuestMemory(size);

        LongModeSetup.Write(memory);

        for (ulong i = 0; i < 3; i++)
        {
            Assert.Equal((GuestLayout.FirstPd + i * 0x1000) | PresentWritable, Entry(memory, GuestLayout.Pdpt + i * 8));
        }
        Assert.Equal(0UL, Entry(memory, GuestLayout.Pdpt + 3 * 8));
        ulong pd1 = GuestLayout.FirstPd + 0x1000;
        Assert.Equal((1UL << 30) | (511UL << 21) | PresentWritable | Large, Entry(memory, pd1 + 511 * 8));
        ulong pd2 = GuestLayout.FirstPd + 0x2000;
        Assert.Equal((2UL << 30) | PresentWritable | Large, Entry(memory, pd2));
        Assert.Equal(0UL, Entry(memory, pd2 + 8));
    }

    [Fact]
    public void TheLargestMemoryUsesEveryPageDirectory()
    {
        using var memory = new GuestMemory(GuestMemory.MaxSize); // reserved lazily: only the tables are touched
        LongModeSetup.Write(memory);
        ulong lastPd = GuestLayout.FirstPd + (GuestLayout.PdCount - 1) * 0x1000UL;
        Assert.Equal(lastPd | PresentWritable, Entry(memory, GuestLayout.Pdpt + (GuestLayout.PdCount - 1) * 8UL));
        Assert.Equal((GuestMemory.MaxSize - (2UL << 20)) | PresentWritable | Large, Entry(memory, lastPd + 511 * 8));
        Assert.True(lastPd + 0x1000 <= GuestLayout.ReservedEnd, "the tables fit below the image");
    }

    /// <summary>Under PVM the guest's supervisor mode runs at hardware CPL 3: every entry must allow user access.</summary>
    [Fact]
    public void UserPagesSetTheUserBitInEveryEntryAndChangeNothingElse()
    {
        using var plain = new GuestMemory(64UL << 20);
        using var user = new GuestMemory(64UL << 20);
        LongModeState a = LongModeSetup.Write(plain);
        LongModeState b = LongModeSetup.Write(user, userPages: true);

        Assert.Equal(a, b);
        const ulong User = 0x4;
        Assert.Equal(Entry(plain, GuestLayout.Pml4) | User, Entry(user, GuestLayout.Pml4));
        Assert.Equal(Entry(plain, GuestLayout.Pdpt) | User, Entry(user, GuestLayout.Pdpt));
        for (ulong j = 0; j < 512; j++)
        {
            ulong p = Entry(plain, GuestLayout.FirstPd + j * 8), u = Entry(user, GuestLayout.FirstPd + j * 8);
            Assert.Equal(p == 0 ? 0 : p | User, u);
        }
        Assert.Equal(0UL, Entry(plain, GuestLayout.Pml4) & User);
    }

    [Fact]
    public void WritesTheFlatGdt()
    {
        using var memory = new GuestMemory(GuestMemory.MinSize);

        LongModeState state = LongModeSetup.Write(memory);

        ulong[] expected = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0x0000_8B00_0000_0067, 0];
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], Entry(memory, GuestLayout.Gdt + (ulong)i * 8));
        }
        Assert.Equal(GuestLayout.Gdt, state.GdtBase);
        Assert.Equal(expected.Length * 8 - 1, state.GdtLimit);
        Assert.Equal(0x08, state.CodeSelector);
        Assert.Equal(0x10, state.DataSelector);
        Assert.Equal(0x18, state.TssSelector);
        // The code descriptor is a 64-bit (L=1), present, ring-0, executable segment.
        ulong code = expected[1];
        Assert.True((code >> 53 & 1) == 1 && (code >> 47 & 1) == 1 && (code >> 45 & 3) == 0 && (code >> 43 & 1) == 1);
    }
}
