namespace Paravirt.Emulator.Tests;

/// <summary>The code cache's block map (<see cref="BlockMap"/>): buckets chained through the blocks themselves.</summary>
public sealed class BlockMapTests
{
    private static Block NewBlock(ulong linear, ulong physical) => new(linear, linear + 1, [], [], physical);

    [Fact]
    public void OneBucket_KeysThatDifferInOnePart_AreEachTheirOwnEntry()
    {
        // A 1-bucket map that never grows past 4 buckets here: every lookup walks a chain of other keys.
        var map = new BlockMap(1);
        Block a = NewBlock(0x40_0000, 0x1000), b = NewBlock(0x40_0000, 0x2000), c = NewBlock(0x40_1000, 0x1000), d = NewBlock(0x40_1000, 0x2000);
        foreach (Block block in new[] { a, b, c, d })
        {
            Assert.Null(map.Set(block));
        }
        Assert.Null(map.Set(a)); // the same block again changes nothing
        Assert.Equal(4, map.Count);
        Assert.Same(a, map.Find(0x40_0000, 0x1000));
        Assert.Same(b, map.Find(0x40_0000, 0x2000));
        Assert.Same(c, map.Find(0x40_1000, 0x1000));
        Assert.Same(d, map.Find(0x40_1000, 0x2000));
        for (ulong k = 3; k < 67; k++)
        {
            // Each lands in some bucket holding blocks of the same linear start or physical page: about half of them.
            Assert.Null(map.Find(0x40_0000, k << 12));
            Assert.Null(map.Find(0x40_0000 + (k << 12), 0x1000));
        }

        // Removing takes out exactly that block: not another block with its start, and only once.
        Block a2 = NewBlock(0x40_0000, 0x1000);
        Assert.False(map.Remove(a2));
        Assert.True(map.Remove(b));
        Assert.False(map.Remove(b));
        Assert.Null(b.NextInMap);
        Assert.Equal(3, map.Count);
        Assert.Null(map.Find(0x40_0000, 0x2000));
        Assert.Same(a, map.Find(0x40_0000, 0x1000));
        Assert.Same(d, map.Find(0x40_1000, 0x2000));

        // The same start again replaces the block and hands back the old one, out of the map.
        Assert.Same(a, map.Set(a2));
        Assert.Null(a.NextInMap);
        Assert.False(map.Remove(a));
        Assert.Same(a2, map.Find(0x40_0000, 0x1000));
        Assert.Same(c, map.Find(0x40_1000, 0x1000));
        Assert.Equal(3, map.Count);

        map.InvalidateAll();
        Assert.Equal(0, map.Count);
        Assert.All(new[] { a2, c, d }, x => Assert.False(x.Valid));
        Assert.All(new[] { a2, c, d }, x => Assert.Null(x.NextInMap));
        Assert.Null(map.Find(0x40_1000, 0x1000));
    }

    [Fact]
    public void Growth_KeepsEveryBlock_AndRemovalsInBetween()
    {
        var map = new BlockMap(2);
        var blocks = new List<Block>();
        for (ulong k = 0; k < 3000; k++)
        {
            // Two physical pages behind each linear address, blocks 16 bytes apart.
            Block block = NewBlock(0x40_0000 + ((k / 2) * 16), 0x10_0000 + ((k / 2) * 16) + ((k % 2) << 20));
            map.Set(block);
            blocks.Add(block);
            if (k % 7 == 0)
            {
                Assert.True(map.Remove(blocks[(int)(k / 2)]));
            }
        }
        Assert.Equal(4096, map.Buckets);
        var removed = new HashSet<Block>(Enumerable.Range(0, 3000).Where(k => k % 7 == 0).Select(k => blocks[k / 2]));
        Assert.Equal(3000 - removed.Count, map.Count);
        foreach (Block block in blocks)
        {
            Assert.Equal(removed.Contains(block) ? null : block, map.Find(block.Start, block.PhysicalStart));
        }
        // Emptied: every block invalid and unchained (a dropped block must not keep its bucket's others alive).
        map.InvalidateAll();
        Assert.Equal(0, map.Count);
        Assert.All(blocks.Where(b => !removed.Contains(b)), b => Assert.False(b.Valid));
        Assert.All(blocks, b => Assert.Null(b.NextInMap));
        Assert.All(blocks, b => Assert.Null(map.Find(b.Start, b.PhysicalStart)));
    }
}
