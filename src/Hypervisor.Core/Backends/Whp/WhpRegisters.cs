using Paravirt.Hypervisor.Interop;

namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// The register lists the WHP vCPU passes to <c>WHv{Get,Set}VirtualProcessorRegisters</c>: names and values in two
/// parallel arrays, built here by plain code so the pairing is tested everywhere.
/// </summary>
internal static class WhpRegisters
{
    /// <summary>RFLAGS at entry: only the always-one bit 1 (interrupts off).</summary>
    public const ulong InitialRflags = 0x2;

    /// <summary>The hypercall registers in <see cref="HypercallArgs"/> order: code in <c>rax</c>, arguments in <c>rdi, rsi, rdx, r10, r8</c>.</summary>
    public static ReadOnlySpan<WHV_REGISTER_NAME> HypercallNames =>
    [
        WHV_REGISTER_NAME.WHvX64RegisterRax,
        WHV_REGISTER_NAME.WHvX64RegisterRdi,
        WHV_REGISTER_NAME.WHvX64RegisterRsi,
        WHV_REGISTER_NAME.WHvX64RegisterRdx,
        WHV_REGISTER_NAME.WHvX64RegisterR10,
        WHV_REGISTER_NAME.WHvX64RegisterR8,
    ];

    /// <summary>Registers written to complete a hypercall: the result in <c>rax</c> and RIP past the <c>out</c>.</summary>
    public static ReadOnlySpan<WHV_REGISTER_NAME> CompletionNames =>
    [
        WHV_REGISTER_NAME.WHvX64RegisterRax,
        WHV_REGISTER_NAME.WHvX64RegisterRip,
    ];

    /// <summary>The registers of a <see cref="VcpuRegisters"/> snapshot, in its field order.</summary>
    public static ReadOnlySpan<WHV_REGISTER_NAME> SnapshotNames =>
    [
        WHV_REGISTER_NAME.WHvX64RegisterRax, WHV_REGISTER_NAME.WHvX64RegisterRbx, WHV_REGISTER_NAME.WHvX64RegisterRcx,
        WHV_REGISTER_NAME.WHvX64RegisterRdx, WHV_REGISTER_NAME.WHvX64RegisterRsi, WHV_REGISTER_NAME.WHvX64RegisterRdi,
        WHV_REGISTER_NAME.WHvX64RegisterRsp, WHV_REGISTER_NAME.WHvX64RegisterRbp, WHV_REGISTER_NAME.WHvX64RegisterR8,
        WHV_REGISTER_NAME.WHvX64RegisterR9, WHV_REGISTER_NAME.WHvX64RegisterR10, WHV_REGISTER_NAME.WHvX64RegisterR11,
        WHV_REGISTER_NAME.WHvX64RegisterR12, WHV_REGISTER_NAME.WHvX64RegisterR13, WHV_REGISTER_NAME.WHvX64RegisterR14,
        WHV_REGISTER_NAME.WHvX64RegisterR15, WHV_REGISTER_NAME.WHvX64RegisterRip, WHV_REGISTER_NAME.WHvX64RegisterRflags,
    ];

    /// <summary>Number of registers <see cref="WriteLongModeStart"/> writes.</summary>
    public const int LongModeStartCount = 17;

