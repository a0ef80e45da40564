using System.Runtime.CompilerServices;
using Paravirt.Hypervisor.Backends.Whp;

namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>
/// Compiles <c>whp_layout.c</c> against mingw-w64's WinHvPlatform headers and compares what the C compiler laid out
/// with the C# definitions: sizes, offsets and enum values, and whole golden structures (exit contexts, segment and
/// table registers) built with the header's own bit-field names, decoded by the C# code. This is the strongest check
/// available without Windows: it catches a wrong offset, a bit-field in the wrong bit, or a wrong enum value.
/// </summary>
public sealed class WhpHeaderCrossCheckTests
{
    internal const string Gcc = "x86_64-w64-mingw32-gcc";
    internal const string Objcopy = "x86_64-w64-mingw32-objcopy";

    private static readonly Lazy<string> Object = new(Compile);

    private static string Compile()
    {
        string source = Path.Combine(RepoPaths.Root, "tests", "Paravirt.Hypervisor.Tests", "Whp", "whp_layout.c");
        string dir = Directory.CreateTempSubdirectory("paravirt-whp-").FullName;
        string obj = Path.Combine(dir, "whp_layout.o");
        ProcessRunner.RunChecked(Gcc, "-std=c11", "-Wall", "-Werror", "-O0", "-fdata-sections", "-c", source, "-o", obj);
        return obj;
    }

    /// <summary>The bytes of the constant <paramref name="symbol"/> (its own <c>.rdata$symbol</c> section).</summary>
    private static byte[] Section(string symbol)
    {
        string output = Path.Combine(Path.GetDirectoryName(Object.Value)!, symbol + ".bin");
        ProcessRunner.RunChecked(Objcopy, "-O", "binary", "--only-section=.rdata$" + symbol, Object.Value, output);
        byte[] bytes = File.ReadAllBytes(output);
        Assert.True(bytes.Length > 0, $"section .rdata${symbol} is empty or missing");
        return bytes;
    }

