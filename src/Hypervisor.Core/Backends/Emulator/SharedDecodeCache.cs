using System.Numerics;
using System.Runtime.CompilerServices;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// Decoded blocks shared between the VMs of one image (<see cref="VirtualMachineOptions.CodeShareKey"/>: the
/// <see cref="Loading.GuestImage"/> for VMs built by the runner), so that the second VM of an image does not decode
/// again what the first one decoded. Process-wide, one host-memory cap for all images.
/// </summary>
/// <remarks>
/// <para>An entry is published once and never changed: the guest's code bytes it was decoded from, the decoded ops and
/// their texts. Decoding is a pure function of the linear start address and those bytes (64-bit mode, the fixed CPUID
/// model), so a vCPU may take an entry when its own memory holds the same bytes at the same linear and physical
/// address: <see cref="Find"/> compares them before every use, so a guest that changed its code (or another image's
/// code at the same address) never runs a stale decode. The vCPU then owns a private <see cref="Block"/> made from
/// the entry (its own validity, hit count, links and translation, over the entry's shared op array, which nothing
/// writes once published) in its own <see cref="CodeCache"/>, which keeps invalidating on stores exactly as for a
/// block it decoded itself: a store drops that VM's block, never the array (<see cref="CodeCache.Drop"/>).</para>
/// <para>Only blocks that lie within one page and decoded without a fetch fault are shared (their bytes are all on the
/// page that was translated to find them); a vCPU with breakpoints set neither takes nor publishes (a breakpoint
/// ends a block). Reads are lock-free; publishing (a decode miss) takes a lock. When an entry would pass
/// <see cref="ByteLimit"/>, everything is dropped (QEMU's policy, as <see cref="CodeCache"/>): a guest that
/// makes code faster than it runs it costs at most the cap, and other VMs only their sharing.</para>
/// <para>Timing: a VM can tell from its own decode time whether another VM of the same image decoded a block before
/// it (which paths that image has run). Images are shared only through the same <c>GuestImage</c> object; load the
/// image separately for VMs that must not learn that from each other.</para>
/// </remarks>
internal sealed unsafe class SharedDecodeCache
{
    /// <summary>The default cap on the estimated host memory of all shared entries: 32 MiB.</summary>
    public const long DefaultByteLimit = 32L << 20;

    /// <summary>Variants kept per address (different code at the same address: other images' VMs, self-modified code); the oldest is replaced.</summary>
    public const int MaxVariants = 4;

    /// <summary>Slots of a fresh table (a power of two); the table doubles when half its slots are taken.</summary>
    internal const int InitialSlots = 256;

    private static long s_nextScope;

    private readonly ConditionalWeakTable<object, StrongBox<long>> _scopes = [];
    /// <summary>
    /// Open addressing, linear probing: a slot holds the variants of one (scope, linear, physical) key, newest first
    /// (every variant of a slot has that key), or null. Readers take no lock: a slot once filled is only ever replaced
    /// by another immutable variant array of the same key, and a table once replaced (grown, flushed) is never written
    /// again, so a reader sees either the old or the new variants, each a complete, published entry (a reader of an
    /// old table may miss an entry published since: it decodes). One array read and three compares for a lookup,
    /// instead of a concurrent dictionary's hashing of a tuple key through generic comparers (tier-0 code in a cold VM).
    /// </summary>
    private SharedBlock[]?[] _table;
    private int _used;
    private readonly Lock _publishLock = new();
    private long _bytes;
    private long _hits;
    private long _published;

    /// <summary>An empty cache.</summary>
    /// <param name="initialSlots">Slots of the lookup table before it grows (a power of two; tests make collisions with a small one).</param>
    public SharedDecodeCache(int initialSlots = InitialSlots)
    {
        if (initialSlots < 2 || !BitOperations.IsPow2(initialSlots))
        {
            throw new ArgumentOutOfRangeException(nameof(initialSlots), initialSlots, "a power of two, at least 2");
        }
        _initialSlots = initialSlots;
        _table = new SharedBlock[]?[initialSlots];
    }