    /// <summary>
    /// Fills <paramref name="names"/> and <paramref name="values"/> (same index = same register) with the flat
    /// 64-bit long-mode state of <paramref name="longMode"/> (from <see cref="LongModeSetup.Write(Memory.GuestMemory)"/>) and the entry
    /// registers of <paramref name="start"/>. Returns the count (<see cref="LongModeStartCount"/>).
    /// </summary>
    /// <remarks>
    /// Control registers come first, in the order that enables paging legally if WHP applies them one by one:
    /// CR3 (tables), CR4 (PAE), CR0 (PG), EFER (LME|LMA); then the segments, whose hidden parts are loaded straight
    /// from the GDT descriptors with the accessed bit set (VMX requires it for usable code/data segments); then the
    /// descriptor tables and the entry registers. IDTR is empty: the guest runs without interrupts, so any
    /// exception escalates to a triple fault (WHP's UnrecoverableException exit).
    /// </remarks>
    public static int WriteLongModeStart(in LongModeState longMode, in VcpuStartState start, Span<WHV_REGISTER_NAME> names, Span<WHV_REGISTER_VALUE> values)
    {
        if (names.Length < LongModeStartCount || values.Length < LongModeStartCount)
        {
            throw new ArgumentException($"need room for {LongModeStartCount} registers");
        }
        int n = 0;
        void Put(WHV_REGISTER_NAME name, WHV_REGISTER_VALUE value, Span<WHV_REGISTER_NAME> ns, Span<WHV_REGISTER_VALUE> vs)
        {
            ns[n] = name;
            vs[n] = value;
            n++;
        }

        WHV_X64_SEGMENT_REGISTER code = SegmentFromGdt(longMode.CodeSelector);
        WHV_X64_SEGMENT_REGISTER data = SegmentFromGdt(longMode.DataSelector);
        WHV_X64_SEGMENT_REGISTER tss = SegmentFromGdt(longMode.TssSelector);

        Put(WHV_REGISTER_NAME.WHvX64RegisterCr3, U64(longMode.Cr3), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterCr4, U64(longMode.Cr4), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterCr0, U64(longMode.Cr0), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterEfer, U64(longMode.Efer), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterCs, Seg(code), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterDs, Seg(data), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterEs, Seg(data), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterSs, Seg(data), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterFs, Seg(data), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterGs, Seg(data), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterTr, Seg(tss), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterGdtr, Table(longMode.GdtBase, longMode.GdtLimit), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterIdtr, Table(0, 0), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterRip, U64(start.Rip), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterRsp, U64(start.Rsp), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterRdi, U64(start.Rdi), names, values);
        Put(WHV_REGISTER_NAME.WHvX64RegisterRflags, U64(InitialRflags), names, values);
        return n;
    }

    /// <summary>The hidden segment state for <paramref name="selector"/>, decoded from <see cref="LongModeSetup.GdtEntries"/>.</summary>
    public static WHV_X64_SEGMENT_REGISTER SegmentFromGdt(ushort selector)
    {
        ReadOnlySpan<ulong> gdt = LongModeSetup.GdtEntries;
        int index = selector >> 3;
        if ((uint)index >= (uint)gdt.Length || index == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(selector), selector, "selector is not a GDT entry");
        }
        ulong descriptor = gdt[index];
        bool system = (descriptor & (1UL << 44)) == 0;
        ulong high = system && index + 1 < gdt.Length ? gdt[index + 1] : 0;
        return Segment(descriptor, high, selector);
    }

    /// <summary>
    /// Decodes a GDT descriptor (and, for a 16-byte system descriptor, its upper half) into WHP's segment
    /// register: base, limit scaled by the granularity bit, and <c>Attributes</c> = access byte | flags nibble &lt;&lt; 12.
    /// Code and data segments get the accessed bit (type bit 0), as the CPU would set it on a load.
    /// </summary>
    public static WHV_X64_SEGMENT_REGISTER Segment(ulong descriptor, ulong upperHalf, ushort selector)
    {
        ulong baseAddress = ((descriptor >> 16) & 0xFF_FFFF) | (((descriptor >> 56) & 0xFF) << 24);
        bool system = (descriptor & (1UL << 44)) == 0;
        if (system)
        {
            baseAddress |= (upperHalf & 0xFFFF_FFFF) << 32;
        }
        uint limit = (uint)((descriptor & 0xFFFF) | (((descriptor >> 48) & 0xF) << 16));
        bool granularity = (descriptor & (1UL << 55)) != 0;
        if (granularity)
        {
            limit = (limit << 12) | 0xFFF;
        }
        ushort attributes = (ushort)(((descriptor >> 40) & 0xFF) | (((descriptor >> 52) & 0xF) << 12));
        if (!system)
        {
            attributes |= 0x1; // accessed
        }
        return new WHV_X64_SEGMENT_REGISTER { Base = baseAddress, Limit = limit, Selector = selector, Attributes = attributes };
    }

    private static WHV_REGISTER_VALUE U64(ulong value) => new() { Reg64 = value };

    private static WHV_REGISTER_VALUE Seg(WHV_X64_SEGMENT_REGISTER segment) => new() { Segment = segment };

    private static WHV_REGISTER_VALUE Table(ulong baseAddress, ushort limit) =>
        new() { Table = new WHV_X64_TABLE_REGISTER { Base = baseAddress, Limit = limit } };
}
