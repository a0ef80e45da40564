using System.Numerics;
using System.Runtime.CompilerServices;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// A vCPU's decoded blocks by their (linear, physical) start (<see cref="CodeCache"/>): hash buckets chained through
/// <see cref="Block.NextInMap"/>, so an entry is the block itself (no entry objects) and a lookup hashes two words
/// inline. A <c>Dictionary</c> over a tuple key did the same through generic comparers, unoptimized code in the few VMs
/// after the first (measured: about a sixth of a hello VM's block lookups). vCPU thread only.
/// </summary>
internal sealed class BlockMap
{
    /// <summary>Buckets of a new map (a power of two); the map doubles when it holds more blocks than buckets.</summary>
    public const int InitialBuckets = 256;

    private Block?[] _buckets;

    /// <param name="buckets">Buckets before the first growth (a power of two).</param>
    public BlockMap(int buckets = InitialBuckets)
    {
        if (buckets < 1 || !BitOperations.IsPow2(buckets))
        {
            throw new ArgumentOutOfRangeException(nameof(buckets), buckets, "a power of two");
        }
        _buckets = new Block?[buckets];
    }

    /// <summary>Blocks held.</summary>
    public int Count { get; private set; }

    /// <summary>Buckets now (the room the map has grown to).</summary>
    public int Buckets => _buckets.Length;

    /// <summary>The bucket of a (linear, physical) start among <paramref name="mask"/> + 1: a multiplicative hash (blocks are bytes apart, pages 4 KiB apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Bucket(ulong linear, ulong physical, int mask)
        => (int)(((linear ^ (physical * 0xFF51AFD7ED558CCDUL)) * 0x9E3779B97F4A7C15UL) >> 32) & mask;

    /// <summary>The block that starts at <paramref name="linear"/>, decoded from <paramref name="physical"/>, or null.</summary>
    public Block? Find(ulong linear, ulong physical)
    {
        Block?[] buckets = _buckets;
        for (Block? b = buckets[Bucket(linear, physical, buckets.Length - 1)]; b is not null; b = b.NextInMap)
        {
            if (b.Start == linear && b.PhysicalStart == physical)
            {
                return b;
            }
        }
        return null;
    }

    /// <summary>Adds <paramref name="block"/> (in no other map); another block with the same start leaves the map and is returned.</summary>
    public Block? Set(Block block)
    {
        ref Block? slot = ref _buckets[Bucket(block.Start, block.PhysicalStart, _buckets.Length - 1)];
        while (slot is not null)
        {
            if (ReferenceEquals(slot, block))
            {
                return null; // already here (unchaining it from itself would cut its bucket short)
            }
            if (slot.Start == block.Start && slot.PhysicalStart == block.PhysicalStart)
            {
                Block old = slot;
                block.NextInMap = old.NextInMap;
                old.NextInMap = null;
                slot = block;
                return old;
            }
            slot = ref slot.NextInMap;
        }
        block.NextInMap = null;
        slot = block;
        if (++Count > _buckets.Length)
        {
            Grow();
        }
        return null;
    }

    /// <summary>Removes exactly <paramref name="block"/> (not another block with its start); false when it is not in the map.</summary>
    public bool Remove(Block block)
    {
        ref Block? slot = ref _buckets[Bucket(block.Start, block.PhysicalStart, _buckets.Length - 1)];
        while (slot is not null)
        {
            if (ReferenceEquals(slot, block))
            {
                slot = block.NextInMap;
                block.NextInMap = null;
                Count--;
                return true;
            }
            slot = ref slot.NextInMap;
        }
        return false;
    }

    /// <summary>Marks every block invalid and empties the map (its buckets stay: the room it grew to).</summary>
    public void InvalidateAll()
    {
        Block?[] buckets = _buckets;
        for (int i = 0; i < buckets.Length && Count > 0; i++)
        {
            Block? b = buckets[i];
            buckets[i] = null;
            while (b is not null)
            {
                Block? next = b.NextInMap;
                b.Valid = false;
                b.NextInMap = null; // a dropped block must not keep the others alive
                Count--;
                b = next;
            }
        }
        Count = 0;
    }

    private void Grow()
    {
        Block?[] old = _buckets;
        var buckets = new Block?[old.Length * 2];
        int mask = buckets.Length - 1;
        foreach (Block? head in old)
        {
            for (Block? b = head; b is not null;)
            {
                Block? next = b.NextInMap;
                ref Block? slot = ref buckets[Bucket(b.Start, b.PhysicalStart, mask)];
                b.NextInMap = slot;
                slot = b;
                b = next;
            }
        }
        _buckets = buckets;
    }
}
