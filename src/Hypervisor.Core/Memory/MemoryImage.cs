namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// A frozen copy of guest memory that many guest memories can start from: the base of snapshots. On Linux it is a
/// memory file (<c>memfd_create</c>, sparse: only non-zero pages take memory) that each <see cref="GuestMemory"/>
/// maps privately (<c>MAP_PRIVATE | MAP_FIXED</c>), so every sandbox made from it shares the unmodified pages
/// copy-on-write with the others and with the image; the host reads it through one read-only shared view.
/// Elsewhere (Windows: <c>CreateFileMapping</c> + <c>FILE_MAP_COPY</c> would be the equivalent, not done and not
/// verified) it is a plain copy, and each guest memory made from it is a full copy.
/// </summary>
/// <remarks>
/// Reference counted: every snapshot that uses it holds a reference (<see cref="AddReference"/>/<see cref="Release"/>);
/// the file and view go away with the last one. Mappings already made from it stay valid after that (the kernel keeps
/// the file's pages while a mapping needs them). Immutable after creation, so it may be read from any thread.
/// </remarks>
internal sealed unsafe class MemoryImage
{
    private readonly SafeFileHandle? _file;
    private byte* _view;
    private readonly bool _mapped;
    private int _references = 1;

    private MemoryImage(ulong size, SafeFileHandle? file, byte* view, bool mapped)
    {
        Size = size;
        _file = file;
        _view = view;
        _mapped = mapped;
    }

    /// <summary>Bytes of guest memory the image holds.</summary>
    public ulong Size { get; }

    /// <summary>
    /// Freezes the current contents of <paramref name="source"/>. Only the pages whose byte in
    /// <paramref name="pages"/> is non-zero are copied (the others must be zero in <paramref name="source"/>): a fresh
    /// guest memory's dirty page map names every page that was ever written.
    /// </summary>
    /// <exception cref="OutOfMemoryException">The host could not create the memory file or view.</exception>
    public static MemoryImage Create(GuestMemory source, ReadOnlySpan<byte> pages)
    {
        ArgumentNullException.ThrowIfNull(source);
        ulong size = source.Size;
        if (OperatingSystem.IsLinux())
        {
            int fd = Libc.memfd_create("paravirt-snapshot", Libc.MFD_CLOEXEC);
            if (fd < 0)
            {
                throw new OutOfMemoryException($"memfd_create for a {size >> 20} MiB snapshot failed (errno {Marshal.GetLastPInvokeError()})");
            }
            var file = new SafeFileHandle(fd, ownsHandle: true);
            try
            {
                if (Libc.ftruncate(file, (long)size) != 0)
                {
                    throw new OutOfMemoryException($"sizing the {size >> 20} MiB snapshot file failed (errno {Marshal.GetLastPInvokeError()})");
                }
                // Write runs of consecutive marked pages with one pwrite each; unwritten pages read as zeros.
                int count = source.PageCount;
                for (int p = 0; p < count;)
                {
                    int first = pages[p..].IndexOfAnyExcept((byte)0);
                    if (first < 0)
                    {
                        break;
                    }
                    first += p;
                    int end = pages[first..].IndexOf((byte)0);
                    end = end < 0 ? count : first + end;
                    long offset = (long)first << 12;
                    RandomAccess.Write(file, new ReadOnlySpan<byte>(source.PagePointer(first), (end - first) << 12), offset);
                    p = end;
                }
                // Safe: a read-only shared view of the file, owned by this object, unmapped once in Release.
                nint view = Libc.mmap(0, (nuint)size, Libc.PROT_READ, Libc.MAP_SHARED | Libc.MAP_NORESERVE, fd, 0);
                if (view == Libc.MAP_FAILED)
                {
                    throw new OutOfMemoryException($"mapping the {size >> 20} MiB snapshot failed (errno {Marshal.GetLastPInvokeError()})");
                }
                return new MemoryImage(size, file, (byte*)view, mapped: true);
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }
        // Safe: an owned copy, freed once in Release.
        byte* copy = (byte*)NativeMemory.AlignedAlloc((nuint)size, GuestMemory.PageSize);
        Buffer.MemoryCopy(source.PagePointer(0), copy, size, size);
        return new MemoryImage(size, null, copy, mapped: false);
    }

    /// <summary>The image's bytes of page <paramref name="page"/> (read-only).</summary>
    public ReadOnlySpan<byte> Page(int page)
    {
        ObjectDisposedException.ThrowIf(_view == null, this);
        if ((ulong)(uint)page >= Size >> 12)
        {
            throw new ArgumentOutOfRangeException(nameof(page));
        }
        // Safe: the page lies inside the view (checked above), which lives until the last Release.
        return new ReadOnlySpan<byte>(_view + ((ulong)(uint)page << 12), GuestMemory.PageSize);
    }

    /// <summary>Makes every byte of <paramref name="memory"/> (the same size) equal to the image, sharing pages copy-on-write where the platform can.</summary>
    public void MapInto(GuestMemory memory)
    {
        ObjectDisposedException.ThrowIf(_view == null, this);
        if (memory.Size != Size)
        {
            throw new ArgumentException($"a {Size >> 20} MiB snapshot cannot be mapped into {memory.Size >> 20} MiB of guest memory", nameof(memory));
        }
        byte* target = memory.PagePointer(0);
        if (_mapped && memory.IsMapped && OperatingSystem.IsLinux())
        {
            bool added = false;
            try
            {
                _file!.DangerousAddRef(ref added);
                // Safe: replaces the guest memory's own mapping at the same address and length (MAP_FIXED); the
                // pointer the backends hold stays valid, and KVM follows the change through its MMU notifier.
                nint p = Libc.mmap((nint)target, (nuint)Size, Libc.PROT_READ | Libc.PROT_WRITE,
                    Libc.MAP_PRIVATE | Libc.MAP_FIXED | Libc.MAP_NORESERVE, (int)_file.DangerousGetHandle(), 0);
                if (p != (nint)target)
                {
                    throw new OutOfMemoryException($"mapping a {Size >> 20} MiB snapshot over guest memory failed (errno {Marshal.GetLastPInvokeError()})");
                }
            }
            finally
            {
                if (added)
                {
                    _file!.DangerousRelease();
                }
            }
            return;
        }
        Buffer.MemoryCopy(_view, target, Size, Size);
    }

    /// <summary>Takes a reference (a snapshot starts using the image).</summary>
    public MemoryImage AddReference()
    {
        if (Interlocked.Increment(ref _references) <= 1)
        {
            throw new ObjectDisposedException(nameof(MemoryImage));
        }
        return this;
    }

    /// <summary>Drops a reference; the last one frees the file and the view.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _references) != 0)
        {
            return;
        }
        byte* view = _view;
        _view = null;
        if (_mapped)
        {
            _ = Libc.munmap((nint)view, (nuint)Size);
            _file!.Dispose();
        }
        else
        {
            NativeMemory.AlignedFree(view);
        }
    }
}
