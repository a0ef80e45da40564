namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>The kind of a memory access, for permission checks.</summary>
internal enum MemoryAccess : byte
{
    Read,
    Write,
    Execute,
}

/// <summary>
/// The emulated CPU's memory-management unit: 4-level long-mode paging honouring CR3 (4 KiB, 2 MiB and 1 GiB pages),
/// P, R/W (with CR0.WP), U/S, NX (EFER.NXE), accessed and dirty bits set as hardware sets them, global pages
/// (CR4.PGE), and the two software TLBs (<see cref="Tlb"/>: supervisor and user) that the interpreter and the
/// translated code consult inline. A miss comes here (<see cref="Translate(ulong, MemoryAccess, bool, int)"/>): the walk reads the paging structures
/// from guest-physical memory through one bounds-checked path, raises #PF (with the P/W/U/RSVD/I error code bits and
/// the faulting address for CR2) or #GP (non-canonical address), and on success fills the TLB entry of the page.
/// </summary>
/// <remarks>
/// Write permission is entered in the TLB only for pages whose dirty bit is set, that hold no decoded code and whose
/// physical page is already marked in the guest memory's dirty page map, so every first write (which must set D),
/// every write into code (which must drop the decoded blocks) and every first write since the dirty page map was
/// cleared (which must mark it: snapshots copy what changed) takes the slow path; a page that becomes code has write
/// permission revoked in both TLBs (<see cref="RevokeWrite"/>), and so has every page when the dirty page map is
/// cleared (<see cref="RevokeAllWrites"/>). Guard pages (<see cref="VirtualMachineOptions.GuardPages"/>) never enter
/// the TLB: any access whose translation reaches one ends the run (<see cref="GuestFault.GuardPage"/>), as KVM's
/// unbacked hole does.
/// Physical addresses have <see cref="PhysicalAddressBits"/> bits (CPUID 0x80000008): paging-structure bits above
/// them are reserved.
/// </remarks>
internal sealed unsafe class Mmu
{
    /// <summary>MAXPHYADDR as CPUID reports it: 40 bits (1 TiB), above the largest guest memory.</summary>
    public const int PhysicalAddressBits = 40;

    private const ulong P = 1, RW = 2, US = 4, A = 0x20, D = 0x40, PS = 0x80, G = 0x100, NX = 1UL << 63;
    private const ulong AddressMask = ((1UL << PhysicalAddressBits) - 1) & ~0xFFFUL;
    /// <summary>Bits 51:MAXPHYADDR: reserved in every paging-structure entry.</summary>
    private const ulong ReservedHigh = ((1UL << 52) - 1) & ~((1UL << PhysicalAddressBits) - 1);

    /// <summary>#PF error code bits.</summary>
    public const int PfPresent = 1, PfWrite = 2, PfUser = 4, PfReserved = 8, PfFetch = 16;

    private readonly byte* _mem;
    private readonly ulong _size;
    private readonly SystemRegisters _sys;
    private readonly CodeCache _code;
    /// <summary>The guest memory's dirty page map (<see cref="Memory.GuestMemory.DirtyPagePointer"/>), one byte per physical page.</summary>
    private readonly byte* _dirty;
    /// <summary>Physical addresses of the guard pages (page aligned, inside memory).</summary>
    private readonly ulong[] _guards;

    public Mmu(byte* memory, ulong size, SystemRegisters sys, CodeCache code, byte* dirty, IReadOnlyList<ulong> guardPages)
    {
        _mem = memory;
        _size = size;
        _sys = sys;
        _code = code;
        _dirty = dirty;
        _guards = GuardPagesIn(guardPages, size);
        _writeGranted = new ulong[((size >> 12) + 63) >> 6];
        Current = Supervisor.Entries;
    }

