namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// One software TLB entry for a 4 KiB linear page: a tag per access kind (the page's linear address when that
/// access is allowed without a page walk, <see cref="Tlb.Invalid"/> otherwise) and the host address of the page
/// minus its linear address, so that <c>host = Addend + linear</c>. 32 bytes; the interpreter and the translated
/// code read it by these offsets.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 32)]
internal struct TlbEntry
{
    /// <summary>Offsets of the fields, for translated code.</summary>
    public const int ReadTagOffset = 0, WriteTagOffset = 8, ExecTagOffset = 16, AddendOffset = 24;

    public ulong ReadTag;
    /// <summary>Set only when the page is writable at this privilege, its dirty bit is already set, it holds no decoded code and it is marked in the dirty page map: every other store takes the slow path.</summary>
    public ulong WriteTag;
    public ulong ExecTag;
    public long Addend;
}

/// <summary>
/// A direct-mapped software TLB (QEMU's softmmu design): <see cref="Size"/> entries indexed by the linear page number
/// folded with the bits above the index (so arrays a power of two apart, as a merge's source and destination often
/// are, do not evict each other on every access),
/// one per privilege class (supervisor, user), so a privilege change switches tables instead of flushing. A hit
/// costs an index, one compare and an add. The tag compared is the page of the access's LAST byte, so an access that
/// crosses into the next page misses (that page indexes a different entry) and takes the slow path, which splits it.
/// Large pages are entered 4 KiB at a time; a per-entry info word remembers each entry's physical page, size and
/// global bit for INVLPG, CR3 flushes and write revocation.
/// </summary>
internal sealed unsafe class Tlb
{
    /// <summary>log2 of the entries per privilege: 2,048 entries map 8 MiB (with the folded index; measured: sort's 4 MiB arrays thrashed 1,024 plainly indexed).</summary>
    public const int Bits = 11;
    public const int Size = 1 << Bits;
    public const ulong IndexMask = Size - 1;
    /// <summary>A tag no access matches (its low bits are set; real tags are page aligned).</summary>
    public const ulong Invalid = ulong.MaxValue;

    /// <summary>An entry that matches no access (every tag <see cref="Invalid"/>).</summary>
    private static readonly TlbEntry InvalidEntry = new() { ReadTag = Invalid, WriteTag = Invalid, ExecTag = Invalid };

    /// <summary>Info flags: the translation is global (survives CR3 writes when CR4.PGE is set).</summary>
    public const ulong InfoGlobal = 1;
    /// <summary>Info: log2 of the page size above 4 KiB (0, 9 for 2 MiB, 18 for 1 GiB) in bits 1-5.</summary>
    private const int InfoSizeShift = 1;

    /// <summary>Fills <see cref="FlushAll"/> undoes one by one; past this many it rewrites every entry.</summary>
    public const int MaxTrackedFills = 256;

    private readonly TlbEntry[] _array = GC.AllocateArray<TlbEntry>(Size, pinned: true);
    /// <summary>Per entry: physical page address | size | global flag (valid when the entry is).</summary>
    private readonly ulong[] _info = new ulong[Size];
    /// <summary>
    /// The entries filled since the last <see cref="FlushAll"/>, in order (an index may repeat), while at most
    /// <see cref="MaxTrackedFills"/>; every entry not listed is invalid. A short-lived VM fills a few dozen of the
    /// 2,048: its flushes (state loads, CR0/CR4 changes, the pool's flush for the next vCPU) write those instead of
    /// all 64 KiB, which in a cold cache was most of a vCPU's creation (bench/emulator-suite-notes.md, "Sixth round").
    /// </summary>
    private readonly ushort[] _filled = new ushort[MaxTrackedFills];
    private int _filledCount = MaxTrackedFills + 1; // a new array holds zeros (valid tags for page 0): flush all

    public Tlb()
    {
        // Safe: the array is pinned for the lifetime of this object.
        Entries = (TlbEntry*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_array));
        FlushAll();
    }

    /// <summary>The entries (pinned).</summary>
    public TlbEntry* Entries { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Index(ulong linear) => (int)(((linear >> 12) ^ (linear >> (12 + Bits))) & IndexMask);

    /// <summary>Enters the 4 KiB page of <paramref name="linear"/>.</summary>
    public void Fill(ulong linear, byte* hostPage, ulong physicalPage, bool read, bool write, bool execute, bool global, int largeShift)
    {
        ulong page = linear & ~0xFFFUL;
        int i = Index(linear);
        TlbEntry* e = Entries + i;
        e->ReadTag = read ? page : Invalid;
        e->WriteTag = write ? page : Invalid;
        e->ExecTag = execute ? page : Invalid;
        e->Addend = (long)hostPage - (long)page;
        _info[i] = physicalPage | ((ulong)largeShift << InfoSizeShift) | (global ? InfoGlobal : 0);
        if (_filledCount < MaxTrackedFills)
        {
            _filled[_filledCount++] = (ushort)i;
        }
        else
        {
            _filledCount = MaxTrackedFills + 1; // too many to list: the next flush rewrites every entry
        }
    }

    /// <summary>Drops every entry.</summary>
    public void FlushAll()
    {
        if (_filledCount <= MaxTrackedFills)
        {
            // Only the listed entries can be valid (Fill is the only writer of a valid tag). Written out, not Drop:
            // hello's first VM flushes only new TLBs (every entry), so a call here was the second VM's first call of
            // Drop, and its JIT (measured: 30-40 us) a tenth of that VM.
            foreach (ushort i in _filled.AsSpan(0, _filledCount))
            {
                Entries[i] = InvalidEntry;
            }
        }
        else
        {
            new Span<TlbEntry>(Entries, Size).Fill(InvalidEntry);
        }
        _filledCount = 0;
    }

    /// <summary>Drops every entry that is not global (a CR3 write with CR4.PGE set).</summary>
    public void FlushNonGlobal()
    {
        for (int i = 0; i < Size; i++)
        {
            if ((_info[i] & InfoGlobal) == 0)
            {
                Drop(i);
            }
        }
    }

    /// <summary>INVLPG: drops the translations of the page holding <paramref name="linear"/>, including every 4 KiB piece of a large page that contains it.</summary>
    public void FlushPage(ulong linear)
    {
        int exact = Index(linear);
        Drop(exact);
        for (int i = 0; i < Size; i++)
        {
            TlbEntry* e = Entries + i;
            ulong tag = e->ReadTag != Invalid ? e->ReadTag : e->WriteTag != Invalid ? e->WriteTag : e->ExecTag;
            if (tag == Invalid)
            {
                continue;
            }
            int shift = (int)((_info[i] >> InfoSizeShift) & 0x1F);
            if (shift != 0 && (tag >> (12 + shift)) == (linear >> (12 + shift)))
            {
                Drop(i);
            }
        }
    }

    /// <summary>Takes write permission away from every entry that maps <paramref name="physicalPage"/> (it now holds decoded code).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RevokeWrite(ulong physicalPage)
    {
        for (int i = 0; i < Size; i++)
        {
            if (Entries[i].WriteTag != Invalid && (_info[i] & ~0xFFFUL) == physicalPage)
            {
                Entries[i].WriteTag = Invalid;
            }
        }
    }

    /// <summary>Takes write permission away from every entry (the dirty page map was cleared).</summary>
    public void RevokeAllWrites()
    {
        for (int i = 0; i < Size; i++)
        {
            Entries[i].WriteTag = Invalid;
        }
    }

    private void Drop(int i) => Entries[i] = InvalidEntry;
}
