using System.Runtime.CompilerServices;

namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>
/// Pins every WHP structure the backend passes or reads against the documented layout: WinHvPlatformDefs.h of the
/// Windows SDK as mirrored by mingw-w64 10.0.0 (<c>/usr/share/mingw-w64/include/winhvplatformdefs.h</c>), whose
/// <c>C_ASSERT</c>s give the sizes (WHV_RUN_VP_EXIT_CONTEXT 224, WHV_VP_EXIT_CONTEXT 40,
/// WHV_X64_IO_PORT_ACCESS_CONTEXT 96, WHV_MEMORY_ACCESS_CONTEXT 40, WHV_VP_EXCEPTION_CONTEXT 40,
/// WHV_X64_UNSUPPORTED_FEATURE_CONTEXT 16, WHV_X64_SEGMENT_REGISTER 16, WHV_REGISTER_VALUE 16) and whose field
/// lists give the offsets (natural alignment, x64). <see cref="WhpHeaderCrossCheckTests"/> compiles the header to
/// check the same numbers where mingw-w64 gcc is installed.
/// </summary>
public sealed class WhpLayoutTests : StructLayoutTests
{
    /// <summary>sizeof of every structure, union and enum the backend passes or reads.</summary>
    public static TheoryData<Type, int> Sizes => new()
    {
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), 224 },
        { typeof(WHV_VP_EXIT_CONTEXT), 40 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), 96 },
        { typeof(WHV_MEMORY_ACCESS_CONTEXT), 40 },
        { typeof(WHV_VP_EXCEPTION_CONTEXT), 40 },
        { typeof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT), 16 },
        { typeof(WHV_RUN_VP_CANCELED_CONTEXT), 4 },
        { typeof(WHV_X64_SEGMENT_REGISTER), 16 },
        { typeof(WHV_X64_TABLE_REGISTER), 16 },
        { typeof(WHV_UINT128), 16 },
        { typeof(WHV_REGISTER_VALUE), 16 },
        { typeof(WHV_REGISTER_NAME), 4 },
        { typeof(WHV_RUN_VP_EXIT_REASON), 4 },
    };

    /// <summary>The offset of every field the backend writes or reads (the union members all start at 0).</summary>
    public static TheoryData<Type, string, int> Offsets => new()
    {
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.ExitReason), 0 },
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.Reserved), 4 },
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.VpContext), 8 },
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.MemoryAccess), 48 },
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.IoPortAccess), 48 },
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.VpException), 48 },
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.UnsupportedFeature), 48 },
        { typeof(WHV_RUN_VP_EXIT_CONTEXT), nameof(WHV_RUN_VP_EXIT_CONTEXT.CancelReason), 48 },
        { typeof(WHV_VP_EXIT_CONTEXT), nameof(WHV_VP_EXIT_CONTEXT.ExecutionState), 0 },
        { typeof(WHV_VP_EXIT_CONTEXT), nameof(WHV_VP_EXIT_CONTEXT.InstructionLengthCr8), 2 },
        { typeof(WHV_VP_EXIT_CONTEXT), nameof(WHV_VP_EXIT_CONTEXT.Reserved), 3 },
        { typeof(WHV_VP_EXIT_CONTEXT), nameof(WHV_VP_EXIT_CONTEXT.Reserved2), 4 },
        { typeof(WHV_VP_EXIT_CONTEXT), nameof(WHV_VP_EXIT_CONTEXT.Cs), 8 },
        { typeof(WHV_VP_EXIT_CONTEXT), nameof(WHV_VP_EXIT_CONTEXT.Rip), 24 },
        { typeof(WHV_VP_EXIT_CONTEXT), nameof(WHV_VP_EXIT_CONTEXT.Rflags), 32 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.InstructionByteCount), 0 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Reserved), 1 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.InstructionBytes), 4 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessInfo), 20 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.PortNumber), 24 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Reserved2), 26 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rax), 32 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rcx), 40 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rsi), 48 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rdi), 56 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Ds), 64 },
        { typeof(WHV_X64_IO_PORT_ACCESS_CONTEXT), nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Es), 80 },
        { typeof(WHV_MEMORY_ACCESS_CONTEXT), nameof(WHV_MEMORY_ACCESS_CONTEXT.InstructionByteCount), 0 },
        { typeof(WHV_MEMORY_ACCESS_CONTEXT), nameof(WHV_MEMORY_ACCESS_CONTEXT.InstructionBytes), 4 },
        { typeof(WHV_MEMORY_ACCESS_CONTEXT), nameof(WHV_MEMORY_ACCESS_CONTEXT.AccessInfo), 20 },
        { typeof(WHV_MEMORY_ACCESS_CONTEXT), nameof(WHV_MEMORY_ACCESS_CONTEXT.Gpa), 24 },
        { typeof(WHV_MEMORY_ACCESS_CONTEXT), nameof(WHV_MEMORY_ACCESS_CONTEXT.Gva), 32 },
        { typeof(WHV_VP_EXCEPTION_CONTEXT), nameof(WHV_VP_EXCEPTION_CONTEXT.ExceptionInfo), 20 },
        { typeof(WHV_VP_EXCEPTION_CONTEXT), nameof(WHV_VP_EXCEPTION_CONTEXT.ExceptionType), 24 },
        { typeof(WHV_VP_EXCEPTION_CONTEXT), nameof(WHV_VP_EXCEPTION_CONTEXT.ErrorCode), 28 },
        { typeof(WHV_VP_EXCEPTION_CONTEXT), nameof(WHV_VP_EXCEPTION_CONTEXT.ExceptionParameter), 32 },
        { typeof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT), nameof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT.FeatureCode), 0 },
        { typeof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT), nameof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT.FeatureParameter), 8 },
        { typeof(WHV_X64_SEGMENT_REGISTER), nameof(WHV_X64_SEGMENT_REGISTER.Base), 0 },
        { typeof(WHV_X64_SEGMENT_REGISTER), nameof(WHV_X64_SEGMENT_REGISTER.Limit), 8 },
        { typeof(WHV_X64_SEGMENT_REGISTER), nameof(WHV_X64_SEGMENT_REGISTER.Selector), 12 },
        { typeof(WHV_X64_SEGMENT_REGISTER), nameof(WHV_X64_SEGMENT_REGISTER.Attributes), 14 },
        { typeof(WHV_X64_TABLE_REGISTER), nameof(WHV_X64_TABLE_REGISTER.Pad), 0 },
        { typeof(WHV_X64_TABLE_REGISTER), nameof(WHV_X64_TABLE_REGISTER.Limit), 6 },
        { typeof(WHV_X64_TABLE_REGISTER), nameof(WHV_X64_TABLE_REGISTER.Base), 8 },
        { typeof(WHV_REGISTER_VALUE), "Reg128", 0 },
        { typeof(WHV_REGISTER_VALUE), "Reg64", 0 },
        { typeof(WHV_REGISTER_VALUE), "Reg32", 0 },
        { typeof(WHV_REGISTER_VALUE), "Reg16", 0 },
        { typeof(WHV_REGISTER_VALUE), "Reg8", 0 },
        { typeof(WHV_REGISTER_VALUE), "Segment", 0 },
        { typeof(WHV_REGISTER_VALUE), "Table", 0 },
        { typeof(WHV_UINT128), nameof(WHV_UINT128.High64), 8 },
    };

    [Fact]
    public void The_backend_constants_agree_with_the_layout()
    {
        Assert.Equal(WHV_RUN_VP_EXIT_CONTEXT.Size, Unsafe.SizeOf<WHV_RUN_VP_EXIT_CONTEXT>());
        Assert.Equal(48, WHV_RUN_VP_EXIT_CONTEXT.UnionOffset);
    }

    [Fact]
    public void Union_buffers_have_the_header_sizes()
    {
        // sizeof of the unions, measured with mingw-w64 gcc on the header (and re-checked by WhpHeaderCrossCheckTests).
        Assert.Equal(24, WhpUnionSizes.WHV_CAPABILITY);
        Assert.Equal(48, WhpUnionSizes.WHV_PARTITION_PROPERTY);
    }

    [Fact]
    public void Instruction_length_is_the_low_nibble()
    {
        // UINT8 InstructionLength : 4; UINT8 Cr8 : 4; — bit-fields fill from the low bit on x64 (MSVC and gcc).
        var ctx = new WHV_VP_EXIT_CONTEXT { InstructionLengthCr8 = 0xF2 };
        Assert.Equal(2, ctx.InstructionLength);
    }

    [Fact]
    public void Io_port_access_info_bits()
    {
        // WHV_X64_IO_PORT_ACCESS_INFO: IsWrite:1, AccessSize:3, StringOp:1, RepPrefix:1.
        Assert.Equal(0x01u, WHV_X64_IO_PORT_ACCESS_CONTEXT.IsWriteBit);
        Assert.Equal(1, WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessSizeShift);
        Assert.Equal(0x7u, WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessSizeMask);
        Assert.Equal(0x10u, WHV_X64_IO_PORT_ACCESS_CONTEXT.StringOpBit);
        Assert.Equal(0x20u, WHV_X64_IO_PORT_ACCESS_CONTEXT.RepPrefixBit);
    }

    [Fact]
    public void Register_values_overlay_little_endian()
    {
        var v = new WHV_REGISTER_VALUE { Reg64 = 0x1122_3344_5566_7788 };
        Assert.Equal(0x5566_7788u, v.Reg32);
        Assert.Equal((ushort)0x7788, v.Reg16);
        Assert.Equal(0x1122_3344_5566_7788UL, v.Reg128.Low64);
        Assert.Equal(0UL, v.Reg128.High64);
    }
}
