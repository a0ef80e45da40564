using Paravirt.Hypervisor.Backends.Whp;

namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>The register lists the WHP vCPU hands to <c>WHvSetVirtualProcessorRegisters</c>, against <see cref="LongModeSetup"/>.</summary>
public sealed class WhpRegistersTests
{
    private static Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> Build(out LongModeState lm, out WHV_REGISTER_NAME[] order)
    {
        using var memory = new GuestMemory(4UL << 20);
        lm = LongModeSetup.Write(memory);
        var start = new VcpuStartState(Rip: 0x10_1234, Rsp: 4UL << 20, Rdi: GuestLayout.BootInfo);
        var names = new WHV_REGISTER_NAME[WhpRegisters.LongModeStartCount];
        var values = new WHV_REGISTER_VALUE[WhpRegisters.LongModeStartCount];
        int n = WhpRegisters.WriteLongModeStart(in lm, in start, names, values);
        Assert.Equal(WhpRegisters.LongModeStartCount, n);
        order = names;
        var map = new Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE>();
        for (int i = 0; i < n; i++)
        {
            Assert.True(map.TryAdd(names[i], values[i]), $"{names[i]} is set twice");
        }
        return map;
    }

    [Fact]
    public void Control_registers_come_from_long_mode_setup()
    {
        Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> r = Build(out LongModeState lm, out _);
        Assert.Equal(lm.Cr0, r[WHV_REGISTER_NAME.WHvX64RegisterCr0].Reg64);
        Assert.Equal(lm.Cr3, r[WHV_REGISTER_NAME.WHvX64RegisterCr3].Reg64);
        Assert.Equal(lm.Cr4, r[WHV_REGISTER_NAME.WHvX64RegisterCr4].Reg64);
        Assert.Equal(lm.Efer, r[WHV_REGISTER_NAME.WHvX64RegisterEfer].Reg64);
        Assert.Equal(GuestLayout.Pml4, r[WHV_REGISTER_NAME.WHvX64RegisterCr3].Reg64);
        Assert.Equal(LongModeSetup.Efer, r[WHV_REGISTER_NAME.WHvX64RegisterEfer].Reg64);
    }

    [Fact]
    public void Paging_is_enabled_in_a_legal_order()
    {
        Build(out _, out WHV_REGISTER_NAME[] order);
        int cr3 = Array.IndexOf(order, WHV_REGISTER_NAME.WHvX64RegisterCr3);
        int cr4 = Array.IndexOf(order, WHV_REGISTER_NAME.WHvX64RegisterCr4);
        int cr0 = Array.IndexOf(order, WHV_REGISTER_NAME.WHvX64RegisterCr0);
        int efer = Array.IndexOf(order, WHV_REGISTER_NAME.WHvX64RegisterEfer);
        int cs = Array.IndexOf(order, WHV_REGISTER_NAME.WHvX64RegisterCs);
        Assert.True(cr3 < cr4 && cr4 < cr0 && cr0 < efer && efer < cs, string.Join(", ", order));
    }

    [Fact]
    public void Entry_registers_follow_the_entry_convention()
    {
        Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> r = Build(out _, out _);
        Assert.Equal(0x10_1234UL, r[WHV_REGISTER_NAME.WHvX64RegisterRip].Reg64);
        Assert.Equal(4UL << 20, r[WHV_REGISTER_NAME.WHvX64RegisterRsp].Reg64);
        Assert.Equal(GuestLayout.BootInfo, r[WHV_REGISTER_NAME.WHvX64RegisterRdi].Reg64);
        Assert.Equal(0x2UL, r[WHV_REGISTER_NAME.WHvX64RegisterRflags].Reg64);
    }

    [Fact]
    public void Code_segment_is_flat_64_bit()
    {
        Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> r = Build(out LongModeState lm, out _);
        WHV_X64_SEGMENT_REGISTER cs = r[WHV_REGISTER_NAME.WHvX64RegisterCs].Segment;
        Assert.Equal(lm.CodeSelector, cs.Selector);
        Assert.Equal((ushort)0x08, cs.Selector);
        Assert.Equal(0UL, cs.Base);
        Assert.Equal(0xFFFF_FFFFu, cs.Limit);
        // type 0xB (exec/read, accessed) | S | DPL 0 | P | L | G; D must be 0 with L.
        Assert.Equal((ushort)0xA09B, cs.Attributes);
    }

