using System.Text;

namespace Paravirt.Hypervisor.Debugging.Gdb;

/// <summary>
/// The registers the stub offers gdb and how each maps onto a <see cref="VcpuState"/>: the numbering and sizes of
/// the target description (<see cref="TargetXml"/>), which is gdb's own amd64 layout (features
/// <c>org.gnu.gdb.i386.core</c>, <c>.sse</c>, <c>.linux</c>, <c>.segments</c>) plus the control registers in a
/// feature of ours. The <c>g</c> packet carries registers 0 to <see cref="GPacketCount"/> - 1 in order.
/// </summary>
internal static class GdbRegisters
{
    private enum Kind { Gpr, Rip, Eflags, Segment, St, Fpu, Xmm, Mxcsr, OrigRax, FsBase, GsBase, Control }

    private readonly record struct Register(string Name, int Bits, Kind Kind, int Index, string Type, string? Group = null);

    private static readonly Register[] Table = Build();

    /// <summary>Registers sent in a <c>g</c> packet: the core and SSE features (rax ... mxcsr).</summary>
    internal static readonly int GPacketCount = Array.FindIndex(Table, r => r.Kind == Kind.Mxcsr) + 1;

    internal static int Count => Table.Length;

    /// <summary>Bytes of register <paramref name="number"/> on the wire.</summary>
    internal static int Size(int number) => Table[number].Bits / 8;

    private static Register[] Build()
    {
        var list = new List<Register>();
        // gdb's amd64 order: rax rbx rcx rdx rsi rdi rbp rsp r8-r15 (VcpuRegisters index below).
        string[] gprs = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
        for (int i = 0; i < gprs.Length; i++)
        {
            list.Add(new Register(gprs[i], 64, Kind.Gpr, i, gprs[i] is "rbp" or "rsp" ? "data_ptr" : "int64"));
        }
        list.Add(new Register("rip", 64, Kind.Rip, 0, "code_ptr"));
        list.Add(new Register("eflags", 32, Kind.Eflags, 0, "i386_eflags"));
        string[] segments = ["cs", "ss", "ds", "es", "fs", "gs"];
        for (int i = 0; i < segments.Length; i++)
        {
            list.Add(new Register(segments[i], 32, Kind.Segment, i, "int32"));
        }
        for (int i = 0; i < 8; i++)
        {
            list.Add(new Register($"st{i}", 80, Kind.St, i, "i387_ext"));
        }
        string[] fpu = ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"];
        for (int i = 0; i < fpu.Length; i++)
        {
            list.Add(new Register(fpu[i], 32, Kind.Fpu, i, "int", "float"));
        }
        for (int i = 0; i < 16; i++)
        {
            list.Add(new Register($"xmm{i}", 128, Kind.Xmm, i, "vec128"));
        }
        list.Add(new Register("mxcsr", 32, Kind.Mxcsr, 0, "i386_mxcsr", "vector"));
        list.Add(new Register("orig_rax", 64, Kind.OrigRax, 0, "int", "system"));
        list.Add(new Register("fs_base", 64, Kind.FsBase, 0, "int", "system"));
        list.Add(new Register("gs_base", 64, Kind.GsBase, 0, "int", "system"));
        string[] control = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer"];
        for (int i = 0; i < control.Length; i++)
        {
            list.Add(new Register(control[i], 64, Kind.Control, i, "uint64", "system"));
        }
        return [.. list];
    }

