namespace Paravirt.Hypervisor.Tests.Memory;

/// <summary>The host-side page-table walker over hand-built tables: every page size, every way a walk can fail, the bounds.</summary>
public sealed class GuestPageWalkerTests : IDisposable
{
    private const ulong P = 1, W = 2, U = 4, PS = 0x80, NX = 1UL << 63;
    private const ulong Cr0 = LongModeSetup.Cr0, Cr4 = LongModeSetup.Cr4, Efer = LongModeSetup.Efer;
    private const ulong Pml4 = 0x10_000, Pdpt = 0x11_000, Pd = 0x12_000, Pt = 0x13_000;
    private readonly GuestMemory _memory = new(16UL << 20);

    public void Dispose() => _memory.Dispose();

    private void Set(ulong table, ulong index, ulong entry) => _memory.WriteUInt64(new GuestAddress(table + (index * 8)), entry);

    private bool Translate(ulong linear, out PageMapping m, ulong cr4 = Cr4) =>
        GuestPageWalker.TryTranslate(_memory, Cr0, Pml4, cr4, Efer, linear, out m);

    [Fact]
    public void Walks_4k_2m_and_1g_pages_and_keeps_the_offset()
    {
        Set(Pml4, 0, Pdpt | P | W);
        Set(Pdpt, 0, Pd | P | W);
        Set(Pd, 0, Pt | P | W);
        Set(Pt, 5, 0x40_0000 | P | W | U);          // 0x5000 -> 0x400000 (4 KiB)
        Set(Pd, 3, 0x20_0000 | P | PS | NX);        // 0x600000 -> 0x200000 (2 MiB, read-only, no execute)
        Set(Pdpt, 1, 0 | P | W | PS);               // 0x40000000 -> 0 (1 GiB)

        Assert.True(Translate(0x5123, out PageMapping a));
        Assert.Equal(new PageMapping(0x40_0123, 0x1000, Writable: true, User: false, Executable: true), a); // PML4E/PDE lack U

        Assert.True(Translate(0x6F_FFFF, out PageMapping b));
        Assert.Equal(0x2F_FFFFUL, b.Physical);
        Assert.Equal(2UL << 20, b.PageSize);
        Assert.False(b.Writable);
        Assert.False(b.Executable);

        Assert.True(Translate(0x4000_1234, out PageMapping c));
        Assert.Equal(0x1234UL, c.Physical);
        Assert.Equal(1UL << 30, c.PageSize);
    }

    [Fact]
    public void Not_present_entries_non_canonical_addresses_and_tables_outside_memory_are_not_mapped()
    {
        Set(Pml4, 0, Pdpt | P | W);
        Set(Pdpt, 0, Pd | P | W);
        Set(Pd, 0, 0x7FFF_F000 | P | W);            // a page table far outside the 16 MiB of guest memory
        Set(Pd, 1, Pt | W);                          // not present

        Assert.False(Translate(0x1000, out _));
        Assert.False(Translate(0x20_0000, out _));
        Assert.False(Translate(0x8000_0000_0000, out _));          // bit 47 set, upper bits clear: not canonical
        Assert.False(Translate(0xFFFF_8000_0000_0000, out _));     // canonical, but PML4 entry 256 is empty
        Assert.False(GuestPageWalker.TryTranslate(_memory, Cr0, 0xFFFF_F000_0000, Cr4, Efer, 0, out _)); // CR3 outside memory
    }

    [Fact]
    public void Paging_off_is_the_identity_and_32_bit_paging_is_refused()
    {
        Assert.True(GuestPageWalker.TryTranslate(_memory, 0x11, 0, 0, 0, 0xABCDE, out PageMapping m));
        Assert.Equal(0xABCDEUL, m.Physical);
        Assert.False(GuestPageWalker.TryTranslate(_memory, Cr0, Pml4, 0, 0, 0x1000, out _)); // PG without long mode
    }

