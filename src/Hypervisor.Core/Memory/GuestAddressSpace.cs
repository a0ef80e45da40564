namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// The guest's linear (virtual) address space as one vCPU sees it at a moment: through its page tables
/// (<see cref="GuestPageWalker"/>, from the control registers of a <see cref="VcpuState"/>) on backends that declare
/// <see cref="BackendCapabilities.PageTables"/>, the identity elsewhere. What a debugger, a crash report and a core
/// file read the guest through. Reads and writes stop at the first unmapped byte; nothing here throws for a bad
/// address.
/// </summary>
internal sealed class GuestAddressSpace
{
    private readonly GuestMemory _memory;
    private readonly ulong _cr0, _cr3, _cr4, _efer;

    /// <summary>The address space of a vCPU in <paramref name="state"/>; <paramref name="pageTables"/>: whether the backend walks them.</summary>
    internal GuestAddressSpace(GuestMemory memory, VcpuState state, bool pageTables)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(state);
        _memory = memory;
        if (pageTables)
        {
            (_cr0, _cr3, _cr4, _efer) = (state.Cr0, state.Cr3, state.Cr4, state.Efer);
        }
    }

    /// <summary>The guest memory behind the address space.</summary>
    internal GuestMemory Memory => _memory;

    /// <summary>Translates <paramref name="linear"/>; false when it is not mapped to guest memory.</summary>
    internal bool TryTranslate(ulong linear, out PageMapping mapping) =>
        GuestPageWalker.TryTranslate(_memory, _cr0, _cr3, _cr4, _efer, linear, out mapping) && mapping.Physical < _memory.Size;

    /// <summary>Copies guest bytes from <paramref name="linear"/> into <paramref name="destination"/>; returns how many were readable (a prefix).</summary>
    internal int Read(ulong linear, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int chunk = NextChunk(linear + (ulong)done, destination.Length - done, out ulong physical);
            if (chunk == 0 || !_memory.TryRead(new GuestAddress(physical), destination.Slice(done, chunk)))
            {
                break;
            }
            done += chunk;
        }
        return done;
    }

    /// <summary>
    /// Writes <paramref name="source"/> at <paramref name="linear"/>; returns how many bytes were written (a prefix).
    /// <paramref name="written"/> hears each guest-physical range changed (for code caches).
    /// </summary>
    internal int Write(ulong linear, ReadOnlySpan<byte> source, Action<ulong, ulong>? written = null)
    {
        int done = 0;
        while (done < source.Length)
        {
            int chunk = NextChunk(linear + (ulong)done, source.Length - done, out ulong physical);
            if (chunk == 0 || !_memory.TryWrite(new GuestAddress(physical), source.Slice(done, chunk)))
            {
                break;
            }
            written?.Invoke(physical, (ulong)chunk);
            done += chunk;
        }
        return done;
    }

    /// <summary>Reads a little-endian 64-bit value, or false when any byte is unmapped.</summary>
    internal bool TryReadUInt64(ulong linear, out ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        if (Read(linear, b) != 8)
        {
            value = 0;
            return false;
        }
        value = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(b);
        return true;
    }

    /// <summary>The mapped ranges (identity: all of guest memory), for a core file.</summary>
    internal List<MappedRange> Mappings(int maxRanges, out bool truncated) =>
        GuestPageWalker.EnumerateMappings(_memory, _cr0, _cr3, _cr4, _efer, maxRanges, out truncated);

    /// <summary>Bytes from <paramref name="linear"/> to the end of its page (at most <paramref name="max"/>) and where they are; 0 when unmapped.</summary>
    private int NextChunk(ulong linear, int max, out ulong physical)
    {
        if (!TryTranslate(linear, out PageMapping m))
        {
            physical = 0;
            return 0;
        }
        physical = m.Physical;
        ulong toPageEnd = m.PageSize - (linear & (m.PageSize - 1));
        ulong toMemoryEnd = _memory.Size - m.Physical;
        return (int)Math.Min((ulong)max, Math.Min(toPageEnd, toMemoryEnd));
    }
}
