namespace Paravirt.Hypervisor.Backends;

/// <summary>The control and segment state a hardware backend loads into a vCPU for flat 64-bit long mode.</summary>
/// <param name="Cr0">CR0: PE, MP, ET, NE, WP, PG.</param>
/// <param name="Cr3">CR3: the PML4 address.</param>
/// <param name="Cr4">CR4: PAE, OSFXSR, OSXMMEXCPT (so compiler-emitted SSE works).</param>
/// <param name="Efer">EFER: LME, LMA.</param>
/// <param name="GdtBase">Guest-physical address of the GDT.</param>
/// <param name="GdtLimit">GDT limit (size - 1).</param>
/// <param name="CodeSelector">64-bit code segment selector.</param>
/// <param name="DataSelector">Data segment selector (DS, ES, SS, FS, GS).</param>
/// <param name="TssSelector">Selector of the (unused, present) 64-bit TSS descriptor for TR.</param>
public readonly record struct LongModeState(
    ulong Cr0, ulong Cr3, ulong Cr4, ulong Efer, ulong GdtBase, ushort GdtLimit,
    ushort CodeSelector, ushort DataSelector, ushort TssSelector)
{
    /// <summary>CS as loaded: flat 64-bit code, DPL 0, execute/read, accessed.</summary>
    public SegmentRegister Code => new(CodeSelector, 0, 0xFFFF_FFFF, SegmentRegister.MakeAttributes(11, codeOrData: true, dpl: 0, present: true, @long: true, granularity: true));

    /// <summary>DS, ES, SS, FS and GS as loaded: flat data, DPL 0, read/write, accessed.</summary>
    public SegmentRegister Data => new(DataSelector, 0, 0xFFFF_FFFF, SegmentRegister.MakeAttributes(3, codeOrData: true, dpl: 0, present: true, defaultBig: true, granularity: true));

    /// <summary>TR as loaded: the busy 64-bit TSS descriptor.</summary>
    public SegmentRegister Task => new(TssSelector, 0, 0x67, SegmentRegister.MakeAttributes(11, codeOrData: false, dpl: 0, present: true));

    /// <summary>The start state as a <see cref="VcpuState"/> (registers from <paramref name="start"/>, RFLAGS 0x2, x87/SSE reset).</summary>
    public VcpuState ToVcpuState(in VcpuStartState start)
    {
        SegmentRegister data = Data;
        return new VcpuState
        {
            Registers = new VcpuRegisters(0, 0, 0, 0, 0, start.Rdi, start.Rsp, 0, 0, 0, 0, 0, 0, 0, 0, 0, start.Rip, 0x2),
            Cs = Code, Ds = data, Es = data, Ss = data, Fs = data, Gs = data, Tr = Task,
            Gdtr = new DescriptorTableRegister(GdtBase, GdtLimit),
            Idtr = start.Idt,
            Cr0 = Cr0, Cr3 = Cr3, Cr4 = Cr4, Efer = Efer,
        };
    }
}

/// <summary>
/// Writes identity page tables (2 MiB pages covering all guest memory) and a flat GDT into the host-reserved area
/// described by <see cref="GuestLayout"/>, and returns the register state that enables them. Used by the KVM and
/// WHP backends; the emulator runs flat long mode without tables.
/// </summary>
public static class LongModeSetup
{
    private const ulong Present = 1, Writable = 2, User = 4, PageSize2M = 1UL << 7;

    /// <summary>CR0 bits: PE | MP | ET | NE | WP | PG.</summary>
    public const ulong Cr0 = 0x1 | 0x2 | 0x10 | 0x20 | 0x1_0000 | 0x8000_0000;
    /// <summary>CR4 bits: PAE | OSFXSR | OSXMMEXCPT.</summary>
    public const ulong Cr4 = 0x20 | 0x200 | 0x400;
    /// <summary>EFER bits: LME | LMA.</summary>
    public const ulong Efer = 0x100 | 0x400;