    [Theory]
    [InlineData("WHvX64RegisterDs")]
    [InlineData("WHvX64RegisterEs")]
    [InlineData("WHvX64RegisterSs")]
    [InlineData("WHvX64RegisterFs")]
    [InlineData("WHvX64RegisterGs")]
    public void Data_segments_are_flat_read_write(string name)
    {
        Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> r = Build(out LongModeState lm, out _);
        WHV_X64_SEGMENT_REGISTER s = r[Enum.Parse<WHV_REGISTER_NAME>(name)].Segment;
        Assert.Equal(lm.DataSelector, s.Selector);
        Assert.Equal(0UL, s.Base);
        Assert.Equal(0xFFFF_FFFFu, s.Limit);
        // type 0x3 (read/write, accessed) | S | P | D/B | G.
        Assert.Equal((ushort)0xC093, s.Attributes);
    }

    [Fact]
    public void Task_register_is_the_busy_64_bit_tss()
    {
        Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> r = Build(out LongModeState lm, out _);
        WHV_X64_SEGMENT_REGISTER tr = r[WHV_REGISTER_NAME.WHvX64RegisterTr].Segment;
        Assert.Equal(lm.TssSelector, tr.Selector);
        Assert.Equal(0x67u, tr.Limit);
        Assert.Equal(0UL, tr.Base);
        Assert.Equal((ushort)0x008B, tr.Attributes); // type 0xB busy TSS, system, P
    }

    [Fact]
    public void Descriptor_tables()
    {
        Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> r = Build(out LongModeState lm, out _);
        WHV_X64_TABLE_REGISTER gdtr = r[WHV_REGISTER_NAME.WHvX64RegisterGdtr].Table;
        Assert.Equal(lm.GdtBase, gdtr.Base);
        Assert.Equal(lm.GdtLimit, gdtr.Limit);
        Assert.Equal((ushort)(LongModeSetup.GdtEntries.Length * 8 - 1), gdtr.Limit);
        WHV_X64_TABLE_REGISTER idtr = r[WHV_REGISTER_NAME.WHvX64RegisterIdtr].Table;
        Assert.Equal(0UL, idtr.Base);
        Assert.Equal((ushort)0, idtr.Limit);
    }

    [Fact]
    public void Exactly_the_documented_registers_are_set()
    {
        Dictionary<WHV_REGISTER_NAME, WHV_REGISTER_VALUE> r = Build(out _, out _);
        WHV_REGISTER_NAME[] expected =
        [
            WHV_REGISTER_NAME.WHvX64RegisterCr0, WHV_REGISTER_NAME.WHvX64RegisterCr3, WHV_REGISTER_NAME.WHvX64RegisterCr4,
            WHV_REGISTER_NAME.WHvX64RegisterEfer, WHV_REGISTER_NAME.WHvX64RegisterCs, WHV_REGISTER_NAME.WHvX64RegisterDs,
            WHV_REGISTER_NAME.WHvX64RegisterEs, WHV_REGISTER_NAME.WHvX64RegisterSs, WHV_REGISTER_NAME.WHvX64RegisterFs,
            WHV_REGISTER_NAME.WHvX64RegisterGs, WHV_REGISTER_NAME.WHvX64RegisterTr, WHV_REGISTER_NAME.WHvX64RegisterGdtr,
            WHV_REGISTER_NAME.WHvX64RegisterIdtr, WHV_REGISTER_NAME.WHvX64RegisterRip, WHV_REGISTER_NAME.WHvX64RegisterRsp,
            WHV_REGISTER_NAME.WHvX64RegisterRdi, WHV_REGISTER_NAME.WHvX64RegisterRflags,
        ];
        Assert.Equal(expected.OrderBy(x => x), r.Keys.OrderBy(x => x));
    }