    /// <summary>The C# side of <c>whp_layout[]</c>, in the same order.</summary>
    private static (string What, uint Value)[] LayoutEntries() =>
    [
        ("sizeof(WHV_RUN_VP_EXIT_CONTEXT)", (uint)Unsafe.SizeOf<WHV_RUN_VP_EXIT_CONTEXT>()),
        ("sizeof(WHV_VP_EXIT_CONTEXT)", (uint)Unsafe.SizeOf<WHV_VP_EXIT_CONTEXT>()),
        ("sizeof(WHV_X64_IO_PORT_ACCESS_CONTEXT)", (uint)Unsafe.SizeOf<WHV_X64_IO_PORT_ACCESS_CONTEXT>()),
        ("sizeof(WHV_MEMORY_ACCESS_CONTEXT)", (uint)Unsafe.SizeOf<WHV_MEMORY_ACCESS_CONTEXT>()),
        ("sizeof(WHV_VP_EXCEPTION_CONTEXT)", (uint)Unsafe.SizeOf<WHV_VP_EXCEPTION_CONTEXT>()),
        ("sizeof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT)", (uint)Unsafe.SizeOf<WHV_X64_UNSUPPORTED_FEATURE_CONTEXT>()),
        ("sizeof(WHV_X64_SEGMENT_REGISTER)", (uint)Unsafe.SizeOf<WHV_X64_SEGMENT_REGISTER>()),
        ("sizeof(WHV_X64_TABLE_REGISTER)", (uint)Unsafe.SizeOf<WHV_X64_TABLE_REGISTER>()),
        ("sizeof(WHV_REGISTER_VALUE)", (uint)Unsafe.SizeOf<WHV_REGISTER_VALUE>()),
        ("sizeof(WHV_CAPABILITY)", WhpUnionSizes.WHV_CAPABILITY),
        ("sizeof(WHV_PARTITION_PROPERTY)", WhpUnionSizes.WHV_PARTITION_PROPERTY),
        ("WHV_RUN_VP_EXIT_CONTEXT.ExitReason", Off<WHV_RUN_VP_EXIT_CONTEXT>("ExitReason")),
        ("WHV_RUN_VP_EXIT_CONTEXT.VpContext", Off<WHV_RUN_VP_EXIT_CONTEXT>("VpContext")),
        ("WHV_RUN_VP_EXIT_CONTEXT.IoPortAccess", Off<WHV_RUN_VP_EXIT_CONTEXT>("IoPortAccess")),
        ("WHV_RUN_VP_EXIT_CONTEXT.MemoryAccess", Off<WHV_RUN_VP_EXIT_CONTEXT>("MemoryAccess")),
        ("WHV_VP_EXIT_CONTEXT.Cs", Off<WHV_VP_EXIT_CONTEXT>("Cs")),
        ("WHV_VP_EXIT_CONTEXT.Rip", Off<WHV_VP_EXIT_CONTEXT>("Rip")),
        ("WHV_VP_EXIT_CONTEXT.Rflags", Off<WHV_VP_EXIT_CONTEXT>("Rflags")),
        ("WHV_X64_IO_PORT_ACCESS_CONTEXT.InstructionBytes", Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>("InstructionBytes")),
        ("WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessInfo", Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>("AccessInfo")),
        ("WHV_X64_IO_PORT_ACCESS_CONTEXT.PortNumber", Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>("PortNumber")),
        ("WHV_X64_IO_PORT_ACCESS_CONTEXT.Rax", Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>("Rax")),
        ("WHV_X64_IO_PORT_ACCESS_CONTEXT.Rdi", Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>("Rdi")),
        ("WHV_X64_IO_PORT_ACCESS_CONTEXT.Ds", Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>("Ds")),
        ("WHV_X64_IO_PORT_ACCESS_CONTEXT.Es", Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>("Es")),
        ("WHV_MEMORY_ACCESS_CONTEXT.AccessInfo", Off<WHV_MEMORY_ACCESS_CONTEXT>("AccessInfo")),
        ("WHV_MEMORY_ACCESS_CONTEXT.Gpa", Off<WHV_MEMORY_ACCESS_CONTEXT>("Gpa")),
        ("WHV_MEMORY_ACCESS_CONTEXT.Gva", Off<WHV_MEMORY_ACCESS_CONTEXT>("Gva")),
        ("WHV_X64_SEGMENT_REGISTER.Limit", Off<WHV_X64_SEGMENT_REGISTER>("Limit")),
        ("WHV_X64_SEGMENT_REGISTER.Selector", Off<WHV_X64_SEGMENT_REGISTER>("Selector")),
        ("WHV_X64_SEGMENT_REGISTER.Attributes", Off<WHV_X64_SEGMENT_REGISTER>("Attributes")),
        ("WHV_X64_TABLE_REGISTER.Limit", Off<WHV_X64_TABLE_REGISTER>("Limit")),
        ("WHV_X64_TABLE_REGISTER.Base", Off<WHV_X64_TABLE_REGISTER>("Base")),
        ("WHvX64RegisterEfer", (uint)WHV_REGISTER_NAME.WHvX64RegisterEfer),
        ("WHvPartitionPropertyCodeProcessorCount", (uint)WHV_PARTITION_PROPERTY_CODE.WHvPartitionPropertyCodeProcessorCount),
        ("WHvRunVpExitReasonCanceled", (uint)WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonCanceled),
        ("Read|Write|Execute", (uint)(WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagRead | WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagWrite | WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagExecute)),
    ];

    private static uint Off<T>(string field) => (uint)Marshal.OffsetOf<T>(field);

    private static T Golden<T>(string symbol) where T : unmanaged
    {
        byte[] bytes = Section(symbol);
        Assert.True(bytes.Length >= Unsafe.SizeOf<T>(), $"{symbol}: {bytes.Length} bytes, expected {Unsafe.SizeOf<T>()}");
        return MemoryMarshal.Read<T>(bytes);
    }