    /// <summary>The page-aligned guard pages inside memory, each once (loops over an array, not LINQ or a list: this runs for every VM).</summary>
    private static ulong[] GuardPagesIn(IReadOnlyList<ulong> guardPages, ulong size)
    {
        int count = guardPages.Count;
        if (count == 0)
        {
            return [];
        }
        var kept = new ulong[count];
        int n = 0;
        for (int i = 0; i < count; i++)
        {
            ulong g = guardPages[i];
            if (g % 0x1000 != 0 || g >= size)
            {
                continue;
            }
            bool seen = false;
            for (int k = 0; k < n && !seen; k++)
            {
                seen = kept[k] == g;
            }
            if (!seen)
            {
                kept[n++] = g;
            }
        }
        return n == count ? kept : kept[..n];
    }

    /// <summary>
    /// One bit per physical page: a TLB entry may have been given write permission to it since the bit was cleared.
    /// <see cref="RevokeWrite"/> scans the TLBs only for such pages (code the guest never wrote, e.g. its loaded image,
    /// costs no scan of 4,096 entries when it is first decoded).
    /// </summary>
    private readonly ulong[] _writeGranted;

    /// <summary>The TLB of CPL 0-2 accesses and of implicit supervisor accesses (descriptor tables, TSS, delivery).</summary>
    public Tlb Supervisor => _supervisor ?? throw new ObjectDisposedException(nameof(EmulatorVcpu));

    /// <summary>The TLB of CPL 3 accesses, taken on first use (a guest that never leaves CPL 0 does not pay for its 80 KiB).</summary>
    public Tlb User => _user ??= _supervisor is not null ? VcpuArrayPool.TakeTlb() : throw new ObjectDisposedException(nameof(EmulatorVcpu));

    private Tlb? _supervisor = VcpuArrayPool.TakeTlb();
    private Tlb? _user;

    /// <summary>The vCPU is disposed: the TLBs go back to <see cref="VcpuArrayPool"/>; every use from now on throws <see cref="ObjectDisposedException"/> (or reads a null <see cref="Current"/>).</summary>
    public void Release()
    {
        Tlb? supervisor = _supervisor, user = _user;
        _supervisor = _user = null;
        Current = null;
        if (supervisor is not null)
        {
            VcpuArrayPool.Return(supervisor);
        }
        if (user is not null)
        {
            VcpuArrayPool.Return(user);
        }
    }

    /// <summary>The TLB of the current privilege level.</summary>
    public TlbEntry* Current { get; private set; }

    /// <summary>True at CPL 3.</summary>
    public bool UserMode { get; private set; }

    /// <summary>Switches <see cref="Current"/> to the TLB of <paramref name="cpl"/>.</summary>
    public void SetPrivilege(int cpl)
    {
        UserMode = cpl == 3;
        Current = UserMode ? User.Entries : Supervisor.Entries;
    }

    /// <summary>A debugger's write watchpoints (linear ranges), or null: their pages never get write permission in the TLB, so every store to them comes here.</summary>
    private GuestWatchpoint[]? _watches;

    /// <summary>A store reached a watched range since <see cref="SetWatchpoints"/> or the last reset of this flag; <see cref="WatchHitAddress"/> names the watchpoint.</summary>
    public bool WatchHit { get; set; }

    /// <summary>The address of the watchpoint <see cref="WatchHit"/> reports.</summary>
    public ulong WatchHitAddress { get; private set; }

    /// <summary>Replaces the write watchpoints (null: none); the TLBs are flushed so that no watched page keeps write permission.</summary>
    public void SetWatchpoints(GuestWatchpoint[]? watches)
    {
        _watches = watches is { Length: > 0 } ? watches : null;
        WatchHit = false;
        FlushAll();
    }

    /// <summary>For a write: denies the TLB write permission on a watched page and tells whether this access overlaps a watched range.</summary>
    private bool WatchedWrite(ulong linear, MemoryAccess access, int size, ref bool write)
    {
        ulong page = linear & ~0xFFFUL, end = linear + (ulong)Math.Max(size, 1);
        bool hit = false;
        foreach (GuestWatchpoint w in _watches!)
        {
            ulong wEnd = w.Address + w.Length;
            if (page < wEnd && w.Address < page + 0x1000)
            {
                write = false;
            }
            if (access == MemoryAccess.Write && !hit && linear < wEnd && w.Address < end)
            {
                hit = true;
                WatchHitAddress = w.Address;
            }
        }
        return hit;
    }

