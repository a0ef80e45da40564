using Paravirt.Hypervisor.Backends.Whp;

namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>The WHP exit decoding and RIP advance, on constructed <c>WHV_RUN_VP_EXIT_CONTEXT</c>s.</summary>
public sealed class WhpExitDecoderTests
{
    private const ulong Rip = 0x3000;

    private static WHV_RUN_VP_EXIT_CONTEXT Io(ushort port, bool write, uint size, bool stringOp = false, bool rep = false, byte length = 2, ulong rip = Rip)
    {
        uint info = (write ? WHV_X64_IO_PORT_ACCESS_CONTEXT.IsWriteBit : 0)
            | (size << WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessSizeShift)
            | (stringOp ? WHV_X64_IO_PORT_ACCESS_CONTEXT.StringOpBit : 0)
            | (rep ? WHV_X64_IO_PORT_ACCESS_CONTEXT.RepPrefixBit : 0);
        var ctx = new WHV_RUN_VP_EXIT_CONTEXT { ExitReason = WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonX64IoPortAccess };
        ctx.VpContext.Rip = rip;
        ctx.VpContext.InstructionLengthCr8 = (byte)(0xA0 | length); // Cr8 = 0xA in the high nibble must not leak into the length
        ctx.IoPortAccess.AccessInfo = info;
        ctx.IoPortAccess.PortNumber = port;
        return ctx;
    }

    private static WHV_RUN_VP_EXIT_CONTEXT Of(WHV_RUN_VP_EXIT_REASON reason, ulong rip = Rip)
    {
        var ctx = new WHV_RUN_VP_EXIT_CONTEXT { ExitReason = reason };
        ctx.VpContext.Rip = rip;
        return ctx;
    }