    [ToolFact(WhpHeaderCrossCheckTests.Gcc, WhpHeaderCrossCheckTests.Objcopy)]
    public void Sizes_offsets_and_values_match_the_compiled_header()
    {
        byte[] bytes = Section("whp_layout");
        uint[] c = MemoryMarshal.Cast<byte, uint>(bytes).ToArray();
        (string What, uint Value)[] cs = LayoutEntries();
        Assert.Equal((uint)cs.Length, c[0]);
        for (int i = 0; i < cs.Length; i++)
        {
            Assert.True(c[i + 1] == cs[i].Value, $"{cs[i].What}: header {c[i + 1]}, C# {cs[i].Value}");
        }
    }

    [ToolFact(WhpHeaderCrossCheckTests.Gcc, WhpHeaderCrossCheckTests.Objcopy)]
    public void A_compiled_hypercall_exit_decodes_as_a_hypercall()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Golden<WHV_RUN_VP_EXIT_CONTEXT>("whp_exit_hypercall");
        Assert.Equal(2, ctx.VpContext.InstructionLength); // Cr8 = 0xF sits in the other nibble
        Assert.Equal(0x42UL, ctx.IoPortAccess.Rax);
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.True(HypercallTrap.IsHypercall(exit), $"{exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
        Assert.Equal(0x3000UL, exit.Rip);
        Assert.Equal(0x3002UL, next);
    }

    [ToolFact(WhpHeaderCrossCheckTests.Gcc, WhpHeaderCrossCheckTests.Objcopy)]
    public void A_compiled_rep_outsb_exit_decodes_as_port_io()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Golden<WHV_RUN_VP_EXIT_CONTEXT>("whp_exit_rep_outsb");
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.IoOut, exit.Kind);
        Assert.Equal(0xE2UL, exit.Address);
        Assert.Equal(0x10_0000UL, next);
        Assert.StartsWith("rep string out of 1 byte(s)", exit.Detail, StringComparison.Ordinal);
    }

    [ToolFact(WhpHeaderCrossCheckTests.Gcc, WhpHeaderCrossCheckTests.Objcopy)]
    public void A_compiled_memory_access_exit_decodes_as_mmio()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Golden<WHV_RUN_VP_EXIT_CONTEXT>("whp_exit_mmio_write");
        (VcpuExit exit, _) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.Mmio, exit.Kind);
        Assert.Equal(0x4000_0000UL, exit.Address);
        Assert.Equal(0x10_0010UL, exit.Rip);
        Assert.Equal("write at guest-physical 0x40000000 (virtual 0x40000000)", exit.Detail);
    }

    [ToolFact(WhpHeaderCrossCheckTests.Gcc, WhpHeaderCrossCheckTests.Objcopy)]
    public void Segments_built_from_the_gdt_equal_the_header_bit_fields()
    {
        AssertBytesEqual(Section("whp_seg_code"), WhpRegisters.SegmentFromGdt(0x08));
        AssertBytesEqual(Section("whp_seg_data"), WhpRegisters.SegmentFromGdt(0x10));
        AssertBytesEqual(Section("whp_seg_tss"), WhpRegisters.SegmentFromGdt(0x18));
        AssertBytesEqual(Section("whp_gdtr"), new WHV_X64_TABLE_REGISTER { Limit = 39, Base = 0x1000 });
    }

    private static void AssertBytesEqual<T>(byte[] golden, T value) where T : unmanaged
    {
        byte[] mine = new byte[Unsafe.SizeOf<T>()];
        MemoryMarshal.Write(mine, in value);
        Assert.Equal(Convert.ToHexString(golden.AsSpan(0, mine.Length)), Convert.ToHexString(mine));
    }
}
