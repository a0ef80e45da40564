using System.Diagnostics.CodeAnalysis;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>Exception vectors the emulator raises (Intel SDM vol. 3, table 6-1).</summary>
internal static class Vectors
{
    public const int DE = 0, DB = 1, NMI = 2, BP = 3, OF = 4, BR = 5, UD = 6, NM = 7, DF = 8, TS = 10, NP = 11, SS = 12,
        GP = 13, PF = 14, MF = 16, AC = 17, MC = 18, XM = 19;

    /// <summary>The SDM's mnemonic of a vector (<c>#PF</c>), or the number for interrupts.</summary>
    public static string Name(int vector) => vector switch
    {
        DE => "#DE", DB => "#DB", NMI => "NMI", BP => "#BP", OF => "#OF", BR => "#BR", UD => "#UD", NM => "#NM", DF => "#DF",
        TS => "#TS", NP => "#NP", SS => "#SS", GP => "#GP", PF => "#PF", MF => "#MF", AC => "#AC", MC => "#MC", XM => "#XM",
        _ => $"vector {vector}",
    };

    /// <summary>True for the vectors that push an error code.</summary>
    public static bool HasErrorCode(int vector) => vector is DF or TS or NP or SS or GP or PF or AC;
}

/// <summary>What a page fault was doing, for <see cref="GuestFault"/>'s message.</summary>
internal enum FaultAccess : byte
{
    Read,
    Write,
    Fetch,
}

/// <summary>
/// A guest exception (#DE, #UD, #GP, #PF, ...) or a terminal fault (an access to guest-physical memory that does not
/// exist). Thrown inside the executor only and always caught by <see cref="EmulatorVcpu"/>, which delivers it through
/// the guest's IDT when one is loaded, or ends the run with a <see cref="VcpuExitKind.Fault"/> exit naming it when
/// none is (the IDTR limit is 0: every Paravirt guest that does not set up its own) or when it is terminal. It never
/// reaches the host. The message is built only when the run ends on it.
/// </summary>
internal sealed class GuestFault : Exception
{
    private readonly string? _text;
    private readonly FaultAccess _access;
    private readonly int _size;
    private readonly string? _reason;
    private readonly ulong _shownAddress;

    public GuestFault(string message) : this(Vectors.GP, 0, 0, message) { }
    public GuestFault() : this("guest fault") { }
    public GuestFault(string message, Exception inner) : base(message, inner) => _text = message;

    private GuestFault(int vector, int errorCode, ulong address, string? text)
    {
        Vector = vector;
        ErrorCode = errorCode;
        Address = address;
        _text = text;
    }

    private GuestFault(ulong address, ulong shownAddress, int errorCode, FaultAccess access, int size, string reason, bool terminal)
    {
        Vector = terminal ? -1 : Vectors.PF;
        ErrorCode = errorCode;
        Address = address;
        _shownAddress = shownAddress;
        _access = access;
        _size = size;
        _reason = reason;
    }

    /// <summary>The exception vector, or -1 for a terminal fault that no guest handler can see, or <see cref="Gap"/>.</summary>
    public int Vector { get; }

    /// <summary><see cref="Vector"/> of an emulator gap: a valid operation the emulator does not implement (an <see cref="VcpuExitKind.Unimplemented"/> exit).</summary>
    public const int Gap = -2;

    /// <summary>The error code pushed with the exception, or -1 when the vector has none.</summary>
    public int ErrorCode { get; }

    /// <summary>For #PF: the faulting linear address (CR2).</summary>
    public ulong Address { get; }

    /// <summary>True when the fault cannot be delivered to the guest (it ends the run).</summary>
    public bool Terminal => Vector < 0;

    public override string Message => _text ?? (_access == FaultAccess.Fetch
        ? $"page fault: instruction fetch at 0x{_shownAddress:x} {_reason}"
        : $"page fault: {(_access == FaultAccess.Write ? "write" : "read")} of {_size} bytes at 0x{_shownAddress:x} {_reason}");

    /// <summary>
    /// A #PF with error code <paramref name="errorCode"/> (P/W/U/RSVD/I) at linear <paramref name="address"/> (CR2);
    /// the message names the access as the instruction made it (<paramref name="accessAddress"/>: it differs for an
    /// access that crosses into a page that faults).
    /// </summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void PageFault(ulong address, ulong accessAddress, int errorCode, FaultAccess access, int size, string reason) =>
        throw new GuestFault(address, accessAddress, errorCode, access, size, reason, terminal: false);

    /// <summary>An access whose translation leads outside guest-physical memory: ends the run (KVM would exit to the VMM with MMIO).</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void OutsidePhysicalMemory(ulong address, ulong accessAddress, ulong physical, FaultAccess access, int size) =>
        throw new GuestFault(address, accessAddress, -1, access, size, $"(guest-physical 0x{physical:x}) outside guest memory", terminal: true);