    [Fact]
    public void Out_of_one_byte_is_a_completed_io_out_resuming_after_the_instruction()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Io((ushort)HypercallPage.IoPort, write: true, size: 1, length: (byte)HypercallStub.TrapLength);
        ctx.IoPortAccess.Rax = 0x1234_5678_9ABC_DE42;
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.IoOut, exit.Kind);
        Assert.True(HypercallTrap.IsHypercall(exit)); // the VMM, not the decoder, knows the port
        Assert.Equal(Rip, exit.Rip);
        Assert.Equal(Rip + 2, next);
        Assert.Equal((ulong)HypercallPage.IoPort, exit.Address);
        Assert.Equal(1, exit.Size);
        Assert.Equal(0x42UL, exit.Data);
        Assert.Equal(2u, exit.RawReason);
    }

    [Fact]
    public void Next_rip_uses_the_reported_instruction_length()
    {
        // e.g. a 66-prefixed out (3 bytes) at a high address.
        WHV_RUN_VP_EXIT_CONTEXT ctx = Io(0xE2, write: true, size: 2, length: 3, rip: 0x7FFF_FFF0);
        ctx.IoPortAccess.Rax = 0xABCD_1234;
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.IoOut, exit.Kind);
        Assert.Equal(0x1234UL, exit.Data);
        Assert.Equal(0x7FFF_FFF3UL, next);
    }

    /// <summary>An out to another port is an io out (advanced past the instruction); an in is an io in, not advanced.</summary>
    [Theory]
    [InlineData(0x80, true, VcpuExitKind.IoOut, 2, null)]
    [InlineData(0xE2, false, VcpuExitKind.IoIn, 0, "in of 1 byte(s) from port 0xe2")]
    public void Io_on_other_ports_is_decoded_but_not_a_hypercall(int port, bool write, VcpuExitKind kind, int advance, string? detail)
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Io((ushort)port, write, size: 1);
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(kind, exit.Kind);
        Assert.False(HypercallTrap.IsHypercall(exit));
        Assert.Equal((ulong)port, exit.Address);
        Assert.Equal(Rip + (ulong)advance, next);
        if (detail is not null)
        {
            Assert.Contains(detail, exit.Detail, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, true)]
    public void String_or_rep_io_is_reported_without_data_and_not_advanced(bool stringOp, bool rep)
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Io(0xE2, write: true, size: 1, stringOp: stringOp, rep: rep);
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.IoOut, exit.Kind);
        Assert.Equal(0UL, exit.Data);
        Assert.NotNull(exit.Detail);
        Assert.Equal(Rip, next);
    }

    [Fact]
    public void Out_with_zero_length_is_an_internal_error_not_an_endless_loop()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Io(0xE2, write: true, size: 1, length: 0);
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.InternalError, exit.Kind);
        Assert.Equal(Rip, next);
        Assert.Contains("length 0", exit.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Hlt_is_halt()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Of(WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonX64Halt, 0x10_0004);
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        Assert.Equal(0x10_0004UL, exit.Rip);
        Assert.Equal(0x10_0004UL, next);
        Assert.Equal(8u, exit.RawReason);
    }

    [Fact]
    public void Memory_access_is_mmio_with_the_guest_physical_address()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Of(WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonMemoryAccess, 0x10_0010);
        ctx.MemoryAccess.Gpa = 0x4000_0000;
        ctx.MemoryAccess.Gva = 0x4000_0000;
        ctx.MemoryAccess.AccessInfo = (uint)WHV_MEMORY_ACCESS_TYPE.WHvMemoryAccessWrite | (1u << 2) | (1u << 3);
        (VcpuExit exit, _) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.Mmio, exit.Kind);
        Assert.Equal(0x4000_0000UL, exit.Address);
        Assert.Equal(0x10_0010UL, exit.Rip);
        Assert.StartsWith("write at guest-physical 0x40000000", exit.Detail, StringComparison.Ordinal);
    }

    /// <summary>
    /// Canceled is an interrupted run; an unrecoverable exception a shutdown that says "triple fault"; invalid register
    /// state an internal error that names the reason. Each keeps the raw reason.
    /// </summary>
    [Theory]
    [InlineData((uint)WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonCanceled, VcpuExitKind.Interrupted, null)]
    [InlineData((uint)WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonUnrecoverableException, VcpuExitKind.Shutdown, "triple fault")]
    [InlineData((uint)WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonInvalidVpRegisterValue, VcpuExitKind.InternalError, "WHvRunVpExitReasonInvalidVpRegisterValue")]
    public void Exits_without_an_access_decode_to_their_kind_with_detail(uint reason, VcpuExitKind kind, string? detail)
    {
        (VcpuExit exit, _) = WhpExitDecoder.Decode(Of((WHV_RUN_VP_EXIT_REASON)reason));
        Assert.Equal(kind, exit.Kind);
        Assert.Equal(reason, exit.RawReason);
        if (detail is not null)
        {
            Assert.Contains(detail, exit.Detail, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Unsupported_feature_is_an_internal_error_naming_the_feature()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Of(WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonUnsupportedFeature);
        ctx.UnsupportedFeature.FeatureCode = WHV_X64_UNSUPPORTED_FEATURE_CODE.WHvUnsupportedFeatureTaskSwitchTss;
        ctx.UnsupportedFeature.FeatureParameter = 0x18;
        (VcpuExit exit, _) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.InternalError, exit.Kind);
        Assert.Contains("WHvUnsupportedFeatureTaskSwitchTss", exit.Detail, StringComparison.Ordinal);
        Assert.Contains("0x18", exit.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Exception_exit_is_a_fault_naming_the_vector()
    {
        WHV_RUN_VP_EXIT_CONTEXT ctx = Of(WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonException);
        ctx.VpException.ExceptionType = 13;
        ctx.VpException.ErrorCode = 0x10;
        (VcpuExit exit, _) = WhpExitDecoder.Decode(in ctx);
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Contains("vector 13", exit.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x0u)]      // None
    [InlineData(0x7u)]      // X64InterruptWindow
    [InlineData(0x1001u)]   // X64Cpuid
    [InlineData(0x1005u)]   // Hypercall (a real vmcall; Paravirt never uses it)
    [InlineData(0x3u)]      // not in the enum
    [InlineData(0xDEADu)]   // not in the enum
    public void Other_reasons_are_unsupported_with_the_raw_code(uint raw)
    {
        (VcpuExit exit, ulong next) = WhpExitDecoder.Decode(Of((WHV_RUN_VP_EXIT_REASON)raw));
        Assert.Equal(VcpuExitKind.Unsupported, exit.Kind);
        Assert.Equal(raw, exit.RawReason);
        Assert.Equal(Rip, next);
        Assert.Contains($"0x{raw:x}", exit.Detail, StringComparison.Ordinal);
    }
}