    /// <summary>Writes register <paramref name="number"/> of <paramref name="state"/> in target byte order (little-endian).</summary>
    internal static void Read(VcpuState state, int number, Span<byte> destination)
    {
        Register r = Table[number];
        VcpuRegisters g = state.Registers;
        ReadOnlySpan<byte> fx = state.ExtendedState;
        switch (r.Kind)
        {
            case Kind.Gpr: BinaryPrimitives.WriteUInt64LittleEndian(destination, Gpr(g, r.Index)); break;
            case Kind.Rip: BinaryPrimitives.WriteUInt64LittleEndian(destination, g.Rip); break;
            case Kind.Eflags: BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)g.Rflags); break;
            case Kind.Segment: BinaryPrimitives.WriteUInt32LittleEndian(destination, Segment(state, r.Index).Selector); break;
            case Kind.St: fx.Slice(32 + (16 * r.Index), 10).CopyTo(destination); break;
            case Kind.Fpu: BinaryPrimitives.WriteUInt32LittleEndian(destination, FpuField(fx, r.Index)); break;
            case Kind.Xmm: fx.Slice(160 + (16 * r.Index), 16).CopyTo(destination); break;
            case Kind.Mxcsr: BinaryPrimitives.WriteUInt32LittleEndian(destination, state.Mxcsr); break;
            case Kind.OrigRax: BinaryPrimitives.WriteUInt64LittleEndian(destination, ulong.MaxValue); break;
            case Kind.FsBase: BinaryPrimitives.WriteUInt64LittleEndian(destination, state.Fs.Base); break;
            case Kind.GsBase: BinaryPrimitives.WriteUInt64LittleEndian(destination, state.Gs.Base); break;
            default:
                ulong cr = r.Index switch { 0 => state.Cr0, 1 => state.Cr2, 2 => state.Cr3, 3 => state.Cr4, 4 => state.Cr8, _ => state.Efer };
                BinaryPrimitives.WriteUInt64LittleEndian(destination, cr);
                break;
        }
    }

    /// <summary>Sets register <paramref name="number"/> of <paramref name="state"/> from <paramref name="value"/> (its exact size).</summary>
    internal static void Write(VcpuState state, int number, ReadOnlySpan<byte> value)
    {
        Register r = Table[number];
        Span<byte> fx = state.ExtendedState;
        switch (r.Kind)
        {
            case Kind.Gpr: state.Registers = WithGpr(state.Registers, r.Index, BinaryPrimitives.ReadUInt64LittleEndian(value)); break;
            case Kind.Rip: state.Registers = state.Registers with { Rip = BinaryPrimitives.ReadUInt64LittleEndian(value) }; break;
            case Kind.Eflags: state.Registers = state.Registers with { Rflags = (state.Registers.Rflags & ~0xFFFF_FFFFUL) | BinaryPrimitives.ReadUInt32LittleEndian(value) }; break;
            case Kind.Segment:
            {
                ushort selector = (ushort)BinaryPrimitives.ReadUInt32LittleEndian(value);
                switch (r.Index)
                {
                    case 0: state.Cs = state.Cs with { Selector = selector }; break;
                    case 1: state.Ss = state.Ss with { Selector = selector }; break;
                    case 2: state.Ds = state.Ds with { Selector = selector }; break;
                    case 3: state.Es = state.Es with { Selector = selector }; break;
                    case 4: state.Fs = state.Fs with { Selector = selector }; break;
                    default: state.Gs = state.Gs with { Selector = selector }; break;
                }
                break;
            }
            case Kind.St: value[..10].CopyTo(fx.Slice(32 + (16 * r.Index), 10)); break;
            case Kind.Fpu: SetFpuField(fx, r.Index, BinaryPrimitives.ReadUInt32LittleEndian(value)); break;
            case Kind.Xmm: value[..16].CopyTo(fx.Slice(160 + (16 * r.Index), 16)); break;
            case Kind.Mxcsr: state.Mxcsr = BinaryPrimitives.ReadUInt32LittleEndian(value); break;
            case Kind.OrigRax: break; // gdb writes -1 here when it moves pc (Linux syscall restart); there is nothing to restart
            case Kind.FsBase: state.Fs = state.Fs with { Base = BinaryPrimitives.ReadUInt64LittleEndian(value) }; break;
            case Kind.GsBase: state.Gs = state.Gs with { Base = BinaryPrimitives.ReadUInt64LittleEndian(value) }; break;
            default:
                ulong v = BinaryPrimitives.ReadUInt64LittleEndian(value);
                switch (r.Index)
                {
                    case 0: state.Cr0 = v; break;
                    case 1: state.Cr2 = v; break;
                    case 2: state.Cr3 = v; break;
                    case 3: state.Cr4 = v; break;
                    case 4: state.Cr8 = v; break;
                    default: state.Efer = v; break;
                }
                break;
        }
    }

    private static ulong Gpr(in VcpuRegisters g, int index) => index switch
    {
        0 => g.Rax, 1 => g.Rbx, 2 => g.Rcx, 3 => g.Rdx, 4 => g.Rsi, 5 => g.Rdi, 6 => g.Rbp, 7 => g.Rsp,
        8 => g.R8, 9 => g.R9, 10 => g.R10, 11 => g.R11, 12 => g.R12, 13 => g.R13, 14 => g.R14, _ => g.R15,
    };

    private static VcpuRegisters WithGpr(in VcpuRegisters g, int index, ulong v) => index switch
    {
        0 => g with { Rax = v }, 1 => g with { Rbx = v }, 2 => g with { Rcx = v }, 3 => g with { Rdx = v },
        4 => g with { Rsi = v }, 5 => g with { Rdi = v }, 6 => g with { Rbp = v }, 7 => g with { Rsp = v },
        8 => g with { R8 = v }, 9 => g with { R9 = v }, 10 => g with { R10 = v }, 11 => g with { R11 = v },
        12 => g with { R12 = v }, 13 => g with { R13 = v }, 14 => g with { R14 = v }, _ => g with { R15 = v },
    };

    private static SegmentRegister Segment(VcpuState s, int index) => index switch
    {
        0 => s.Cs, 1 => s.Ss, 2 => s.Ds, 3 => s.Es, 4 => s.Fs, _ => s.Gs,
    };

    /// <summary>
    /// fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop from the FXSAVE image (64-bit format: FIP and FDP are
    /// 64-bit; gdb's fioff/fooff take their low halves and fiseg/foseg bits 32-47). The FXSAVE tag byte has one bit
    /// per register (valid or empty); gdb wants the full two-bit tag word, rebuilt here as valid (00) or empty (11).
    /// </summary>
    private static uint FpuField(ReadOnlySpan<byte> fx, int index) => index switch
    {
        0 => BinaryPrimitives.ReadUInt16LittleEndian(fx),
        1 => BinaryPrimitives.ReadUInt16LittleEndian(fx[2..]),
        2 => FullTag(fx[4]),
        3 => BinaryPrimitives.ReadUInt16LittleEndian(fx[12..]),
        4 => BinaryPrimitives.ReadUInt32LittleEndian(fx[8..]),
        5 => BinaryPrimitives.ReadUInt16LittleEndian(fx[20..]),
        6 => BinaryPrimitives.ReadUInt32LittleEndian(fx[16..]),
        _ => (uint)(BinaryPrimitives.ReadUInt16LittleEndian(fx[6..]) & 0x7FF),
    };

    private static void SetFpuField(Span<byte> fx, int index, uint v)
    {
        switch (index)
        {
            case 0: BinaryPrimitives.WriteUInt16LittleEndian(fx, (ushort)v); break;
            case 1: BinaryPrimitives.WriteUInt16LittleEndian(fx[2..], (ushort)v); break;
            case 2: fx[4] = AbridgedTag(v); break;
            case 3: BinaryPrimitives.WriteUInt16LittleEndian(fx[12..], (ushort)v); break;
            case 4: BinaryPrimitives.WriteUInt32LittleEndian(fx[8..], v); break;
            case 5: BinaryPrimitives.WriteUInt16LittleEndian(fx[20..], (ushort)v); break;
            case 6: BinaryPrimitives.WriteUInt32LittleEndian(fx[16..], v); break;
            default: BinaryPrimitives.WriteUInt16LittleEndian(fx[6..], (ushort)(v & 0x7FF)); break;
        }
    }

    private static uint FullTag(byte abridged)
    {
        uint tag = 0;
        for (int i = 0; i < 8; i++)
        {
            tag |= ((abridged >> i) & 1) != 0 ? 0u : 3u << (2 * i);
        }
        return tag;
    }

    private static byte AbridgedTag(uint full)
    {
        byte tag = 0;
        for (int i = 0; i < 8; i++)
        {
            if (((full >> (2 * i)) & 3) != 3)
            {
                tag |= (byte)(1 << i);
            }
        }
        return tag;
    }

    /// <summary>A 32-bit gdb <c>flags</c> type of one-bit fields, three to a line: each field's name and bit.</summary>
    private static void AppendFlags(StringBuilder sb, string id, params (string Name, int Bit)[] fields)
    {
        sb.Append("    <flags id=\"").Append(id).Append("\" size=\"4\">\n");
        for (int i = 0; i < fields.Length; i++)
        {
            (string name, int bit) = fields[i];
            sb.Append(i % 3 == 0 ? "      " : "")
              .Append("<field name=\"").Append(name).Append("\" start=\"").Append(bit).Append("\" end=\"").Append(bit).Append("\"/>")
              .Append(i % 3 == 2 || i == fields.Length - 1 ? "\n" : "");
        }
        sb.Append("    </flags>\n");
    }

    /// <summary>The target description gdb asks for with <c>qXfer:features:read:target.xml</c>.</summary>
    internal static string TargetXml { get; } = BuildXml();

    private static string BuildXml()
    {
        var sb = new StringBuilder();
        sb.Append("""
            <?xml version="1.0"?>
            <!DOCTYPE target SYSTEM "gdb-target.dtd">
            <target version="1.0">
              <architecture>i386:x86-64</architecture>
              <feature name="org.gnu.gdb.i386.core">

            """);
        AppendFlags(sb, "i386_eflags",
            ("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9), ("DF", 10), ("OF", 11),
            ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21));
        int n = 0;
        void Reg(Register r, string indent = "    ")
        {
            sb.Append(indent).Append("<reg name=\"").Append(r.Name).Append("\" bitsize=\"").Append(r.Bits)
              .Append("\" type=\"").Append(r.Type).Append("\" regnum=\"").Append(n).Append('"');
            if (r.Group is not null)
            {
                sb.Append(" group=\"").Append(r.Group).Append('"');
            }
            sb.Append("/>\n");
            n++;
        }
        foreach (Register r in Table.TakeWhile(r => r.Kind is not Kind.Xmm))
        {
            Reg(r);
        }
        sb.Append("""
              </feature>
              <feature name="org.gnu.gdb.i386.sse">
                <vector id="v4f" type="ieee_single" count="4"/>
                <vector id="v2d" type="ieee_double" count="2"/>
                <vector id="v16i8" type="int8" count="16"/>
                <vector id="v8i16" type="int16" count="8"/>
                <vector id="v4i32" type="int32" count="4"/>
                <vector id="v2i64" type="int64" count="2"/>
                <union id="vec128">
                  <field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>
                  <field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
                  <field name="uint128" type="uint128"/>
                </union>

            """);
        AppendFlags(sb, "i386_mxcsr",
            ("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5), ("DAZ", 6), ("IM", 7), ("DM", 8), ("ZM", 9),
            ("OM", 10), ("UM", 11), ("PM", 12), ("FZ", 15));
        foreach (Register r in Table.Where(r => r.Kind is Kind.Xmm or Kind.Mxcsr))
        {
            Reg(r);
        }
        sb.Append("  </feature>\n  <feature name=\"org.gnu.gdb.i386.linux\">\n");
        Reg(Table.First(r => r.Kind == Kind.OrigRax));
        sb.Append("  </feature>\n  <feature name=\"org.gnu.gdb.i386.segments\">\n");
        Reg(Table.First(r => r.Kind == Kind.FsBase));
        Reg(Table.First(r => r.Kind == Kind.GsBase));
        sb.Append("  </feature>\n  <feature name=\"org.paravirt.x86.control\">\n");
        foreach (Register r in Table.Where(r => r.Kind == Kind.Control))
        {
            Reg(r);
        }
        sb.Append("  </feature>\n</target>\n");
        return sb.ToString();
    }
}
