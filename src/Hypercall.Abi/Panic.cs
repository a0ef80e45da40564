using System.Runtime.InteropServices;

namespace Paravirt.Abi;

/// <summary>
/// The registers at a guest failure, passed (optionally) to <see cref="HypercallCode.Panic"/> so the host reports the
/// failure where it happened rather than where the panic call was made: a Linux-personality guest fills it from the
/// trap frame of a fatal signal, an exception handler from its interrupt frame. Append-only: a host reads only what
/// <see cref="Size"/> covers. Registers are in the order of <c>struct user_regs_struct</c>'s names, not its layout.
/// </summary>
[AbiExport("pv_panic_frame")]
[StructLayout(LayoutKind.Explicit, Size = 176)]
public struct PanicFrame
{
    /// <summary>Bytes of this structure the guest filled (at least up to <see cref="Rflags"/>).</summary>
    [FieldOffset(0)] public uint Size;
    /// <summary>The Linux signal number the failure maps to (SIGSEGV 11, SIGFPE 8, SIGILL 4, SIGABRT 6, ...), or 0.</summary>
    [FieldOffset(4)] public uint Signal;
    /// <summary>The x86 exception vector (0 #DE, 6 #UD, 13 #GP, 14 #PF, ...), or <see cref="PanicConstants.NoVector"/>.</summary>
    [FieldOffset(8)] public uint Vector;
    /// <summary>The exception's error code (page faults: the P/W/U/I bits), or 0.</summary>
    [FieldOffset(12)] public uint ErrorCode;
    /// <summary>The faulting data address (CR2 for a page fault), or 0.</summary>
    [FieldOffset(16)] public ulong FaultAddress;
    /// <summary>rax.</summary>
    [FieldOffset(24)] public ulong Rax;
    /// <summary>rbx.</summary>
    [FieldOffset(32)] public ulong Rbx;
    /// <summary>rcx.</summary>
    [FieldOffset(40)] public ulong Rcx;
    /// <summary>rdx.</summary>
    [FieldOffset(48)] public ulong Rdx;
    /// <summary>rsi.</summary>
    [FieldOffset(56)] public ulong Rsi;
    /// <summary>rdi.</summary>
    [FieldOffset(64)] public ulong Rdi;
    /// <summary>rsp.</summary>
    [FieldOffset(72)] public ulong Rsp;
    /// <summary>rbp.</summary>
    [FieldOffset(80)] public ulong Rbp;
    /// <summary>r8.</summary>
    [FieldOffset(88)] public ulong R8;
    /// <summary>r9.</summary>
    [FieldOffset(96)] public ulong R9;
    /// <summary>r10.</summary>
    [FieldOffset(104)] public ulong R10;
    /// <summary>r11.</summary>
    [FieldOffset(112)] public ulong R11;
    /// <summary>r12.</summary>
    [FieldOffset(120)] public ulong R12;
    /// <summary>r13.</summary>
    [FieldOffset(128)] public ulong R13;
    /// <summary>r14.</summary>
    [FieldOffset(136)] public ulong R14;
    /// <summary>r15.</summary>
    [FieldOffset(144)] public ulong R15;
    /// <summary>The instruction that failed.</summary>
    [FieldOffset(152)] public ulong Rip;
    /// <summary>rflags.</summary>
    [FieldOffset(160)] public ulong Rflags;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(168)] public ulong Reserved;
}

/// <summary>Constants of <see cref="HypercallCode.Panic"/>.</summary>
[AbiExport("PV_PANIC")]
public static class PanicConstants
{
    /// <summary>Most message bytes a host reads (a longer message is cut).</summary>
    public const uint MaxMessageLength = 4096;
    /// <summary><see cref="PanicFrame.Vector"/> when the failure was no CPU exception.</summary>
    public const uint NoVector = 0xFFFF_FFFF;
    /// <summary>The smallest <see cref="PanicFrame.Size"/> a host accepts: everything up to and including rflags.</summary>
    public const uint MinFrameSize = 168;
}
