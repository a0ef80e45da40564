namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The emulated vCPU's large per-VM arrays kept for the next vCPU: software TLBs (<see cref="Tlb"/>, 80 KiB each),
/// direct-mapped block caches (<see cref="CodeCache.FastSize"/> entries, 32 KiB each), code page maps (a byte per
/// guest page: 16 KiB for 64 MiB) and the code cache's block maps (empty, with the room they grew to). A short-lived VM otherwise
/// allocates them on the pinned and small object heaps and touches fresh GC pages for each (measured for hello:
/// half of the vCPU's creation; bench/emulator-suite-notes.md, "Fifth round").
/// </summary>
/// <remarks>
/// What is taken holds nothing of another VM: a TLB is flushed when taken (every entry invalid), a code page map is
/// cleared when taken, a block cache is emptied when it comes back (which also lets its blocks and their translated
/// code go), a block map is kept only when it comes back empty. A vCPU gives its arrays back only
/// from <see cref="EmulatorVcpu.Dispose"/>, after which every entry point of that vCPU that can reach them refuses to
/// run (<see cref="ObjectDisposedException"/>), so a stale vCPU never writes into arrays another VM now uses. At most
/// <see cref="MaxKept"/> of each are kept (about 900 KiB in all, code page maps of at most
/// <see cref="MaxCodePageMap"/> bytes, and block maps with room for at most <see cref="MaxBlockMapCapacity"/>
/// blocks, about 150 KiB each). Each kind's take and return are written out on purpose: one generic bounded stack for
/// the four kinds was measured 20-30 us slower in a process's second VM (shared generic code run at tier 0, a
/// delegate for the code page map's size match), which is the figure this pool exists for.
/// </remarks>
internal static class VcpuArrayPool
{
    /// <summary>Most arrays of each kind kept.</summary>
    public const int MaxKept = 8;

    /// <summary>Largest code page map kept (1 GiB of guest memory).</summary>
    public const int MaxCodePageMap = (1 << 18) + 1;

    private static readonly Lock s_lock = new();
    private static readonly Tlb?[] s_tlbs = new Tlb?[MaxKept];
    private static readonly Block?[]?[] s_caches = new Block?[]?[MaxKept];
    private static readonly byte[]?[] s_codePageMaps = new byte[]?[MaxKept];
    private static readonly BlockMap?[] s_blockMaps = new BlockMap?[MaxKept];
    private static int s_tlbCount, s_cacheCount, s_codePageMapCount, s_blockMapCount;

    /// <summary>Most buckets a kept block map may have (one per block it held at most: a VM that decoded more gives its map to the GC).</summary>
    public const int MaxBlockMapCapacity = 4096;

    /// <summary>An empty block map (<see cref="CodeCache"/>'s blocks by linear and physical address): a kept one, with the room its last owner grew it to, or a new one.</summary>
    public static BlockMap TakeBlockMap()
    {
        lock (s_lock)
        {
            if (s_blockMapCount > 0)
            {
                BlockMap map = s_blockMaps[--s_blockMapCount]!;
                s_blockMaps[s_blockMapCount] = null;
                return map;
            }
        }
        return new BlockMap();
    }

    /// <summary>Keeps <paramref name="map"/> for another vCPU when it is empty and not too large; the caller never uses it again.</summary>
    public static void Return(BlockMap map)
    {
        if (map.Count != 0 || map.Buckets > MaxBlockMapCapacity)
        {
            return;
        }
        lock (s_lock)
        {
            if (s_blockMapCount < MaxKept)
            {
                s_blockMaps[s_blockMapCount++] = map;
            }
        }
    }

    /// <summary>Arrays kept now (for tests).</summary>
    internal static (int Tlbs, int BlockCaches, int CodePageMaps) Count
    {
        get
        {
            lock (s_lock)
            {
                return (s_tlbCount, s_cacheCount, s_codePageMapCount);
            }
        }
    }

    /// <summary>A pinned, zeroed code page map of <paramref name="length"/> bytes: a kept one, or a new one.</summary>
    public static byte[] TakeCodePageMap(int length)
    {
        byte[]? map = null;
        lock (s_lock)
        {
            for (int i = s_codePageMapCount - 1; i >= 0; i--)
            {
                if (s_codePageMaps[i]!.Length == length)
                {
                    map = s_codePageMaps[i];
                    s_codePageMaps[i] = s_codePageMaps[--s_codePageMapCount];
                    s_codePageMaps[s_codePageMapCount] = null;
                    break;
                }
            }
        }
        if (map is null)
        {
            return GC.AllocateArray<byte>(length, pinned: true);
        }
        Array.Clear(map);
        return map;
    }

    /// <summary>Keeps <paramref name="map"/> (from <see cref="TakeCodePageMap"/>) for another vCPU; the caller never uses it again.</summary>
    public static void Return(byte[] map)
    {
        if (map.Length > MaxCodePageMap)
        {
            return;
        }
        lock (s_lock)
        {
            if (s_codePageMapCount < MaxKept)
            {
                s_codePageMaps[s_codePageMapCount++] = map;
            }
        }
    }

    /// <summary>A TLB with every entry invalid: a kept one, or a new one.</summary>
    public static Tlb TakeTlb()
    {
        Tlb? tlb = null;
        lock (s_lock)
        {
            if (s_tlbCount > 0)
            {
                tlb = s_tlbs[--s_tlbCount];
                s_tlbs[s_tlbCount] = null;
            }
        }
        if (tlb is null)
        {
            return new Tlb();
        }
        tlb.FlushAll();
        return tlb;
    }

    /// <summary>An empty direct-mapped block cache: a kept one, or a new one.</summary>
    public static Block?[] TakeBlockCache()
    {
        Block?[]? cache = null;
        lock (s_lock)
        {
            if (s_cacheCount > 0)
            {
                cache = s_caches[--s_cacheCount];
                s_caches[s_cacheCount] = null;
            }
        }
        return cache ?? new Block?[CodeCache.FastSize]; // a kept one was emptied when it came back
    }

    /// <summary>Keeps <paramref name="tlb"/> for another vCPU; the caller never uses it again.</summary>
    public static void Return(Tlb tlb)
    {
        lock (s_lock)
        {
            if (s_tlbCount < MaxKept)
            {
                s_tlbs[s_tlbCount++] = tlb;
            }
        }
    }

    /// <summary>Keeps <paramref name="cache"/> for another vCPU (its blocks are let go now); the caller never uses it again.</summary>
    public static void Return(Block?[] cache)
    {
        if (cache.Length != CodeCache.FastSize)
        {
            return;
        }
        Array.Clear(cache); // the blocks (and the translated code they hold) are not kept alive by the pool
        lock (s_lock)
        {
            if (s_cacheCount < MaxKept)
            {
                s_caches[s_cacheCount++] = cache;
            }
        }
    }
}
