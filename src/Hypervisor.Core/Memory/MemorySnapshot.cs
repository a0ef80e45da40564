using System.Buffers;

namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// Guest memory as it was at a snapshot: a shared <see cref="MemoryImage"/> (the base every sandbox of the lineage
/// maps copy-on-write) plus the pages that differ from it (the overlay, sorted by page number). Immutable. The overlay's
/// bytes live in an array rented from <see cref="ArrayPool{T}.Shared"/> (returned on dispose), so snapshots taken one
/// after another do not allocate on the large-object heap each time.
/// </summary>
internal sealed class MemorySnapshot : IDisposable
{
    private readonly int[] _overlayPages;
    private readonly byte[] _overlayData;
    private int _disposed;

    public MemorySnapshot(MemoryImage root, int[] overlayPages, byte[] overlayData)
    {
        Root = root;
        _overlayPages = overlayPages;
        _overlayData = overlayData;
    }

    /// <summary>The shared base image.</summary>
    public MemoryImage Root { get; }

    /// <summary>Pages whose contents differ from <see cref="Root"/>, ascending.</summary>
    public ReadOnlySpan<int> OverlayPages => _overlayPages;

    /// <summary>Host bytes this snapshot holds beyond its shared root.</summary>
    public long OverlayBytes => (long)_overlayPages.Length * GuestMemory.PageSize;

    /// <summary>True once disposed: its pages can no longer be read.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>The snapshot's contents of page <paramref name="page"/>.</summary>
    public ReadOnlySpan<byte> Page(int page)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        int i = Array.BinarySearch(_overlayPages, page);
        return i >= 0 ? _overlayData.AsSpan(i * GuestMemory.PageSize, GuestMemory.PageSize) : Root.Page(page);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Root.Release();
            if (_overlayData.Length != 0)
            {
                ArrayPool<byte>.Shared.Return(_overlayData);
            }
        }
    }
}

/// <summary>
/// Keeps one guest memory in step with the snapshots taken of it and restored into it, copying only what changed:
/// the pages the dirty page map names (host writes, emulator stores, a hardware backend's dirty log). Not
/// thread-safe: the owner (a sandbox) calls it with its vCPU stopped.
/// </summary>
internal sealed unsafe class SnapshotMemory : IDisposable
{
    /// <summary>Overlays larger than this fraction of memory are folded into a new base image at the next snapshot.</summary>
    private const int FlattenDivisor = 4;

    private readonly GuestMemory _memory;
    private MemorySnapshot? _synced;

    public SnapshotMemory(GuestMemory memory, MemorySnapshot? syncedTo)
    {
        _memory = memory;
        SetSynced(syncedTo);
    }

    /// <summary>The snapshot the memory equals apart from its dirty pages (null: a fresh memory). Holds a reference to its base, so a disposed snapshot's base stays readable while the memory follows it.</summary>
    private void SetSynced(MemorySnapshot? snapshot)
    {
        snapshot?.Root.AddReference();
        _synced?.Root.Release();
        _synced = snapshot;
    }

    public void Dispose() => SetSynced(null);

    /// <summary>Pages the last <see cref="Restore"/> copied (for tests and statistics).</summary>
    public int LastRestoredPages { get; private set; }

