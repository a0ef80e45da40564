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
public sealed class WhpLayoutTests
{
    private static int Off<T>(string field) => (int)Marshal.OffsetOf<T>(field);

    [Fact]
    public void Sizes_match_the_header()
    {
        Assert.Equal(224, Unsafe.SizeOf<WHV_RUN_VP_EXIT_CONTEXT>());
        Assert.Equal(WHV_RUN_VP_EXIT_CONTEXT.Size, Unsafe.SizeOf<WHV_RUN_VP_EXIT_CONTEXT>());
        Assert.Equal(40, Unsafe.SizeOf<WHV_VP_EXIT_CONTEXT>());
        Assert.Equal(96, Unsafe.SizeOf<WHV_X64_IO_PORT_ACCESS_CONTEXT>());
        Assert.Equal(40, Unsafe.SizeOf<WHV_MEMORY_ACCESS_CONTEXT>());
        Assert.Equal(40, Unsafe.SizeOf<WHV_VP_EXCEPTION_CONTEXT>());
        Assert.Equal(16, Unsafe.SizeOf<WHV_X64_UNSUPPORTED_FEATURE_CONTEXT>());
        Assert.Equal(4, Unsafe.SizeOf<WHV_RUN_VP_CANCELED_CONTEXT>());
        Assert.Equal(16, Unsafe.SizeOf<WHV_X64_SEGMENT_REGISTER>());
        Assert.Equal(16, Unsafe.SizeOf<WHV_X64_TABLE_REGISTER>());
        Assert.Equal(16, Unsafe.SizeOf<WHV_UINT128>());
        Assert.Equal(16, Unsafe.SizeOf<WHV_REGISTER_VALUE>());
        Assert.Equal(4, Unsafe.SizeOf<WHV_REGISTER_NAME>());
        Assert.Equal(4, Unsafe.SizeOf<WHV_RUN_VP_EXIT_REASON>());
        // Marshal agrees with the managed layout (all blittable).
        Assert.Equal(224, Marshal.SizeOf<WHV_RUN_VP_EXIT_CONTEXT>());
        Assert.Equal(96, Marshal.SizeOf<WHV_X64_IO_PORT_ACCESS_CONTEXT>());
        Assert.Equal(16, Marshal.SizeOf<WHV_REGISTER_VALUE>());
    }

    [Fact]
    public void Union_buffers_have_the_header_sizes()
    {
        // sizeof of the unions, measured with mingw-w64 gcc on the header (and re-checked by WhpHeaderCrossCheckTests).
        Assert.Equal(24, WhpUnionSizes.WHV_CAPABILITY);
        Assert.Equal(48, WhpUnionSizes.WHV_PARTITION_PROPERTY);
    }

