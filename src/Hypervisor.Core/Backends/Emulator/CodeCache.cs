using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The decoded-block cache. A block is keyed by its linear start address AND the physical address it was decoded
/// from, so the same code seen through another mapping is found again and a changed mapping never runs stale code:
/// the linear address is translated (through the instruction TLB) before a block is looked up by key. In front of
/// the dictionary sit two direct-mapped caches by linear address (supervisor and user); an entry there is valid while
/// no TLB flush happened since it was entered (CR3 write, INVLPG, paging-mode change), which is exactly as long as the
/// architecture lets a CPU use a cached translation, so a hit needs no translation at all.
/// </summary>
/// <remarks>
/// <para>Self-modifying code: a per-physical-page "has code" byte map. A page with code never has write permission in
/// the TLB, so every store into it reaches <see cref="InvalidateRange"/>, which drops the blocks whose bytes it
/// overlaps (data sharing a page with code keeps them). Host writes (devices writing guest memory, snapshot restores)
/// arrive through the vCPU's <see cref="IGuestMemoryWriteObserver"/> (<see cref="OnHostWrite"/>), possibly from
/// another thread: they are queued and applied by the vCPU thread before it runs guest code again.</para>
/// <para>Memory cap: every block's host memory (decoded ops, translated IL and native code) is estimated and the
/// total kept under <see cref="ByteLimit"/>; when a new block would pass it, the whole cache is flushed (QEMU's
/// policy), so a guest that makes code faster than it runs it costs at most the cap.</para>
/// </remarks>
internal sealed unsafe class CodeCache
{
    /// <summary>Entries of each direct-mapped cache.</summary>
    public const int FastSize = 4096;

    /// <summary>The default cap on the estimated host memory of decoded and translated code: 64 MiB.</summary>
    public const long DefaultByteLimit = 64L << 20;

    /// <summary>Host writes queued before the vCPU flushes the whole cache instead of tracking ranges.</summary>
    private const int MaxPendingHostWrites = 64;

    private BlockMap _blocks = VcpuArrayPool.TakeBlockMap();
    private readonly Dictionary<ulong, List<Block>> _pageBlocks = [];
    private readonly byte[] _codePageArray;
    private readonly ulong _pages;
    private Block?[] _fastSupervisor = VcpuArrayPool.TakeBlockCache();
    private Block?[]? _fastUser; // taken on first use at CPL 3
    private readonly Action<ulong> _pageBecameCode;
    private readonly Action _hostWrite;
    private readonly Action _blockDropped;
    private readonly Lock _pendingLock = new();
    private readonly List<(ulong Address, ulong Length)> _pending = [];
    private bool _pendingFlush;
    private long _bytes;
    /// <summary>Block chaining: the current link epoch (<see cref="LinkEpoch"/>) and the one of each privilege class.</summary>
    private readonly ulong[] _linkEpochArray = GC.AllocateArray<ulong>(1, pinned: true);
    private ulong _linkEpochSupervisor = NewLinkEpoch(), _linkEpochUser = NewLinkEpoch();
    private static long s_linkEpochs;