    /// <summary>
    /// Freezes the memory. The first snapshot of a fresh memory writes every page ever written into a new base image
    /// and remaps the memory onto it (so it too shares the pages); later ones record the changed pages as an overlay
    /// over the same base. <paramref name="tracked"/> is false when the backend cannot name the pages the guest wrote:
    /// then every page counts as changed.
    /// </summary>
    public MemorySnapshot Take(bool tracked)
    {
        Span<byte> dirty = _memory.DirtyPageMap;
        if (!tracked)
        {
            dirty.Fill(1);
        }
        MemorySnapshot? basis = _synced;
        int changed = dirty.Length - dirty.Count((byte)0);
        if (basis is null || !tracked || basis.OverlayPages.Length + changed > dirty.Length / FlattenDivisor)
        {
            ReadOnlySpan<byte> pages = dirty;
            byte[]? all = null;
            if (basis is not null)
            {
                // Everything the current view holds that is not zero lives in the old base, its overlay or the dirty
                // pages: write all of it.
                all = new byte[dirty.Length];
                all.AsSpan().Fill(1);
                pages = all;
            }
            MemoryImage root = MemoryImage.Create(_memory, pages);
            _memory.Replace(root, sameContents: true);
            var fresh = new MemorySnapshot(root, [], []);
            SetSynced(fresh);
            return fresh;
        }
        // The overlay: the basis's overlay pages plus the dirty ones, each with its current contents.
        var pagesList = new List<int>(basis.OverlayPages.Length + changed);
        ReadOnlySpan<int> old = basis.OverlayPages;
        int k = 0;
        for (int p = 0; p < dirty.Length; p++)
        {
            bool inOld = k < old.Length && old[k] == p;
            if (inOld)
            {
                k++;
            }
            if (inOld || dirty[p] != 0)
            {
                pagesList.Add(p);
            }
        }
        int[] overlayPages = [.. pagesList];
        byte[] data = overlayPages.Length == 0 ? [] : ArrayPool<byte>.Shared.Rent(overlayPages.Length * GuestMemory.PageSize);
        for (int i = 0; i < overlayPages.Length; i++)
        {
            new ReadOnlySpan<byte>(_memory.PagePointer(overlayPages[i]), GuestMemory.PageSize).CopyTo(data.AsSpan(i * GuestMemory.PageSize));
        }
        _memory.ClearDirtyPages();
        var snapshot = new MemorySnapshot(basis.Root.AddReference(), overlayPages, data);
        SetSynced(snapshot);
        return snapshot;
    }

    /// <summary>
    /// Makes the memory equal to <paramref name="snapshot"/>. From the snapshot the memory was last synced to (or one
    /// of its lineage) only the dirty pages and the overlays are copied; otherwise the memory is remapped onto the
    /// snapshot's base. Every page is rewritten through <see cref="GuestMemory"/>'s write path, so backends that cache
    /// decoded code drop what came from the rewritten pages (the emulator's write observer). <paramref name="tracked"/>
    /// as for <see cref="Take"/>.
    /// </summary>
    public void Restore(MemorySnapshot snapshot, bool tracked)
    {
        Span<byte> dirty = _memory.DirtyPageMap;
        if (_synced is null || !tracked || !ReferenceEquals(_synced.Root, snapshot.Root))
        {
            _memory.Replace(snapshot.Root, sameContents: false);
            CopyOverlay(snapshot, snapshot.OverlayPages);
            _memory.ClearDirtyPages();
            SetSynced(snapshot);
            LastRestoredPages = _memory.PageCount;
            return;
        }
        if (!ReferenceEquals(_synced, snapshot))
        {
            // Pages where the two snapshots may differ: both overlays.
            foreach (int p in _synced.OverlayPages)
            {
                dirty[p] = 1;
            }
            foreach (int p in snapshot.OverlayPages)
            {
                dirty[p] = 1;
            }
        }
        int copied = 0;
        for (int p = 0; p < dirty.Length;)
        {
            int next = dirty[p..].IndexOfAnyExcept((byte)0);
            if (next < 0)
            {
                break;
            }
            p += next;
            _memory.Write(new GuestAddress((ulong)p << 12), snapshot.Page(p));
            copied++;
            p++;
        }
        _memory.ClearDirtyPages();
        SetSynced(snapshot);
        LastRestoredPages = copied;
    }

    private void CopyOverlay(MemorySnapshot snapshot, ReadOnlySpan<int> pages)
    {
        foreach (int p in pages)
        {
            _memory.Write(new GuestAddress((ulong)p << 12), snapshot.Page(p));
        }
    }
}