    /// <summary>
    /// An access whose translation reaches a guard page (<see cref="VirtualMachineOptions.GuardPages"/>, e.g. below the
    /// stack): ends the run, as KVM's unbacked hole does (an MMIO exit). <see cref="Address"/> is the guest-physical
    /// address touched, as KVM reports it, so the VMM can name the guard page.
    /// </summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void GuardPage(ulong accessAddress, ulong physical, FaultAccess access, int size) =>
        throw new GuestFault(-1, -1, physical,
            $"{(access == FaultAccess.Fetch ? "instruction fetch" : access == FaultAccess.Write ? $"write of {size} bytes" : $"read of {size} bytes")} at 0x{accessAddress:x} (guest-physical 0x{physical:x}) in the guard page 0x{physical & ~0xFFFUL:x}");

    /// <summary>A page-table walk that reads a table outside guest-physical memory: ends the run.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void TableOutsideMemory(ulong address, ulong table) =>
        throw new GuestFault(-1, -1, address, $"page-table walk for 0x{address:x} reads guest-physical 0x{table:x}, outside guest memory");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void DivideError() => throw new GuestFault(Vectors.DE, -1, 0, "divide error (#DE)");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Misaligned(ulong address) =>
        throw new GuestFault(Vectors.GP, 0, 0, $"general protection fault (#GP): misaligned 16-byte memory operand at 0x{address:x}");

    /// <summary>#GP with <paramref name="errorCode"/>; <paramref name="why"/> names the cause in the fault exit.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void GeneralProtection(int errorCode, string why) =>
        throw new GuestFault(Vectors.GP, errorCode, 0, $"general protection fault (#GP): {why}");

    /// <summary>An exception by vector (with <paramref name="errorCode"/>, -1 for none).</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Raise(int vector, int errorCode, string why) =>
        throw new GuestFault(vector, errorCode, 0, $"{Describe(vector)} ({Vectors.Name(vector)}): {why}");

    /// <summary>#UD with the given fault-exit text (undecodable bytes, <c>ud2</c>, an instruction invalid in this mode).</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Raise(string message) => InvalidOpcode(message);

    /// <summary>#UD with the given fault-exit text.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void InvalidOpcode(string message) => throw new GuestFault(Vectors.UD, -1, 0, message);

    /// <summary>A valid operation the emulator does not implement (e.g. a transfer to 32-bit code): ends the run as an emulator gap, never as a guest fault.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void NotImplemented(string what) => throw new GuestFault(Gap, -1, 0, $"the emulator does not implement {what}");

    /// <summary>A fault rebuilt from its parts (a fetch fault recorded at decode time and raised when the instruction is reached).</summary>
    public static GuestFault Create(int vector, int errorCode, ulong address, string message) => new(vector, errorCode, address, message);

    /// <summary>A #DB trap (single step): delivered after the instruction, never a run-ending fault message of its own.</summary>
    public static GuestFault DebugTrap() => new(Vectors.DB, -1, 0, "debug exception (#DB): single step");

    private static string Describe(int vector) => vector switch
    {
        Vectors.DE => "divide error",
        Vectors.DB => "debug exception",
        Vectors.BP => "breakpoint",
        Vectors.UD => "invalid opcode",
        Vectors.NM => "device not available",
        Vectors.DF => "double fault",
        Vectors.TS => "invalid TSS",
        Vectors.NP => "segment not present",
        Vectors.SS => "stack fault",
        Vectors.GP => "general protection fault",
        Vectors.PF => "page fault",
        Vectors.MF => "x87 floating-point error",
        Vectors.AC => "alignment check",
        Vectors.XM => "SIMD floating-point exception",
        _ => "exception",
    };

    /// <summary>
    /// #XM: an SSE floating-point exception that MXCSR leaves unmasked (the caller turns it into #UD when
    /// CR4.OSXMMEXCPT is clear, as the SDM specifies).
    /// </summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void SimdException(uint unmaskedFlags) =>
        throw new GuestFault(Vectors.XM, -1, 0, $"SIMD floating-point exception (#XM): unmasked {FlagNames(unmaskedFlags)}");

    /// <summary>#UD for an unmasked SSE floating-point exception while CR4.OSXMMEXCPT is clear (the OS has no #XM handler).</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void SimdExceptionWithoutOsSupport(uint unmaskedFlags) =>
        throw new GuestFault(Vectors.UD, -1, 0, $"invalid opcode (#UD): unmasked SIMD floating-point exception ({FlagNames(unmaskedFlags)}) with CR4.OSXMMEXCPT clear");

    /// <summary>#MF: a waiting x87 instruction found an unmasked exception pending in the status word.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void X87Exception(uint pendingFlags) =>
        throw new GuestFault(Vectors.MF, -1, 0, $"x87 floating-point exception (#MF): unmasked {FlagNames(pendingFlags)} pending");

    private static string FlagNames(uint flags)
    {
        string[] names = ["invalid operation", "denormal operand", "divide by zero", "overflow", "underflow", "precision"];
        var parts = new List<string>();
        for (int i = 0; i < names.Length; i++)
        {
            if ((flags & (1u << i)) != 0)
            {
                parts.Add(names[i]);
            }
        }
        return string.Join(", ", parts);
    }
}