    /// <summary>Every translation is dropped (CR0/CR4 paging bits changed, EFER.NXE changed, state loaded).</summary>
    public void FlushAll()
    {
        Supervisor.FlushAll();
        _user?.FlushAll();
    }

    /// <summary>A CR3 write: non-global translations are dropped (all of them when CR4.PGE is clear).</summary>
    public void FlushForCr3Write()
    {
        if (_sys.GlobalPages)
        {
            Supervisor.FlushNonGlobal();
            _user?.FlushNonGlobal();
        }
        else
        {
            FlushAll();
        }
    }

    /// <summary>INVLPG (and a delivered #PF): the translations of the page holding <paramref name="linear"/> are dropped.</summary>
    public void FlushPage(ulong linear)
    {
        Supervisor.FlushPage(linear);
        _user?.FlushPage(linear);
    }

    /// <summary>The physical page now holds decoded code: no TLB entry may let a store reach it without the slow path.</summary>
    public void RevokeWrite(ulong physicalPage)
    {
        ref ulong word = ref _writeGranted[physicalPage >> 18];
        ulong bit = 1UL << (int)((physicalPage >> 12) & 63);
        if ((word & bit) == 0)
        {
            return; // no entry was ever given write permission to this page
        }
        word &= ~bit;
        Supervisor.RevokeWrite(physicalPage);
        _user?.RevokeWrite(physicalPage);
    }

    /// <summary>The dirty page map was cleared: no TLB entry may let a store skip the slow path that marks it.</summary>
    public void RevokeAllWrites()
    {
        Supervisor.RevokeAllWrites();
        _user?.RevokeAllWrites();
    }

    /// <summary>
    /// Translates <paramref name="linear"/> for an access of <paramref name="size"/> bytes that lies within one page,
    /// at user (CPL 3) or supervisor privilege, filling the TLB; returns the host address of its first byte. Throws
    /// <see cref="GuestFault"/>: #GP(0) for a non-canonical address, #PF for a paging violation, a terminal fault when
    /// the page lies outside guest-physical memory.
    /// </summary>
    public byte* Translate(ulong linear, MemoryAccess access, bool user, int size) => Translate(linear, access, user, size, linear);

    /// <summary><see cref="Translate(ulong, MemoryAccess, bool, int)"/> for the second page of an access that starts at <paramref name="accessAddress"/> (named in fault messages).</summary>
    public byte* Translate(ulong linear, MemoryAccess access, bool user, int size, ulong accessAddress)
    {
        if (!SystemRegisters.IsCanonical(linear))
        {
            if (access == MemoryAccess.Execute)
            {
                GuestFault.GeneralProtection(0, $"instruction fetch at non-canonical address 0x{accessAddress:x}");
            }
            GuestFault.GeneralProtection(0, $"{(access == MemoryAccess.Write ? "write" : "read")} of {size} bytes at non-canonical address 0x{accessAddress:x}");
        }
        ulong phys = Walk(linear, access, user, size, accessAddress, out ulong leaf, out int largeShift, out bool writable, out bool executable);
        ulong physPage = phys & ~0xFFFUL;
        if (physPage >= _size)
        {
            GuestFault.OutsidePhysicalMemory(linear, accessAddress, phys, Kind(access), size);
        }
        if (_guards.Length != 0 && Array.IndexOf(_guards, physPage) >= 0)
        {
            GuestFault.GuardPage(accessAddress, phys, Kind(access), size);
        }
        if (access == MemoryAccess.Write)
        {
            _dirty[physPage >> 12] = 1; // the store happens (or faults later in the instruction): snapshots copy this page
        }
        bool dirty = (leaf & D) != 0;
        bool write = writable && dirty && _code.CodePages[physPage >> 12] == 0 && _dirty[physPage >> 12] != 0;
        if (_watches is not null && WatchedWrite(linear, access, size, ref write))
        {
            WatchHit = true;
        }
        if (write)
        {
            _writeGranted[physPage >> 18] |= 1UL << (int)((physPage >> 12) & 63);
        }
        (user ? User : Supervisor).Fill(linear, _mem + physPage, physPage, read: true, write, executable,
            global: (leaf & G) != 0 && _sys.GlobalPages, largeShift);
        return _mem + phys;
    }