    /// <summary>GDT entries: null, 64-bit code (0x08), data (0x10), and a 16-byte TSS descriptor (0x18).</summary>
    public static ReadOnlySpan<ulong> GdtEntries =>
    [
        0x0000_0000_0000_0000, // null
        0x00AF_9A00_0000_FFFF, // 0x08: code, L=1, P, DPL0, exec/read
        0x00CF_9200_0000_FFFF, // 0x10: data, P, DPL0, read/write
        0x0000_8B00_0000_0067, // 0x18: 64-bit TSS (busy), base 0, limit 0x67 (low half)
        0x0000_0000_0000_0000, //       TSS high half (base 63:32 = 0)
    ];

    /// <summary>The state <see cref="Write(GuestMemory)"/> returns, without writing anything (the emulator reports it as its architectural state).</summary>
    public static LongModeState State => new(Cr0, GuestLayout.Pml4, Cr4, Efer, GuestLayout.Gdt, (ushort)(GdtEntries.Length * 8 - 1),
        CodeSelector: 0x08, DataSelector: 0x10, TssSelector: 0x18);

    /// <summary>Writes the tables for <paramref name="memory"/> and returns the state to load.</summary>
    public static LongModeState Write(GuestMemory memory) => Write(memory, userPages: false);

    /// <summary>
    /// Writes the tables with the user/supervisor bit set in every entry when <paramref name="userPages"/>: PVM runs
    /// the guest's supervisor mode at hardware CPL 3 through shadow page tables and faults on supervisor-only pages
    /// (see Kvm/README.md). Without SMEP and SMAP (CR4 has neither) the bit changes nothing for CPL 0 code.
    /// </summary>
    internal static LongModeState Write(GuestMemory memory, bool userPages)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ulong table = Present | Writable | (userPages ? User : 0);
        ulong gib = (memory.Size + (1UL << 30) - 1) >> 30;
        if (gib > GuestLayout.PdCount)
        {
            throw new ArgumentOutOfRangeException(nameof(memory), "guest memory exceeds what the identity page tables map");
        }
        // Page by page (PML4, PDPT, then one PD per GiB; GuestLayout keeps them contiguous), written only where memory
        // differs: a VM made from a snapshot already holds these tables, and rewriting them would give every such
        // sandbox private copies of 66 pages it never changes.
        Span<byte> page = stackalloc byte[0x1000];
        Span<ulong> entries = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(page);
        ulong twoMegPages = (memory.Size + (2UL << 20) - 1) >> 21;
        for (int p = 0; p < 2 + GuestLayout.PdCount; p++)
        {
            ulong address = GuestLayout.Pml4 + (ulong)p * 0x1000;
            if (p >= 2 && (ulong)(p - 2) >= gib && memory.IsKnownZero(new GuestAddress(address), 0x1000))
            {
                continue; // an unused directory on fresh memory: zero already, nothing to compare (63 of them for 64 MiB)
            }
            page.Clear();
            if (p == 0)
            {
                entries[0] = GuestLayout.Pdpt | table;
            }
            else if (p == 1)
            {
                for (ulong i = 0; i < gib; i++)
                {
                    entries[(int)i] = (GuestLayout.FirstPd + i * 0x1000) | table;
                }
            }
            else if ((ulong)(p - 2) < gib)
            {
                ulong i = (ulong)(p - 2);
                for (ulong j = 0; j < 512 && i * 512 + j < twoMegPages; j++)
                {
                    entries[(int)j] = (i << 30) | (j << 21) | table | PageSize2M;
                }
            }
            WriteIfDifferent(memory, address, page);
        }
        WriteIfDifferent(memory, GuestLayout.Gdt, System.Runtime.InteropServices.MemoryMarshal.AsBytes(GdtEntries));
        return State;
    }

    private static void WriteIfDifferent(GuestMemory memory, ulong address, ReadOnlySpan<byte> bytes)
    {
        if (!memory.TryGetReadOnlySpan(new GuestAddress(address), (ulong)bytes.Length, out ReadOnlySpan<byte> current) || !current.SequenceEqual(bytes))
        {
            memory.Write(new GuestAddress(address), bytes);
        }
    }
}