    [Fact]
    public void Run_vp_exit_context_offsets()
    {
        Assert.Equal(0, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.ExitReason)));
        Assert.Equal(4, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.Reserved)));
        Assert.Equal(8, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.VpContext)));
        Assert.Equal(48, WHV_RUN_VP_EXIT_CONTEXT.UnionOffset);
        Assert.Equal(48, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.MemoryAccess)));
        Assert.Equal(48, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.IoPortAccess)));
        Assert.Equal(48, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.VpException)));
        Assert.Equal(48, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.UnsupportedFeature)));
        Assert.Equal(48, Off<WHV_RUN_VP_EXIT_CONTEXT>(nameof(WHV_RUN_VP_EXIT_CONTEXT.CancelReason)));
    }

    [Fact]
    public void Vp_exit_context_offsets()
    {
        Assert.Equal(0, Off<WHV_VP_EXIT_CONTEXT>(nameof(WHV_VP_EXIT_CONTEXT.ExecutionState)));
        Assert.Equal(2, Off<WHV_VP_EXIT_CONTEXT>(nameof(WHV_VP_EXIT_CONTEXT.InstructionLengthCr8)));
        Assert.Equal(3, Off<WHV_VP_EXIT_CONTEXT>(nameof(WHV_VP_EXIT_CONTEXT.Reserved)));
        Assert.Equal(4, Off<WHV_VP_EXIT_CONTEXT>(nameof(WHV_VP_EXIT_CONTEXT.Reserved2)));
        Assert.Equal(8, Off<WHV_VP_EXIT_CONTEXT>(nameof(WHV_VP_EXIT_CONTEXT.Cs)));
        Assert.Equal(24, Off<WHV_VP_EXIT_CONTEXT>(nameof(WHV_VP_EXIT_CONTEXT.Rip)));
        Assert.Equal(32, Off<WHV_VP_EXIT_CONTEXT>(nameof(WHV_VP_EXIT_CONTEXT.Rflags)));
    }

    [Fact]
    public void Instruction_length_is_the_low_nibble()
    {
        // UINT8 InstructionLength : 4; UINT8 Cr8 : 4; — bit-fields fill from the low bit on x64 (MSVC and gcc).
        var ctx = new WHV_VP_EXIT_CONTEXT { InstructionLengthCr8 = 0xF2 };
        Assert.Equal(2, ctx.InstructionLength);
    }

    [Fact]
    public void Io_port_access_context_offsets()
    {
        Assert.Equal(0, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.InstructionByteCount)));
        Assert.Equal(1, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Reserved)));
        Assert.Equal(4, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.InstructionBytes)));
        Assert.Equal(20, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessInfo)));
        Assert.Equal(24, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.PortNumber)));
        Assert.Equal(26, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Reserved2)));
        Assert.Equal(32, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rax)));
        Assert.Equal(40, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rcx)));
        Assert.Equal(48, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rsi)));
        Assert.Equal(56, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Rdi)));
        Assert.Equal(64, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Ds)));
        Assert.Equal(80, Off<WHV_X64_IO_PORT_ACCESS_CONTEXT>(nameof(WHV_X64_IO_PORT_ACCESS_CONTEXT.Es)));
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
    public void Memory_access_context_offsets()
    {
        Assert.Equal(0, Off<WHV_MEMORY_ACCESS_CONTEXT>(nameof(WHV_MEMORY_ACCESS_CONTEXT.InstructionByteCount)));
        Assert.Equal(4, Off<WHV_MEMORY_ACCESS_CONTEXT>(nameof(WHV_MEMORY_ACCESS_CONTEXT.InstructionBytes)));
        Assert.Equal(20, Off<WHV_MEMORY_ACCESS_CONTEXT>(nameof(WHV_MEMORY_ACCESS_CONTEXT.AccessInfo)));
        Assert.Equal(24, Off<WHV_MEMORY_ACCESS_CONTEXT>(nameof(WHV_MEMORY_ACCESS_CONTEXT.Gpa)));
        Assert.Equal(32, Off<WHV_MEMORY_ACCESS_CONTEXT>(nameof(WHV_MEMORY_ACCESS_CONTEXT.Gva)));
    }

    [Fact]
    public void Exception_and_unsupported_feature_context_offsets()
    {
        Assert.Equal(20, Off<WHV_VP_EXCEPTION_CONTEXT>(nameof(WHV_VP_EXCEPTION_CONTEXT.ExceptionInfo)));
        Assert.Equal(24, Off<WHV_VP_EXCEPTION_CONTEXT>(nameof(WHV_VP_EXCEPTION_CONTEXT.ExceptionType)));
        Assert.Equal(28, Off<WHV_VP_EXCEPTION_CONTEXT>(nameof(WHV_VP_EXCEPTION_CONTEXT.ErrorCode)));
        Assert.Equal(32, Off<WHV_VP_EXCEPTION_CONTEXT>(nameof(WHV_VP_EXCEPTION_CONTEXT.ExceptionParameter)));
        Assert.Equal(0, Off<WHV_X64_UNSUPPORTED_FEATURE_CONTEXT>(nameof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT.FeatureCode)));
        Assert.Equal(8, Off<WHV_X64_UNSUPPORTED_FEATURE_CONTEXT>(nameof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT.FeatureParameter)));
    }

    [Fact]
    public void Segment_table_and_register_value_offsets()
    {
        Assert.Equal(0, Off<WHV_X64_SEGMENT_REGISTER>(nameof(WHV_X64_SEGMENT_REGISTER.Base)));
        Assert.Equal(8, Off<WHV_X64_SEGMENT_REGISTER>(nameof(WHV_X64_SEGMENT_REGISTER.Limit)));
        Assert.Equal(12, Off<WHV_X64_SEGMENT_REGISTER>(nameof(WHV_X64_SEGMENT_REGISTER.Selector)));
        Assert.Equal(14, Off<WHV_X64_SEGMENT_REGISTER>(nameof(WHV_X64_SEGMENT_REGISTER.Attributes)));
        Assert.Equal(0, Off<WHV_X64_TABLE_REGISTER>(nameof(WHV_X64_TABLE_REGISTER.Pad)));
        Assert.Equal(6, Off<WHV_X64_TABLE_REGISTER>(nameof(WHV_X64_TABLE_REGISTER.Limit)));
        Assert.Equal(8, Off<WHV_X64_TABLE_REGISTER>(nameof(WHV_X64_TABLE_REGISTER.Base)));
        foreach (string field in new[] { "Reg128", "Reg64", "Reg32", "Reg16", "Reg8", "Segment", "Table" })
        {
            Assert.Equal(0, Off<WHV_REGISTER_VALUE>(field));
        }
        Assert.Equal(8, Off<WHV_UINT128>(nameof(WHV_UINT128.High64)));
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