    /// <summary>Translates without filling the TLB or setting accessed/dirty bits (for debuggers and tests); false when not mapped.</summary>
    public bool TryProbe(ulong linear, out ulong physical)
    {
        physical = 0;
        if (!SystemRegisters.IsCanonical(linear))
        {
            return false;
        }
        ulong table = _sys.Cr3 & AddressMask;
        for (int level = 4; level >= 1; level--)
        {
            ulong at = table + (((linear >> (3 + (9 * level))) & 511) * 8);
            if (at > _size - 8)
            {
                return false;
            }
            ulong e = *(ulong*)(_mem + at);
            if ((e & P) == 0)
            {
                return false;
            }
            if (level == 1 || (level <= 3 && (e & PS) != 0))
            {
                ulong pageMask = (1UL << (3 + (9 * level))) - 1;
                physical = ((e & AddressMask) & ~pageMask) | (linear & pageMask);
                return true;
            }
            table = e & AddressMask;
        }
        return false;
    }

    /// <summary>
    /// Reads bytes at linear <paramref name="linear"/> through a walk, both pages translated (and checked) before
    /// anything is read: descriptor tables, the TSS, interrupt frames, and the interpreter's slow path.
    /// </summary>
    public void ReadLinear(ulong linear, Span<byte> destination, bool user)
    {
        int size = destination.Length;
        byte* lo = Translate(linear, MemoryAccess.Read, user, size);
        int first = (int)Math.Min((ulong)size, 0x1000 - (linear & 0xFFF));
        if (first == size)
        {
            new ReadOnlySpan<byte>(lo, size).CopyTo(destination);
            return;
        }
        byte* hi = Translate((linear | 0xFFF) + 1, MemoryAccess.Read, user, size, linear);
        new ReadOnlySpan<byte>(lo, first).CopyTo(destination);
        new ReadOnlySpan<byte>(hi, size - first).CopyTo(destination[first..]);
    }

    /// <summary>
    /// Writes bytes at linear <paramref name="linear"/> through a walk: both pages are translated (dirty bits set,
    /// faults raised) before any byte is written, and decoded code on them is dropped.
    /// </summary>
    public void WriteLinear(ulong linear, ReadOnlySpan<byte> source, bool user)
    {
        int size = source.Length;
        byte* lo = Translate(linear, MemoryAccess.Write, user, size);
        int first = (int)Math.Min((ulong)size, 0x1000 - (linear & 0xFFF));
        byte* hi = first == size ? null : Translate((linear | 0xFFF) + 1, MemoryAccess.Write, user, size, linear);
        _code.OnPhysicalWrite((ulong)(lo - _mem), first);
        source[..first].CopyTo(new Span<byte>(lo, first));
        if (hi != null)
        {
            _code.OnPhysicalWrite((ulong)(hi - _mem), size - first);
            source[first..].CopyTo(new Span<byte>(hi, size - first));
        }
    }

    /// <summary>
    /// Writes an interrupt frame of 8-byte slots at <paramref name="frame"/> (8-byte aligned) as the CPU pushes it:
    /// the slots are translated from the highest address down, so a fault names the first push that fails (CR2), and
    /// nothing is written unless every slot translates.
    /// </summary>
    public void WriteStackFrame(ulong frame, ReadOnlySpan<ulong> values, bool user)
    {
        Span<nint> slots = stackalloc nint[values.Length];
        for (int k = values.Length - 1; k >= 0; k--)
        {
            slots[k] = (nint)Translate(frame + (ulong)(8 * k), MemoryAccess.Write, user, 8);
        }
        for (int k = values.Length - 1; k >= 0; k--)
        {
            _code.OnPhysicalWrite((ulong)((byte*)slots[k] - _mem), 8);
            *(ulong*)slots[k] = values[k];
        }
    }

    public ulong ReadLinear64(ulong linear, bool user)
    {
        ulong v;
        ReadLinear(linear, new Span<byte>(&v, 8), user);
        return v;
    }

    public void WriteLinear64(ulong linear, ulong value, bool user) => WriteLinear(linear, new ReadOnlySpan<byte>(&value, 8), user);