    private readonly int _initialSlots;

    /// <summary>The one instance the emulator's vCPUs use.</summary>
    public static SharedDecodeCache Process { get; } = new();

    /// <summary>The most estimated host bytes the shared entries hold before all are dropped.</summary>
    public long ByteLimit { get; set; } = DefaultByteLimit;

    /// <summary>Estimated host bytes held now.</summary>
    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Blocks taken from the cache by any vCPU, the decoding one included (for tests and diagnostics).</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Blocks published (for tests and diagnostics).</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Times everything was dropped because the cap was reached.</summary>
    public int CapacityFlushes { get; private set; }

    /// <summary>The sharing scope of <paramref name="key"/>: VMs created with the same key object share decoded blocks (the scope lives as long as the key).</summary>
    public long ScopeOf(object key) => _scopes.GetValue(key, static _ => new StrongBox<long>(Interlocked.Increment(ref s_nextScope))).Value;

    /// <summary>
    /// The entry decoded at <paramref name="linear"/> (guest-physical <paramref name="physical"/>) in
    /// <paramref name="scope"/> whose code bytes equal the guest's bytes at <paramref name="host"/> now, or null.
    /// <paramref name="available"/> is how many bytes may be read at <paramref name="host"/> (to the end of its page).
    /// </summary>
    public SharedBlock? Find(long scope, ulong linear, ulong physical, byte* host, int available)
    {
        SharedBlock[]?[] table = Volatile.Read(ref _table);
        int mask = table.Length - 1;
        for (int slot = Slot(scope, linear, physical, mask); ; slot = (slot + 1) & mask)
        {
            // Never full (at most half the slots are taken): the probe ends at an empty slot or at the key.
            SharedBlock[]? variants = Volatile.Read(ref table[slot]);
            if (variants is null)
            {
                return null;
            }
            SharedBlock first = variants[0];
            if (first.Linear != linear || first.Physical != physical || first.Scope != scope)
            {
                continue;
            }
            foreach (SharedBlock candidate in variants)
            {
                byte[] code = candidate.Code;
                if (code.Length <= available && new ReadOnlySpan<byte>(host, code.Length).SequenceEqual(code))
                {
                    Interlocked.Increment(ref _hits);
                    return candidate;
                }
            }
            return null;
        }
    }

    /// <summary>The first slot probed for a key: a vCPU's block-map hash (<see cref="BlockMap.Bucket"/>) with the scope XORed into the linear address's top 16 bits (scopes are 1 apart; the multiply spreads them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Slot(long scope, ulong linear, ulong physical, int mask)
        => BlockMap.Bucket(linear ^ ((ulong)scope << 48), physical, mask);

    /// <summary>
    /// Publishes <paramref name="block"/>, decoded from the <paramref name="length"/> bytes at <paramref name="host"/>
    /// (its whole code, read before decoding ended, within one page), for the other VMs of <paramref name="scope"/>.
    /// </summary>
    public void Publish(long scope, Block block, byte* host, int length)
    {
        // The decoder's own op array: no block ever writes its ops (CodeCache.Drop), so every VM runs this one.
        var entry = new SharedBlock(scope, block.Start, block.PhysicalStart, block.End, new ReadOnlySpan<byte>(host, length).ToArray(), block.Ops, block.Texts, block.HostBytes, length);
        lock (_publishLock)
        {
            if (_bytes + entry.HostBytes > ByteLimit)
            {
                CapacityFlushes++;
                ClearLocked();
                if (entry.HostBytes > ByteLimit)
                {
                    return;
                }
            }
            if ((_used + 1) * 2 > _table.Length)
            {
                Grow();
            }
            SharedBlock[]?[] table = _table;
            int mask = table.Length - 1;
            int slot = Slot(scope, block.Start, block.PhysicalStart, mask);
            SharedBlock[]? old;
            while ((old = table[slot]) is not null && (old[0].Linear != block.Start || old[0].Physical != block.PhysicalStart || old[0].Scope != scope))
            {
                slot = (slot + 1) & mask;
            }
            SharedBlock[] variants;
            if (old is not null)
            {
                // Newest first; the oldest variant past MaxVariants is dropped.
                int keep = Math.Min(old.Length, MaxVariants - 1);
                variants = new SharedBlock[keep + 1];
                variants[0] = entry;
                Array.Copy(old, 0, variants, 1, keep);
                for (int k = keep; k < old.Length; k++)
                {
                    _bytes -= old[k].HostBytes;
                }
            }
            else
            {
                variants = [entry];
                _used++;
            }
            // The array is complete before it is published (a release write): a reader sees all of it or the old one.
            Volatile.Write(ref table[slot], variants);
            Volatile.Write(ref _bytes, _bytes + entry.HostBytes);
            _published++;
        }
    }

