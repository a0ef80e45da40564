namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// The register lists the WHP vCPU passes to <c>WHv{Get,Set}VirtualProcessorRegisters</c>: names and values in two
/// parallel arrays, built here by plain code so the pairing is tested everywhere.
/// </summary>
internal static class WhpRegisters
{
    /// <summary>RFLAGS at entry: only the always-one bit 1 (interrupts off).</summary>
    public const ulong InitialRflags = 0x2;

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

    /// <summary>
    /// Every register of a <see cref="VcpuState"/>: the snapshot registers, then segments, tables, control registers,
    /// system MSRs, and the FXSAVE image as WHP splits it (FpControlStatus = bytes 0-15, XmmControlStatus = 16-31,
    /// FpMmx0-7 = 32-159, Xmm0-15 = 160-415: the same order, 16 bytes each).
    /// </summary>
    public static WHV_REGISTER_NAME[] StateNames { get; } = BuildStateNames();

    private const int SegmentsAt = 18, TablesAt = SegmentsAt + 8, ControlAt = TablesAt + 2, MsrsAt = ControlAt + 7, FxSaveAt = MsrsAt + 7;

    private static WHV_REGISTER_NAME[] BuildStateNames()
    {
        var names = new List<WHV_REGISTER_NAME>(SnapshotNames.ToArray())
        {
            WHV_REGISTER_NAME.WHvX64RegisterCs, WHV_REGISTER_NAME.WHvX64RegisterSs, WHV_REGISTER_NAME.WHvX64RegisterDs,
            WHV_REGISTER_NAME.WHvX64RegisterEs, WHV_REGISTER_NAME.WHvX64RegisterFs, WHV_REGISTER_NAME.WHvX64RegisterGs,
            WHV_REGISTER_NAME.WHvX64RegisterTr, WHV_REGISTER_NAME.WHvX64RegisterLdtr,
            WHV_REGISTER_NAME.WHvX64RegisterGdtr, WHV_REGISTER_NAME.WHvX64RegisterIdtr,
            WHV_REGISTER_NAME.WHvX64RegisterCr0, WHV_REGISTER_NAME.WHvX64RegisterCr2, WHV_REGISTER_NAME.WHvX64RegisterCr3,
            WHV_REGISTER_NAME.WHvX64RegisterCr4, WHV_REGISTER_NAME.WHvX64RegisterCr8, WHV_REGISTER_NAME.WHvX64RegisterEfer,
            WHV_REGISTER_NAME.WHvX64RegisterXCr0,
            WHV_REGISTER_NAME.WHvX64RegisterTsc, WHV_REGISTER_NAME.WHvX64RegisterStar, WHV_REGISTER_NAME.WHvX64RegisterLstar,
            WHV_REGISTER_NAME.WHvX64RegisterCstar, WHV_REGISTER_NAME.WHvX64RegisterSfmask,
            WHV_REGISTER_NAME.WHvX64RegisterKernelGsBase, WHV_REGISTER_NAME.WHvX64RegisterTscAux,
            WHV_REGISTER_NAME.WHvX64RegisterFpControlStatus, WHV_REGISTER_NAME.WHvX64RegisterXmmControlStatus,
        };
        for (uint i = 0; i < 8; i++)
        {
            names.Add(WHV_REGISTER_NAME.WHvX64RegisterFpMmx0 + i);
        }
        for (uint i = 0; i < 16; i++)
        {
            names.Add(WHV_REGISTER_NAME.WHvX64RegisterXmm0 + i);
        }
        return [.. names];
    }