    private static FaultAccess Kind(MemoryAccess access) => access switch
    {
        MemoryAccess.Write => FaultAccess.Write,
        MemoryAccess.Execute => FaultAccess.Fetch,
        _ => FaultAccess.Read,
    };

    /// <summary>
    /// The page walk: returns the physical address of <paramref name="linear"/>, the leaf entry (with A/D as now set),
    /// the large-page shift (0, 9, 18), and whether the page is writable and executable at this privilege.
    /// </summary>
    private ulong Walk(ulong linear, MemoryAccess access, bool user, int size, ulong shown, out ulong leaf, out int largeShift, out bool writable, out bool executable)
    {
        bool nxe = _sys.Nxe;
        ulong table = _sys.Cr3 & AddressMask;
        bool rw = true, us = true, nx = false;
        Span<ulong> at = stackalloc ulong[4];
        int depth = 0;
        for (int level = 4; ; level--)
        {
            ulong entryAddress = table + (((linear >> (3 + (9 * level))) & 511) * 8);
            if (entryAddress > _size - 8)
            {
                GuestFault.TableOutsideMemory(linear, entryAddress);
            }
            ulong e = *(ulong*)(_mem + entryAddress);
            at[depth++] = entryAddress;
            if ((e & P) == 0)
            {
                Fault(linear, shown, access, user, size, 0, NotMapped());
            }
            bool large = level <= 3 && (e & PS) != 0;
            if ((e & ReservedHigh) != 0 || (!nxe && (e & NX) != 0) || (level == 4 && (e & PS) != 0)
                || (large && (e & (((1UL << (3 + (9 * level))) - 1) & ~0x1FFFUL)) != 0))
            {
                Fault(linear, shown, access, user, size, PfPresent | PfReserved, "(a reserved bit is set in a paging-structure entry)");
            }
            rw &= (e & RW) != 0;
            us &= (e & US) != 0;
            nx |= nxe && (e & NX) != 0;
            if (level == 1 || large)
            {
                leaf = e;
                largeShift = 9 * (level - 1);
                break;
            }
            table = e & AddressMask;
        }
        if (user && !us)
        {
            Fault(linear, shown, access, user, size, PfPresent, "(user-mode access to a supervisor page)");
        }
        writable = rw || (!user && !_sys.WriteProtect);
        if (access == MemoryAccess.Write && !writable)
        {
            Fault(linear, shown, access, user, size, PfPresent, "(the page is read-only)");
        }
        if (access == MemoryAccess.Execute && nx)
        {
            Fault(linear, shown, access, user, size, PfPresent, "(the page is no-execute)");
        }
        executable = !nx;
        // The translation succeeded: set the accessed bit in every entry used and the dirty bit in the leaf on a write.
        for (int k = 0; k < depth; k++)
        {
            ulong* entry = (ulong*)(_mem + at[k]);
            ulong old = *entry;
            ulong set = k == depth - 1 && access == MemoryAccess.Write ? A | D : A;
            if ((old & set) != set)
            {
                *entry = old | set;
                _dirty[at[k] >> 12] = 1;
                _code.OnPhysicalWrite(at[k], 8);
                if (k == depth - 1)
                {
                    leaf = old | set;
                }
            }
        }
        int shift = 12 + largeShift;
        ulong pageMask = (1UL << shift) - 1;
        return ((leaf & AddressMask) & ~pageMask) | (linear & pageMask);
    }

    /// <summary>How a not-present fault is named: with the host's identity tables that means the address lies outside guest memory.</summary>
    private string NotMapped() => (_sys.Cr3 & AddressMask) == Memory.GuestLayout.Pml4 ? "outside guest memory" : "(not mapped)";

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Fault(ulong linear, ulong shown, MemoryAccess access, bool user, int size, int code, string reason)
    {
        code |= access == MemoryAccess.Write ? PfWrite : 0;
        code |= user ? PfUser : 0;
        code |= access == MemoryAccess.Execute && _sys.Nxe ? PfFetch : 0;
        GuestFault.PageFault(linear, shown, code, Kind(access), size, reason);
    }
}