    [Fact]
    public void Segment_decoding_handles_base_limit_and_system_descriptors()
    {
        // base 0x12345678, limit 0xABCDE, G = 0, data read/write, present.
        const ulong descriptor = 0x120A_9234_5678_BCDE;
        WHV_X64_SEGMENT_REGISTER s = WhpRegisters.Segment(descriptor, 0, 0x20);
        Assert.Equal(0x1234_5678UL, s.Base);
        Assert.Equal(0xABCDEu, s.Limit);
        Assert.Equal((ushort)0x0093, s.Attributes);
        // A 64-bit TSS takes base bits 63:32 from the upper half.
        WHV_X64_SEGMENT_REGISTER t = WhpRegisters.Segment(0x0000_8B00_0000_0067, 0x0000_0000_0000_00FF, 0x18);
        Assert.Equal(0xFF_0000_0000UL, t.Base);
        Assert.Equal((ushort)0x008B, t.Attributes);
        Assert.Throws<ArgumentOutOfRangeException>(() => WhpRegisters.SegmentFromGdt(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => WhpRegisters.SegmentFromGdt(0x800));
    }

    [Fact]
    public void State_round_trips_through_the_register_values()
    {
        var state = new VcpuState
        {
            Registers = new VcpuRegisters(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x10_0000, 0x202),
            Cs = new SegmentRegister(0x33, 0, 0xFFFF_FFFF, SegmentRegister.MakeAttributes(11, true, 3, true, @long: true, granularity: true)),
            Fs = new SegmentRegister(0, 0x7000_1000, 0, 0),
            Gdtr = new DescriptorTableRegister(0x1000, 0x3F),
            Idtr = new DescriptorTableRegister(0x2000, 0xFFF),
            Cr0 = 0x8005_0033, Cr2 = 0xDEAD_0000, Cr3 = 0x3000, Cr4 = 0x6A0, Cr8 = 0, Efer = 0xD01, Xcr0 = 3,
            Tsc = 99, Star = 0x0023_0010_0000_0000, Lstar = 0x10_2000, Cstar = 0, Sfmask = 0x4700, KernelGsBase = 0x8000, TscAux = 7,
        };
        state.Mxcsr = 0x1FA0;
        state.FpuControlWord = 0x27F;
        state.Xmm(15).Fill(0xAB);
        state.FpuRegister(7)[9] = 0x40;
        var values = new WHV_REGISTER_VALUE[WhpRegisters.StateNames.Length];
        WhpRegisters.WriteState(state, values);
        VcpuState back = WhpRegisters.ReadState(values);
        Assert.Equal(state.Registers, back.Registers);
        Assert.Equal(state.Cs, back.Cs);
        Assert.Equal(state.Fs, back.Fs);
        Assert.Equal((state.Gdtr, state.Idtr), (back.Gdtr, back.Idtr));
        Assert.Equal((state.Cr0, state.Cr2, state.Cr3, state.Cr4, state.Efer, state.Xcr0), (back.Cr0, back.Cr2, back.Cr3, back.Cr4, back.Efer, back.Xcr0));
        Assert.Equal((state.Tsc, state.Star, state.Lstar, state.Sfmask, state.KernelGsBase, state.TscAux), (back.Tsc, back.Star, back.Lstar, back.Sfmask, back.KernelGsBase, back.TscAux));
        Assert.Equal(state.ExtendedState.AsSpan(0, 512).ToArray(), back.ExtendedState.AsSpan(0, 512).ToArray());
        // WHP's FP/XMM control registers are the FXSAVE image's first 32 bytes: MXCSR sits in XmmControlStatus bits 64-95.
        int xmmControl = Array.IndexOf(WhpRegisters.StateNames, WHV_REGISTER_NAME.WHvX64RegisterXmmControlStatus);
        Assert.Equal(0x1FA0UL, values[xmmControl].Reg128.High64 & 0xFFFF_FFFF);
    }

    [Fact]
    public void Snapshot_registers_are_in_vcpu_registers_field_order()
    {
        string[] fields = typeof(VcpuRegisters).GetConstructors()[0].GetParameters().Select(p => p.Name!).ToArray();
        string[] names = WhpRegisters.SnapshotNames.ToArray().Select(n => n.ToString()["WHvX64Register".Length..]).ToArray();
        Assert.Equal(fields, names);
    }

    [Fact]
    public void Too_small_buffers_are_refused()
    {
        var lm = new LongModeState();
        var start = new VcpuStartState(0, 0, 0);
        Assert.Throws<ArgumentException>(() =>
            WhpRegisters.WriteLongModeStart(in lm, in start, new WHV_REGISTER_NAME[3], new WHV_REGISTER_VALUE[WhpRegisters.LongModeStartCount]));
    }

    [Fact]
    public unsafe void Register_value_buffers_are_16_byte_aligned()
    {
        for (int i = 0; i < 32; i++)
        {
            using var buffer = new AlignedBuffer(32 * sizeof(WHV_REGISTER_VALUE));
            Assert.Equal(0, (long)buffer.Pointer % 16);
            Assert.All(MemoryMarshal.AsBytes(buffer.AsSpan<WHV_REGISTER_VALUE>(32)).ToArray(), b => Assert.Equal(0, b));
            Assert.Throws<ArgumentOutOfRangeException>(() => buffer.AsSpan<WHV_REGISTER_VALUE>(33));
        }
    }
}
