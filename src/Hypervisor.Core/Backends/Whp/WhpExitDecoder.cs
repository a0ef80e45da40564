namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// Turns a <c>WHV_RUN_VP_EXIT_CONTEXT</c> into a <see cref="VcpuExit"/> and, for a hypercall, the RIP to resume
/// at. Plain, platform-neutral code so it is tested on constructed exit contexts everywhere; the vCPU only adds the
/// WHP calls around it.
/// </summary>
/// <remarks>
/// A plain <c>out</c> (not a string instruction, not <c>rep</c>-prefixed) is an <see cref="VcpuExitKind.IoOut"/> with
/// its data from <c>Rax</c>. WHP does not complete port I/O itself: RIP still points at the <c>out</c>, and the guest
/// resumes at <c>VpContext.Rip + VpContext.InstructionLength</c>, which the vCPU applies. Every other port access
/// (<c>in</c>, string forms) is reported without completing it. The decoder knows no port numbers: what a port
/// means is the VMM's business.
/// </remarks>
internal static class WhpExitDecoder
{
    /// <summary>Decodes one exit. <c>NextRip</c> is where the guest resumes after a completed <c>out</c>, otherwise the exit RIP.</summary>
    public static (VcpuExit Exit, ulong NextRip) Decode(in WHV_RUN_VP_EXIT_CONTEXT ctx)
    {
        ulong rip = ctx.VpContext.Rip;
        uint raw = (uint)ctx.ExitReason;
        switch (ctx.ExitReason)
        {
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonX64IoPortAccess:
                return DecodeIo(in ctx.IoPortAccess, ctx.VpContext.InstructionLength, rip, raw);
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonX64Halt:
                return (new VcpuExit(VcpuExitKind.Halt, rip, RawReason: raw), rip);
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonMemoryAccess:
                return (new VcpuExit(VcpuExitKind.Mmio, rip, ctx.MemoryAccess.Gpa, raw, DescribeMemoryAccess(in ctx.MemoryAccess)), rip);
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonCanceled:
                return (new VcpuExit(VcpuExitKind.Interrupted, rip, RawReason: raw), rip);
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonUnrecoverableException:
                return (new VcpuExit(VcpuExitKind.Shutdown, rip, RawReason: raw,
                    Detail: "WHP: unrecoverable guest exception (triple fault) (WHvRunVpExitReasonUnrecoverableException)"), rip);
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonInvalidVpRegisterValue:
                return (new VcpuExit(VcpuExitKind.InternalError, rip, RawReason: raw,
                    Detail: "WHP rejected the vCPU register state (WHvRunVpExitReasonInvalidVpRegisterValue)"), rip);
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonUnsupportedFeature:
                return (new VcpuExit(VcpuExitKind.InternalError, rip, RawReason: raw,
                    Detail: $"WHP: the guest used a feature the hypervisor does not support ({ctx.UnsupportedFeature.FeatureCode}, parameter 0x{ctx.UnsupportedFeature.FeatureParameter:x}) (WHvRunVpExitReasonUnsupportedFeature)"), rip);
            case WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonException:
                return (new VcpuExit(VcpuExitKind.Fault, rip, RawReason: raw,
                    Detail: $"exception vector {ctx.VpException.ExceptionType} (error code 0x{ctx.VpException.ErrorCode:x}, parameter 0x{ctx.VpException.ExceptionParameter:x})"), rip);
            default:
                string name = Enum.IsDefined(ctx.ExitReason) ? ctx.ExitReason.ToString() : "unknown";
                return (new VcpuExit(VcpuExitKind.Unsupported, rip, RawReason: raw, Detail: $"WHP exit reason 0x{raw:x} ({name})"), rip);
        }
    }

    private static (VcpuExit Exit, ulong NextRip) DecodeIo(in WHV_X64_IO_PORT_ACCESS_CONTEXT io, byte length, ulong rip, uint raw)
    {
        uint info = io.AccessInfo;
        bool write = (info & WHV_X64_IO_PORT_ACCESS_CONTEXT.IsWriteBit) != 0;
        byte size = (byte)((info >> WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessSizeShift) & WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessSizeMask);
        const uint notPlain = WHV_X64_IO_PORT_ACCESS_CONTEXT.StringOpBit | WHV_X64_IO_PORT_ACCESS_CONTEXT.RepPrefixBit;
        if (!write || (info & notPlain) != 0)
        {
            // in, and string forms: reported, not completed (the VMM refuses them).
            return (new VcpuExit(write ? VcpuExitKind.IoOut : VcpuExitKind.IoIn, rip, io.PortNumber, raw, DescribePortAccess(in io), size), rip);
        }
        if (length == 0)
        {
            // WHP always reports the length of an intercepted out; 0 would resume on the same out forever.
            return (new VcpuExit(VcpuExitKind.InternalError, rip, io.PortNumber, raw,
                "WHP reported an out instruction with length 0; cannot advance RIP"), rip);
        }
        ulong data = size switch { 1 => (byte)io.Rax, 2 => (ushort)io.Rax, _ => (uint)io.Rax };
        return (new VcpuExit(VcpuExitKind.IoOut, rip, io.PortNumber, raw, Size: size, Data: data), unchecked(rip + length));
    }

    private static string DescribePortAccess(in WHV_X64_IO_PORT_ACCESS_CONTEXT io)
    {
        uint info = io.AccessInfo;
        bool write = (info & WHV_X64_IO_PORT_ACCESS_CONTEXT.IsWriteBit) != 0;
        uint size = (info >> WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessSizeShift) & WHV_X64_IO_PORT_ACCESS_CONTEXT.AccessSizeMask;
        string kind = (info & WHV_X64_IO_PORT_ACCESS_CONTEXT.StringOpBit) != 0
            ? ((info & WHV_X64_IO_PORT_ACCESS_CONTEXT.RepPrefixBit) != 0 ? "rep string " : "string ")
            : "";
        return write
            ? $"{kind}out of {size} byte(s) to port 0x{io.PortNumber:x}"
            : $"{kind}in of {size} byte(s) from port 0x{io.PortNumber:x}";
    }

    private static string DescribeMemoryAccess(in WHV_MEMORY_ACCESS_CONTEXT m)
    {
        var type = (WHV_MEMORY_ACCESS_TYPE)(m.AccessInfo & 0x3);
        string access = type switch
        {
            WHV_MEMORY_ACCESS_TYPE.WHvMemoryAccessRead => "read",
            WHV_MEMORY_ACCESS_TYPE.WHvMemoryAccessWrite => "write",
            WHV_MEMORY_ACCESS_TYPE.WHvMemoryAccessExecute => "execute",
            _ => "access",
        };
        bool gvaValid = (m.AccessInfo & (1u << 3)) != 0;
        return gvaValid ? $"{access} at guest-physical 0x{m.Gpa:x} (virtual 0x{m.Gva:x})" : $"{access} at guest-physical 0x{m.Gpa:x}";
    }
}
