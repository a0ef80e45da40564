using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Paravirt.Abi;
using Paravirt.Hypervisor.Interop;

namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// Guest-physical memory: one contiguous, page-aligned host allocation that maps guest-physical
/// <c>[0, Size)</c>. This is the one checked access path: every access names a guest address and a length, and
/// the range is checked with overflow-safe arithmetic before any host pointer is formed.
/// </summary>
/// <remarks>
/// On Linux the memory comes from an anonymous <c>mmap</c> (zero-filled, committed lazily, and what
/// <c>KVM_SET_USER_MEMORY_REGION</c> wants); elsewhere from an aligned native allocation that is zeroed here.
/// The guest may change this memory at any time while a vCPU runs: code that reads guest-shared structures copies
/// them out once (<see cref="Read{T}(GuestAddress)"/>, <see cref="TryRead"/>) and validates the copy.
/// <para>
/// Dirty pages: one byte per 4 KiB page records that the page may have changed since the map was last cleared
/// (<see cref="ClearDirtyPages"/>: a snapshot or restore), which makes a restore cost what the guest changed, not the
/// memory size. Every host write path marks it (<see cref="TryGetSpan"/> conservatively, since a span may be written;
/// <see cref="TryGetReadOnlySpan"/> and the <c>Read</c> forms do not), the emulator marks the physical page of every
/// guest store (on its TLB's slow write path), and hardware backends add their dirty log to it
/// (<see cref="Backends.IVirtualMachine.CollectDirtyPages"/>).
/// </para>
/// </remarks>
public sealed unsafe class GuestMemory : IDisposable
{
    /// <summary>Smallest guest memory the host accepts (2 MiB: the reserved low megabyte plus room for an image).</summary>
    public const ulong MinSize = 2UL << 20;
    /// <summary>Largest guest memory the host accepts (64 GiB, bounded by the identity page tables in <see cref="GuestLayout"/>).</summary>
    public const ulong MaxSize = 64UL << 30;

    /// <summary>The rule <see cref="IsValidSize"/> checks, in words, for error messages.</summary>
    public static string SizeRule { get; } = $"a multiple of 4 KiB between {MinSize >> 20} MiB and {MaxSize >> 30} GiB";

    /// <summary>True when <paramref name="size"/> is a guest memory size this host accepts: <see cref="SizeRule"/>.</summary>
    public static bool IsValidSize(ulong size) => size is >= MinSize and <= MaxSize && size % EntryConvention.PageSize == 0;

    /// <summary>Bytes per page of the dirty page map.</summary>
    internal const int PageSize = (int)EntryConvention.PageSize;

    private byte* _base;
    private readonly ulong _size;
    private readonly bool _mapped;
    private readonly Lock _observersLock = new();
    private IGuestMemoryWriteObserver[] _observers = [];
    private readonly byte[] _dirtyArray;
    private readonly byte* _dirty;
    /// <summary>
    /// True once something that may write without marking the dirty page map got at the memory (a raw host address
    /// handed out, an image mapped over it, the map cleared): the memory is then unmapped on dispose, never kept in
    /// <see cref="GuestMemoryPool"/>.
    /// </summary>
    private bool _untracked;