    /// <summary>A table twice the size with every key moved over, then published (under the lock; readers of the old one are unaffected).</summary>
    private void Grow()
    {
        SharedBlock[]?[] old = _table;
        var table = new SharedBlock[]?[old.Length * 2];
        int mask = table.Length - 1;
        foreach (SharedBlock[]? variants in old)
        {
            if (variants is null)
            {
                continue;
            }
            SharedBlock first = variants[0];
            int slot = Slot(first.Scope, first.Linear, first.Physical, mask);
            while (table[slot] is not null)
            {
                slot = (slot + 1) & mask;
            }
            table[slot] = variants;
        }
        Volatile.Write(ref _table, table);
    }

    private void ClearLocked()
    {
        Volatile.Write(ref _table, new SharedBlock[]?[_initialSlots]);
        _used = 0;
        Volatile.Write(ref _bytes, 0);
    }

    /// <summary>Slots of the lookup table now (for tests).</summary>
    internal int TableSlots => Volatile.Read(ref _table).Length;

    /// <summary>Drops every entry (for tests).</summary>
    public void Clear()
    {
        lock (_publishLock)
        {
            ClearLocked();
        }
    }
}

/// <summary>An immutable decoded block in the <see cref="SharedDecodeCache"/>: its key, the code bytes it was decoded from and the decode.</summary>
internal sealed class SharedBlock(long scope, ulong linear, ulong physical, ulong end, byte[] code, MicroOp[] ops, string[] texts, long blockBytes, int codeLength)
{
    /// <summary>The sharing scope it was published in.</summary>
    public long Scope { get; } = scope;

    /// <summary>Linear address of the first instruction.</summary>
    public ulong Linear { get; } = linear;

    /// <summary>Guest-physical address of the first instruction.</summary>
    public ulong Physical { get; } = physical;

    /// <summary>One past the last byte of the last instruction.</summary>
    public ulong End { get; } = end;

    /// <summary>The guest's code bytes from the block's start, as they were when it was decoded.</summary>
    public byte[] Code { get; } = code;

    /// <summary>Estimated host bytes the entry holds.</summary>
    public long HostBytes { get; } = blockBytes + codeLength;

    /// <summary>Estimated host bytes of a block made from it (<see cref="Block.HostBytes"/> of the decoded block, before translation).</summary>
    private readonly long _blockBytes = blockBytes;
    private readonly MicroOp[] _ops = ops;
    private readonly string[] _texts = texts;

    /// <summary>
    /// A private block for one vCPU's code cache (its own validity, hit count, links and translation) over the shared,
    /// never written ops and texts: a VM that overwrites this code drops its own block, not the array (see
    /// <see cref="CodeCache.Drop"/>), so the other VMs running it are not affected. Its cost estimate is the decoded
    /// block's, not computed again (that walked every text of the block: cold memory in a VM's first run).
    /// </summary>
    public Block Instantiate(ulong linear, ulong physical) => new(linear, End, _ops, _texts, physical, _blockBytes);
}