    /// <param name="memorySize">Bytes of guest-physical memory.</param>
    /// <param name="pageBecameCode">Called with a physical page address the first time a block is decoded from it (revoke TLB write permission).</param>
    /// <param name="hostWrite">Called (from any thread) when the host wrote code pages: the vCPU must call <see cref="ApplyHostWrites"/> before it runs on.</param>
    /// <param name="blockDropped">Called (vCPU thread) when <see cref="Drop"/> dropped a block, possibly the running one: the interpreter stops after the current instruction (see <see cref="Drop"/>).</param>
    public CodeCache(ulong memorySize, Action<ulong> pageBecameCode, Action hostWrite, Action blockDropped)
    {
        _pages = (memorySize + 0xFFF) >> 12;
        _codePageArray = VcpuArrayPool.TakeCodePageMap((int)_pages + 1);
        // Safe: the array is pinned for the lifetime of this object.
        CodePages = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_codePageArray));
        _pageBecameCode = pageBecameCode;
        _hostWrite = hostWrite;
        _blockDropped = blockDropped;
        Fast = _fastSupervisor;
        // Safe: the array is pinned for the lifetime of this object.
        LinkEpoch = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_linkEpochArray));
        *LinkEpoch = _linkEpochSupervisor;
    }

    /// <summary>
    /// Block chaining: a word that changes whenever an entry of the direct-mapped cache of the current privilege may
    /// have gone stale (<see cref="FlushFast"/>) or the privilege class switches caches (<see cref="SetPrivilege"/>).
    /// A block's link slots (<see cref="Block.LinkNext"/> ...) stand in for direct-mapped lookups and are followed only
    /// while their <see cref="Block.LinkEpoch"/> equals it. Values are unique across every code cache of the process,
    /// so a link can never be taken under another vCPU's or an earlier epoch.
    /// </summary>
    public ulong* LinkEpoch { get; }

    private static ulong NewLinkEpoch() => (ulong)Interlocked.Increment(ref s_linkEpochs);

    /// <summary>Per physical page: nonzero when a cached block was decoded from it.</summary>
    public byte* CodePages { get; private set; }

    /// <summary>The direct-mapped cache of the current privilege, indexed by <see cref="FastSlot"/>.</summary>
    public Block?[] Fast { get; private set; }

    /// <summary>The most estimated host bytes the cache holds before it is flushed.</summary>
    public long ByteLimit { get; set; } = DefaultByteLimit;

    /// <summary>Estimated host bytes held now.</summary>
    public long Bytes => _bytes;

    /// <summary>Blocks held now.</summary>
    public int Count => _blocks.Count;

    /// <summary>Times the whole cache was flushed because it reached <see cref="ByteLimit"/>.</summary>
    public int CapacityFlushes { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FastSlot(ulong rip) => (int)((rip ^ (rip >> 12)) & (FastSize - 1));

    /// <summary>Selects the direct-mapped cache of <paramref name="cpl"/>.</summary>
    public void SetPrivilege(int cpl)
    {
        Fast = cpl == 3 ? _fastUser ??= VcpuArrayPool.TakeBlockCache() : _fastSupervisor;
        *LinkEpoch = cpl == 3 ? _linkEpochUser : _linkEpochSupervisor;
    }

    /// <summary>Forgets every direct-mapped entry (a TLB flush happened: the mappings they stand for may have changed).</summary>
    public void FlushFast()
    {
        Array.Clear(_fastSupervisor);
        if (_fastUser is not null)
        {
            Array.Clear(_fastUser);
        }
        bool user = *LinkEpoch == _linkEpochUser;
        _linkEpochSupervisor = NewLinkEpoch();
        _linkEpochUser = NewLinkEpoch();
        *LinkEpoch = user ? _linkEpochUser : _linkEpochSupervisor;
    }

    public Block? Find(ulong linear, ulong physical) => _blocks.Find(linear, physical);

    /// <summary>Adds a decoded block (flushing everything first when it would pass the cap).</summary>
    public void Add(Block block)
    {
        long cost = block.HostBytes;
        if (_bytes + cost > ByteLimit && _blocks.Count > 0)
        {
            CapacityFlushes++;
            Flush();
        }
        _blocks.Set(block);
        _bytes += cost;
        if (block.End <= block.Start)
        {
            return;
        }
        Register(block, block.PhysicalStart >> 12);
        if (block.PhysicalSecond != Block.NoPage)
        {
            Register(block, block.PhysicalSecond >> 12);
        }
    }

    /// <summary>A block was translated to IL: its host cost grows by <paramref name="bytes"/>.</summary>
    public void AddTranslated(int bytes) => _bytes += bytes;

    private void Register(Block block, ulong page)
    {
        if (page >= _pages)
        {
            return;
        }
        if (!_pageBlocks.TryGetValue(page, out List<Block>? list))
        {
            list = [];
            _pageBlocks[page] = list;
        }
        list.Add(block);
        if (CodePages[page] == 0)
        {
            CodePages[page] = 1;
            _pageBecameCode(page << 12);
        }
    }

    /// <summary>Drops every block (between blocks: none is running).</summary>
    public void Flush()
    {
        _blocks.InvalidateAll();
        _pageBlocks.Clear();
        FlushFast();
        Array.Clear(_codePageArray);
        _bytes = 0;
    }

    /// <summary>
    /// The vCPU is disposed: every block is dropped and the direct-mapped caches go back to <see cref="VcpuArrayPool"/>;
    /// <see cref="Fast"/> is empty from now on (the vCPU refuses to run after its dispose anyway).
    /// </summary>
    public void Release()
    {
        // Not Flush: the code page map is cleared by its next taker (VcpuArrayPool), and a fresh map's clear here was
        // the first touch of its pages (page faults: 4 a VM for hello's 64 MiB).
        _blocks.InvalidateAll();
        _pageBlocks.Clear();
        // Empty, with the room this VM grew it to (growing it was about half the time of adding a second VM's blocks:
        // measured 33-38 -> 18-21 us for hello); an empty map of this cache's own stays behind for a stale caller.
        VcpuArrayPool.Return(_blocks);
        _blocks = new BlockMap(1);
        // The map goes too (cleared by its next taker). OnHostWrite may still read it from another thread, racing the
        // dispose: a read of another VM's map queues nothing that runs.
        CodePages = null;
        VcpuArrayPool.Return(_codePageArray);
        Block?[] supervisor = _fastSupervisor;
        Block?[]? user = _fastUser;
        _fastSupervisor = Fast = [];
        _fastUser = null;
        VcpuArrayPool.Return(supervisor);
        if (user is not null)
        {
            VcpuArrayPool.Return(user);
        }
    }

    /// <summary>
    /// Guest-physical bytes [<paramref name="address"/>, +<paramref name="length"/>) were written (by a guest store,
    /// a page-table A/D update, or the host): drop the blocks whose bytes overlap them (<see cref="Drop"/>: a running
    /// one stops right after the write, and the next instruction is decoded again from memory).
    /// </summary>
    public void InvalidateRange(ulong address, ulong length)
    {
        if (length == 0)
        {
            return;
        }
        ulong end = address + length;
        for (ulong page = address >> 12; page <= (end - 1) >> 12 && page < _pages; page++)
        {
            if (!_pageBlocks.TryGetValue(page, out List<Block>? list))
            {
                CodePages[page] = 0;
                continue;
            }
            for (int k = list.Count - 1; k >= 0; k--)
            {
                Block b = list[k];
                if (b.Valid && !b.Overlaps(address, end))
                {
                    continue;
                }
                list.RemoveAt(k);
                if (b.Valid)
                {
                    Drop(b);
                }
            }
            if (list.Count == 0)
            {
                _pageBlocks.Remove(page);
                CodePages[page] = 0;
            }
        }
    }

    /// <summary>
    /// Drops one block (its code was written, or its last instruction could not be fetched: it must be decoded again).
    /// A dropped block never runs again: every way in checks <see cref="Block.Valid"/> (the dispatcher's lookups, links,
    /// translated code after each helper). Its ops are never touched (another VM may be running the same array, see
    /// <see cref="SharedDecodeCache"/>): the block may be the one the interpreter is running (the store that dropped it
    /// is one of its instructions), so <c>blockDropped</c> ends the interpreter's loop after the current instruction,
    /// and the interpreter goes on only if its block is still valid.
    /// </summary>
    public void Drop(Block b)
    {
        b.Valid = false;
        // Links out of a dropped block would keep its successors alive after they are dropped too.
        b.LinkNext = b.LinkTarget = b.LinkIndirect = null;
        _blockDropped();
        if (_blocks.Remove(b))
        {
            _bytes -= b.HostBytes;
        }
    }

    /// <summary>A guest store or A/D update hit physical memory: invalidates when the bytes may hold decoded code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnPhysicalWrite(ulong address, int length)
    {
        if ((CodePages[address >> 12] | CodePages[(address + (ulong)length - 1) >> 12]) != 0)
        {
            InvalidateRange(address, (ulong)length);
        }
    }

    /// <summary>The host wrote guest memory (any thread): queue the range when it touches decoded code.</summary>
    public void OnHostWrite(ulong address, ulong length)
    {
        if (length == 0)
        {
            return;
        }
        ulong last = Math.Min((address + length - 1) >> 12, _pages - 1);
        bool code = false;
        for (ulong page = address >> 12; page <= last; page++)
        {
            if (Volatile.Read(ref _codePageArray[page]) != 0)
            {
                code = true;
                break;
            }
        }
        if (!code)
        {
            return;
        }
        lock (_pendingLock)
        {
            if (_pending.Count >= MaxPendingHostWrites)
            {
                _pendingFlush = true;
            }
            else
            {
                _pending.Add((address, length));
            }
        }
        _hostWrite();
    }

    /// <summary>Applies the host writes queued by <see cref="OnHostWrite"/> (vCPU thread, between blocks).</summary>
    public void ApplyHostWrites()
    {
        (ulong, ulong)[] ranges;
        bool flush;
        lock (_pendingLock)
        {
            ranges = [.. _pending];
            _pending.Clear();
            flush = _pendingFlush;
            _pendingFlush = false;
        }
        if (flush)
        {
            Flush();
            return;
        }
        foreach ((ulong address, ulong length) in ranges)
        {
            InvalidateRange(address, length);
        }
        FlushFast();
    }
}