    /// <summary>Allocates zeroed guest memory of <paramref name="size"/> bytes (a multiple of 4 KiB within [<see cref="MinSize"/>, <see cref="MaxSize"/>]).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is not page aligned or out of range.</exception>
    /// <exception cref="OutOfMemoryException">The host could not reserve the memory.</exception>
    public GuestMemory(ulong size)
    {
        if (!IsValidSize(size))
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"guest memory must be {SizeRule}");
        }
        _size = size;
        byte[]? dirty = null;
        if (OperatingSystem.IsLinux() && GuestMemoryPool.TryTake(size, out byte* kept, out dirty))
        {
            // Safe: a mapping of this size the pool zeroed (every page the last owner wrote) and gave to this object only.
            _base = kept;
            _mapped = true;
            Recycled = true;
        }
        else if (OperatingSystem.IsLinux())
        {
            // Safe: anonymous private mapping owned by this object, unmapped exactly once in Dispose (or kept by the pool).
            nint p = Libc.mmap(0, (nuint)size, Libc.PROT_READ | Libc.PROT_WRITE,
                Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
            if (p == Libc.MAP_FAILED)
            {
                throw new OutOfMemoryException($"mmap of {size} bytes of guest memory failed (errno {Marshal.GetLastPInvokeError()})");
            }
            _base = (byte*)p;
            _mapped = true;
        }
        else
        {
            // Safe: owned allocation, freed exactly once in Dispose; zeroed before use.
            _base = (byte*)NativeMemory.AlignedAlloc((nuint)size, (nuint)EntryConvention.PageSize);
            NativeMemory.Clear(_base, (nuint)size);
        }
        _dirtyArray = dirty ?? GC.AllocateArray<byte>(checked((int)(size / EntryConvention.PageSize)), pinned: true);
        // Safe: the array is pinned for the lifetime of this object.
        _dirty = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_dirtyArray));
    }

    /// <summary>Guest memory with the contents of <paramref name="image"/>, shared copy-on-write with it where the platform can (Linux: a private mapping of the image's memory file).</summary>
    internal GuestMemory(MemoryImage image) : this(image.Size)
    {
        image.MapInto(this);
    }

    /// <summary>True when the memory is a mapping an earlier <see cref="GuestMemory"/> left zeroed in <see cref="GuestMemoryPool"/> (for tests).</summary>
    internal bool Recycled { get; }

    /// <summary>Number of 4 KiB pages.</summary>
    internal int PageCount => _dirtyArray.Length;

    /// <summary>
    /// The dirty page map: byte <c>p</c> is non-zero when page <c>p</c> may have changed since the map was last
    /// cleared. Anyone may mark pages in it (a backend's dirty log); only <see cref="ClearDirtyPages"/> clears it.
    /// </summary>
    internal Span<byte> DirtyPageMap => _dirtyArray;

    /// <summary>The dirty page map's first byte, for the emulator's store path (valid as long as this object lives).</summary>
    internal byte* DirtyPagePointer => _dirty;

    /// <summary>True when memory is a mapping the platform can replace in place (Linux <c>mmap</c>).</summary>
    internal bool IsMapped => _mapped;

    /// <summary>
    /// Clears the dirty page map and tells the write observers, so that a backend that lets guest stores skip the
    /// marking for pages already marked (the emulator's TLB write permission) marks them again from the next store.
    /// No vCPU may run meanwhile.
    /// </summary>
    internal void ClearDirtyPages()
    {
        _untracked = true; // pages written before are no longer marked
        _dirtyArray.AsSpan().Clear();
        IGuestMemoryWriteObserver[] observers = Volatile.Read(ref _observers);
        for (int i = 0; i < observers.Length; i++)
        {
            observers[i].OnDirtyPagesCleared();
        }
    }

    /// <summary>
    /// True when every page of [<paramref name="address"/>, +<paramref name="length"/>) is known to hold zeros without
    /// reading it: the memory was zero when made (a fresh mapping, or one <see cref="GuestMemoryPool"/> zeroed), every
    /// write since went through a path that marks the dirty page map (no raw host address handed out, the map never
    /// cleared: the rule the pool relies on too), and none of these pages is marked.
    /// </summary>
    internal bool IsKnownZero(GuestAddress address, ulong length)
    {
        if (_untracked || _base == null || !Contains(address, length))
        {
            return false;
        }
        if (length == 0)
        {
            return true;
        }
        ulong first = address.Value >> 12, last = (address.Value + length - 1) >> 12;
        return new ReadOnlySpan<byte>(_dirty + first, (int)(last - first + 1)).IndexOfAnyExcept((byte)0) < 0;
    }

    /// <summary>Marks the pages of <c>[address, address + length)</c> dirty (the range was checked by the caller).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void MarkDirty(ulong address, ulong length)
    {
        if (length == 0)
        {
            return;
        }
        ulong last = (address + length - 1) >> 12;
        for (ulong p = address >> 12; p <= last; p++)
        {
            _dirty[p] = 1;
        }
    }

    /// <summary>Size of guest memory in bytes.</summary>
    public ulong Size => _size;

    /// <summary>Host address of guest-physical address 0. For backends that hand the memory to a hypervisor; never for guest-controlled arithmetic.</summary>
    public nint HostAddress
    {
        get
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            _untracked = true; // whoever writes through it need not mark the dirty page map
            return (nint)_base;
        }
    }

    /// <summary>
    /// <see cref="HostAddress"/> for a writer that marks every page it writes in the dirty page map (the emulator, whose
    /// stores all do: see its README, "Dirty pages"), so that the memory may still be recycled (<see cref="GuestMemoryPool"/>).
    /// </summary>
    internal nint TrackedHostAddress
    {
        get
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            return (nint)_base;
        }
    }

    /// <summary>True when <c>[address, address + length)</c> lies inside guest memory (overflow-checked).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Contains(GuestAddress address, ulong length) =>
        address.Value <= _size && length <= _size - address.Value;

    /// <summary>Gets a span over guest memory, or returns false when the range is outside memory, overflows or exceeds <see cref="int.MaxValue"/>.</summary>
    /// <remarks>
    /// The span aliases live guest memory: the guest can change it concurrently. Copy before validating. The caller
    /// may write through it: its pages are marked dirty, and backends that cache decoded guest code hear of the range
    /// (as for every write method). Read through <see cref="TryGetReadOnlySpan"/>.
    /// </remarks>
    public bool TryGetSpan(GuestAddress address, ulong length, out Span<byte> span)
    {
        if (!TryGetSpanCore(address, length, out span))
        {
            return false;
        }
        MarkDirty(address.Value, length);
        NotifyWrite(address.Value, length);
        return true;
    }

    /// <summary>Gets a read-only span over guest memory, or returns false when the range is invalid (as <see cref="TryGetSpan"/>, without marking pages dirty or telling write observers).</summary>
    /// <remarks>The span aliases live guest memory: the guest can change it concurrently. Copy before validating.</remarks>
    public bool TryGetReadOnlySpan(GuestAddress address, ulong length, out ReadOnlySpan<byte> span)
    {
        bool ok = TryGetSpanCore(address, length, out Span<byte> s);
        span = s;
        return ok;
    }

    private bool TryGetSpanCore(GuestAddress address, ulong length, out Span<byte> span)
    {
        if (length > int.MaxValue || !Contains(address, length) || _base == null)
        {
            span = default;
            return false;
        }
        // Safe: the range was checked against the allocation above.
        span = new Span<byte>(_base + address.Value, (int)length);
        return true;
    }

    /// <summary>Registers an observer of host writes (the emulator's code cache); see <see cref="IGuestMemoryWriteObserver"/>.</summary>
    internal void AddWriteObserver(IGuestMemoryWriteObserver observer)
    {
        lock (_observersLock)
        {
            _observers = [.. _observers, observer];
        }
    }

    /// <summary>Unregisters an observer added by <see cref="AddWriteObserver"/>.</summary>
    internal void RemoveWriteObserver(IGuestMemoryWriteObserver observer)
    {
        lock (_observersLock)
        {
            // A loop, not LINQ: this runs for every VM's dispose (measured: LINQ's path was ~10 us of a second VM).
            IGuestMemoryWriteObserver[] old = _observers;
            int matches = 0;
            foreach (IGuestMemoryWriteObserver o in old)
            {
                matches += ReferenceEquals(o, observer) ? 1 : 0;
            }
            if (matches == 0)
            {
                return;
            }
            var kept = new IGuestMemoryWriteObserver[old.Length - matches];
            int k = 0;
            foreach (IGuestMemoryWriteObserver o in old)
            {
                if (!ReferenceEquals(o, observer))
                {
                    kept[k++] = o;
                }
            }
            _observers = kept;
        }
    }

    private void NotifyWrite(ulong address, ulong length)
    {
        IGuestMemoryWriteObserver[] observers = Volatile.Read(ref _observers);
        for (int i = 0; i < observers.Length; i++)
        {
            observers[i].OnHostWrite(address, length);
        }
    }

    /// <summary>Gets a span over guest memory; throws <see cref="GuestMemoryException"/> when the range is invalid.</summary>
    public Span<byte> GetSpan(GuestAddress address, ulong length)
    {
        if (!TryGetSpan(address, length, out Span<byte> span))
        {
            ThrowOutOfRange(address, length);
        }
        return span;
    }

    /// <summary>Copies guest memory into <paramref name="destination"/>, or returns false when the range is invalid.</summary>
    public bool TryRead(GuestAddress address, Span<byte> destination)
    {
        if (!TryGetSpanCore(address, (ulong)destination.Length, out Span<byte> src))
        {
            return false;
        }
        src.CopyTo(destination);
        return true;
    }

    /// <summary>Copies <paramref name="source"/> into guest memory, or returns false when the range is invalid.</summary>
    public bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source)
    {
        if (!TryGetSpan(address, (ulong)source.Length, out Span<byte> dst))
        {
            return false;
        }
        source.CopyTo(dst);
        return true;
    }

    /// <summary>Copies guest memory into <paramref name="destination"/>; throws <see cref="GuestMemoryException"/> when the range is invalid.</summary>
    public void Read(GuestAddress address, Span<byte> destination)
    {
        if (!TryGetSpanCore(address, (ulong)destination.Length, out Span<byte> src))
        {
            ThrowOutOfRange(address, (ulong)destination.Length);
        }
        src.CopyTo(destination);
    }

    /// <summary>Copies <paramref name="source"/> into guest memory; throws <see cref="GuestMemoryException"/> when the range is invalid.</summary>
    public void Write(GuestAddress address, ReadOnlySpan<byte> source) => source.CopyTo(GetSpan(address, (ulong)source.Length));

    /// <summary>Reads one unmanaged value (a copy: later guest writes do not affect it), or returns false when the range is invalid.</summary>
    public bool TryRead<T>(GuestAddress address, out T value) where T : unmanaged
    {
        if (!TryGetSpanCore(address, (ulong)sizeof(T), out Span<byte> src))
        {
            value = default;
            return false;
        }
        value = MemoryMarshal.Read<T>(src);
        return true;
    }

    /// <summary>Reads one unmanaged value (a copy); throws <see cref="GuestMemoryException"/> when the range is invalid.</summary>
    public T Read<T>(GuestAddress address) where T : unmanaged
    {
        if (!TryGetSpanCore(address, (ulong)sizeof(T), out Span<byte> src))
        {
            ThrowOutOfRange(address, (ulong)sizeof(T));
        }
        return MemoryMarshal.Read<T>(src);
    }

    /// <summary>Writes one unmanaged value, or returns false when the range is invalid.</summary>
    public bool TryWrite<T>(GuestAddress address, in T value) where T : unmanaged
    {
        if (!TryGetSpan(address, (ulong)sizeof(T), out Span<byte> dst))
        {
            return false;
        }
        MemoryMarshal.Write(dst, in value);
        return true;
    }

    /// <summary>Writes one unmanaged value; throws <see cref="GuestMemoryException"/> when the range is invalid.</summary>
    public void Write<T>(GuestAddress address, in T value) where T : unmanaged => MemoryMarshal.Write(GetSpan(address, (ulong)sizeof(T)), in value);

    /// <summary>Writes a little-endian u64; throws when the range is invalid.</summary>
    public void WriteUInt64(GuestAddress address, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(GetSpan(address, 8), value);

    /// <summary>Fills a range with zeros; throws when the range is invalid.</summary>
    public void Clear(GuestAddress address, ulong length)
    {
        while (length > 0)
        {
            ulong chunk = Math.Min(length, 1UL << 30);
            GetSpan(address, chunk).Clear();
            address = new GuestAddress(address.Value + chunk);
            length -= chunk;
        }
    }

    /// <summary>
    /// Replaces every byte of guest memory with the contents of <paramref name="image"/>: on Linux by mapping the
    /// image's memory file over the same addresses (private, copy-on-write: the host address stays the same, pages are
    /// shared with the image until written); elsewhere by copying. Unless <paramref name="sameContents"/> (the image was
    /// just made from this memory), write observers hear of all of memory. The dirty page map is cleared. No vCPU may
    /// run meanwhile.
    /// </summary>
    internal void Replace(MemoryImage image, bool sameContents)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        image.MapInto(this);
        if (!sameContents)
        {
            NotifyWrite(0, _size);
        }
        ClearDirtyPages();
    }

    /// <summary>The host address of page <paramref name="page"/> (in range by the caller's check against <see cref="PageCount"/>), for reading whole pages into snapshots.</summary>
    internal byte* PagePointer(int page)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        _untracked = true; // MemoryImage maps and copies into memory through it
        return _base + ((ulong)(uint)page << 12);
    }

    /// <summary>Releases the host memory (or, on Linux, zeroes what was written and keeps the mapping for the next guest memory of this size: <see cref="GuestMemoryPool"/>). Any span or pointer obtained earlier must no longer be used.</summary>
    public void Dispose()
    {
        byte* p = _base;
        if (p == null)
        {
            return;
        }
        _base = null;
        if (_mapped)
        {
            if (!_untracked && GuestMemoryPool.TryReturn(p, _size, _dirtyArray))
            {
                return; // zeroed and kept for the next guest memory of this size
            }
            _ = Libc.munmap((nint)p, (nuint)_size);
        }
        else
        {
            NativeMemory.AlignedFree(p);
        }
    }

    [DoesNotReturn]
    private void ThrowOutOfRange(GuestAddress address, ulong length) =>
        throw new GuestMemoryException($"guest range {address}+0x{length:x} is outside guest memory [0, 0x{_size:x})");
}
