using System.Runtime.InteropServices;
using Paravirt.Hypervisor.Interop;

namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// Guest memory mappings kept for the next <see cref="GuestMemory"/> of the same size, zeroed, so that a short-lived VM
/// neither maps nor unmaps memory (measured for a small guest: the kernel's page faults on fresh memory and the TLB
/// shootdowns of unmapping it cost more than its decoding; bench/emulator-suite-notes.md).
/// </summary>
/// <remarks>
/// Only memory whose every write is in its dirty page map comes back: <see cref="GuestMemory"/> refuses memory whose raw
/// host address was handed to anything that does not mark what it writes (a hardware backend, an image mapped over
/// it, a cleared map). The pages marked are zeroed before the mapping is kept, so the next VM sees zeroed memory as
/// from a fresh <c>mmap</c>; a mapping is kept only when at most <see cref="MaxDirtyPages"/> are marked (zeroing more
/// costs more than mapping again) and at most <see cref="MaxMappings"/> are kept (the oldest is unmapped): the pool holds at most
/// <see cref="MaxMappings"/> x <see cref="MaxDirtyPages"/> x 4 KiB (32 MiB) of resident host memory.
/// </remarks>
internal static unsafe class GuestMemoryPool
{
    /// <summary>Most mappings kept.</summary>
    public const int MaxMappings = 8;

    /// <summary>Most marked (written) pages of a mapping that is kept: 4 MiB.</summary>
    public const int MaxDirtyPages = 1024;

    /// <summary>Largest memory kept (its dirty page map is scanned on every dispose).</summary>
    public const ulong MaxSize = 1UL << 30;

    private static readonly Lock s_lock = new();
    // Oldest first. A plain array rather than a List: the take path is then all in TryTake, which the first VM's
    // memory compiles, so the second VM pays no JIT for it.
    private static readonly (nint Base, ulong Size, byte[] Dirty)[] s_free = new (nint, ulong, byte[])[MaxMappings];
    private static int s_count;

    /// <summary>Mappings kept now (for tests).</summary>
    internal static int Count
    {
        get
        {
            lock (s_lock)
            {
                return s_count;
            }
        }
    }

    /// <summary>Takes a zeroed mapping of <paramref name="size"/> bytes and its cleared dirty page map, if one is kept.</summary>
    public static bool TryTake(ulong size, out byte* memory, out byte[]? dirty)
    {
        lock (s_lock)
        {
            for (int i = s_count - 1; i >= 0; i--)
            {
                if (s_free[i].Size == size)
                {
                    memory = (byte*)s_free[i].Base;
                    dirty = s_free[i].Dirty;
                    Array.Copy(s_free, i + 1, s_free, i, s_count - i - 1);
                    s_free[--s_count] = default;
                    return true;
                }
            }
        }
        memory = null;
        dirty = null;
        return false;
    }

    /// <summary>
    /// Keeps the mapping at <paramref name="memory"/> (<paramref name="size"/> bytes, written only where
    /// <paramref name="dirty"/> marks it) after zeroing the marked pages, or returns false: the caller unmaps it.
    /// </summary>
    public static bool TryReturn(byte* memory, ulong size, byte[] dirty)
    {
        if (size > MaxSize)
        {
            return false;
        }
        Span<byte> map = dirty;
        int marked = 0;
        for (int page = map.IndexOfAnyExcept((byte)0); page >= 0; page = Next(map, page))
        {
            if (++marked > MaxDirtyPages)
            {
                return false;
            }
        }
        for (int page = map.IndexOfAnyExcept((byte)0); page >= 0; page = Next(map, page))
        {
            NativeMemory.Clear(memory + ((ulong)(uint)page << 12), GuestMemory.PageSize);
        }
        map.Clear();
        (nint Base, ulong Size, byte[] Dirty) evicted = default;
        lock (s_lock)
        {
            if (s_count == MaxMappings)
            {
                evicted = s_free[0]; // the oldest goes: the sizes in use now are the ones worth keeping
                Array.Copy(s_free, 1, s_free, 0, --s_count);
            }
            s_free[s_count++] = ((nint)memory, size, dirty);
        }
        if (evicted.Base != 0)
        {
            _ = Libc.munmap(evicted.Base, (nuint)evicted.Size);
        }
        return true;

        static int Next(Span<byte> map, int page)
        {
            int next = map[(page + 1)..].IndexOfAnyExcept((byte)0);
            return next < 0 ? -1 : page + 1 + next;
        }
    }
}