    /// <summary>Builds a <see cref="VcpuState"/> from values read for <see cref="StateNames"/>.</summary>
    public static VcpuState ReadState(ReadOnlySpan<WHV_REGISTER_VALUE> v)
    {
        if (v.Length < StateNames.Length)
        {
            throw new ArgumentException($"need {StateNames.Length} register values", nameof(v));
        }
        static SegmentRegister Seg(in WHV_REGISTER_VALUE x) => new(x.Segment.Selector, x.Segment.Base, x.Segment.Limit, x.Segment.Attributes);
        var state = new VcpuState
        {
            Registers = new VcpuRegisters(v[0].Reg64, v[1].Reg64, v[2].Reg64, v[3].Reg64, v[4].Reg64, v[5].Reg64, v[6].Reg64, v[7].Reg64,
                v[8].Reg64, v[9].Reg64, v[10].Reg64, v[11].Reg64, v[12].Reg64, v[13].Reg64, v[14].Reg64, v[15].Reg64, v[16].Reg64, v[17].Reg64),
            Cs = Seg(v[SegmentsAt]), Ss = Seg(v[SegmentsAt + 1]), Ds = Seg(v[SegmentsAt + 2]), Es = Seg(v[SegmentsAt + 3]),
            Fs = Seg(v[SegmentsAt + 4]), Gs = Seg(v[SegmentsAt + 5]), Tr = Seg(v[SegmentsAt + 6]), Ldtr = Seg(v[SegmentsAt + 7]),
            Gdtr = new DescriptorTableRegister(v[TablesAt].Table.Base, v[TablesAt].Table.Limit),
            Idtr = new DescriptorTableRegister(v[TablesAt + 1].Table.Base, v[TablesAt + 1].Table.Limit),
            Cr0 = v[ControlAt].Reg64, Cr2 = v[ControlAt + 1].Reg64, Cr3 = v[ControlAt + 2].Reg64, Cr4 = v[ControlAt + 3].Reg64,
            Cr8 = v[ControlAt + 4].Reg64, Efer = v[ControlAt + 5].Reg64, Xcr0 = v[ControlAt + 6].Reg64,
            Tsc = v[MsrsAt].Reg64, Star = v[MsrsAt + 1].Reg64, Lstar = v[MsrsAt + 2].Reg64, Cstar = v[MsrsAt + 3].Reg64,
            Sfmask = v[MsrsAt + 4].Reg64, KernelGsBase = v[MsrsAt + 5].Reg64, TscAux = v[MsrsAt + 6].Reg64,
        };
        Span<byte> fx = state.ExtendedState.AsSpan(0, 512);
        for (int i = 0; i < 26; i++)
        {
            // FpControlStatus, XmmControlStatus, FpMmx0-7, Xmm0-15: consecutive 16-byte pieces of the FXSAVE image.
            MemoryMarshal.Write(fx[(i * 16)..], in v[FxSaveAt + i].Reg128);
        }
        return state;
    }

    /// <summary>Fills <paramref name="v"/> (same order as <see cref="StateNames"/>) from <paramref name="state"/>.</summary>
    public static void WriteState(VcpuState state, Span<WHV_REGISTER_VALUE> v)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (v.Length < StateNames.Length)
        {
            throw new ArgumentException($"need room for {StateNames.Length} register values", nameof(v));
        }
        VcpuRegisters r = state.Registers;
        ReadOnlySpan<ulong> gprs = [r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.Rsp, r.Rbp, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.Rip, r.Rflags];
        for (int i = 0; i < gprs.Length; i++)
        {
            v[i] = U64(gprs[i]);
        }
        static WHV_REGISTER_VALUE S(in SegmentRegister x) => Seg(new WHV_X64_SEGMENT_REGISTER { Base = x.Base, Limit = x.Limit, Selector = x.Selector, Attributes = x.Attributes });
        v[SegmentsAt] = S(state.Cs);
        v[SegmentsAt + 1] = S(state.Ss);
        v[SegmentsAt + 2] = S(state.Ds);
        v[SegmentsAt + 3] = S(state.Es);
        v[SegmentsAt + 4] = S(state.Fs);
        v[SegmentsAt + 5] = S(state.Gs);
        v[SegmentsAt + 6] = S(state.Tr);
        v[SegmentsAt + 7] = S(state.Ldtr);
        v[TablesAt] = Table(state.Gdtr.Base, state.Gdtr.Limit);
        v[TablesAt + 1] = Table(state.Idtr.Base, state.Idtr.Limit);
        ReadOnlySpan<ulong> rest = [state.Cr0, state.Cr2, state.Cr3, state.Cr4, state.Cr8, state.Efer, state.Xcr0,
            state.Tsc, state.Star, state.Lstar, state.Cstar, state.Sfmask, state.KernelGsBase, state.TscAux];
        for (int i = 0; i < rest.Length; i++)
        {
            v[ControlAt + i] = U64(rest[i]);
        }
        ReadOnlySpan<byte> fx = state.ExtendedState.AsSpan(0, 512);
        for (int i = 0; i < 26; i++)
        {
            v[FxSaveAt + i] = new WHV_REGISTER_VALUE { Reg128 = MemoryMarshal.Read<WHV_UINT128>(fx[(i * 16)..]) };
        }
    }

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
    /// descriptor tables and the entry registers. IDTR is the start state's (the VMM's default exception handlers,
    /// or empty: then any exception escalates to a triple fault, WHP's UnrecoverableException exit).
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
        Put(WHV_REGISTER_NAME.WHvX64RegisterIdtr, Table(start.Idt.Base, start.Idt.Limit), names, values);
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