    [Fact]
    public void Five_level_paging_uses_cr4_la57()
    {
        const ulong Pml5 = Pml4;
        const ulong La57 = 1 << 12;
        Set(Pml5, 1, Pdpt | P | W);                   // PML5 entry 1: linear bit 48
        Set(Pdpt, 0, Pd | P | W);                     // here: the "PML4" level
        Set(Pd, 0, Pt | P | W);                       // the "PDPT" level
        Set(Pt, 0, 0x20_0000 | P | W | PS);           // the "PD" level: a 2 MiB page
        Assert.True(Translate((1UL << 48) | 0x1234, out PageMapping m, Cr4 | La57));
        Assert.Equal(0x20_1234UL, m.Physical);
        Assert.Equal(2UL << 20, m.PageSize);
        Assert.False(Translate(0x1234, out _, Cr4 | La57));
    }

    [Fact]
    public void The_identity_map_the_hardware_backends_load_translates_every_address_to_itself()
    {
        using var memory = new GuestMemory(64UL << 20);
        LongModeState s = LongModeSetup.Write(memory);
        foreach (ulong a in new ulong[] { 0, 0x1000, 0x10_0000, 0x123_4567, (64UL << 20) - 1 })
        {
            Assert.True(GuestPageWalker.TryTranslate(memory, s.Cr0, s.Cr3, s.Cr4, s.Efer, a, out PageMapping m));
            Assert.Equal(a, m.Physical);
        }
        Assert.False(GuestPageWalker.TryTranslate(memory, s.Cr0, s.Cr3, s.Cr4, s.Efer, 64UL << 20, out _));
        List<MappedRange> ranges = GuestPageWalker.EnumerateMappings(memory, s.Cr0, s.Cr3, s.Cr4, s.Efer, 16, out bool truncated);
        Assert.False(truncated);
        Assert.Equal([new MappedRange(0, 0, 64UL << 20, true, true)], ranges); // 32 large pages merged into one range
    }

    [Fact]
    public void Enumeration_splits_on_permissions_and_drops_frames_outside_memory()
    {
        Set(Pml4, 0, Pdpt | P | W);
        Set(Pml4, 511, Pdpt | P);                     // the same PDPT again in the upper half, read-only
        Set(Pdpt, 0, Pd | P | W);
        Set(Pd, 0, 0 | P | W | PS);
        Set(Pd, 1, 0x20_0000 | P | PS);               // read-only neighbour: a second range
        Set(Pd, 2, 0x4000_0000 | P | W | PS);         // frame beyond memory: dropped
        List<MappedRange> ranges = GuestPageWalker.EnumerateMappings(_memory, Cr0, Pml4, Cr4, Efer, 16, out bool truncated);
        Assert.False(truncated);
        Assert.Equal(
        [
            new MappedRange(0, 0, 2UL << 20, true, true),
            new MappedRange(2UL << 20, 2UL << 20, 2UL << 20, false, true),
            new MappedRange(0xFFFF_FF80_0000_0000, 0, 4UL << 20, false, true), // sign-extended upper half, all read-only
        ], ranges);
    }

    [Fact]
    public void Hostile_tables_that_alias_one_table_everywhere_stay_bounded()
    {
        // Every entry of one page points at that page itself: a walk would visit 512^4 entries without the bound.
        for (ulong i = 0; i < 512; i++)
        {
            Set(Pml4, i, Pml4 | P | W);
        }
        var started = System.Diagnostics.Stopwatch.StartNew();
        List<MappedRange> ranges = GuestPageWalker.EnumerateMappings(_memory, Cr0, Pml4, Cr4, Efer, 64, out bool truncated);
        Assert.True(truncated);
        Assert.True(ranges.Count <= 64);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(10), $"took {started.Elapsed}");
        Assert.True(Translate(0x1234, out PageMapping m)); // a single walk is four reads, aliasing or not
        Assert.Equal(Pml4 | 0x234, m.Physical);
    }
}
