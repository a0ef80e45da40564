using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// A guest exception (#DE, #GP, page fault outside memory, invalid opcode). Thrown inside the
/// executor only and always caught by <see cref="EmulatorVcpu.Run"/>, which turns it into a
/// <see cref="VcpuExitKind.Fault"/> exit: it never reaches the host. Faults end the run, so the cost of an exception
/// is paid once and keeps every check off the hot path.
/// </summary>
internal sealed class GuestFault : Exception
{
    public GuestFault(string message) : base(message) { }
    public GuestFault() { }
    public GuestFault(string message, Exception inner) : base(message, inner) { }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void PageFault(ulong address, int size, bool write) =>
        throw new GuestFault($"page fault: {(write ? "write" : "read")} of {size} bytes at 0x{address:x} outside guest memory");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void StackOverflow(ulong address, ulong guardPage) =>
        throw new GuestFault($"stack overflow: write at 0x{address:x} into the guard page 0x{guardPage:x} below the stack") { Address = address, IsStackOverflow = true };

    /// <summary>The faulting guest address, where there is one.</summary>
    public ulong Address { get; init; }

    /// <summary>True for a write into a guard page.</summary>
    public bool IsStackOverflow { get; init; }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void DivideError() => throw new GuestFault("divide error (#DE)");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Misaligned(ulong address) =>
        throw new GuestFault($"general protection fault (#GP): misaligned 16-byte memory operand at 0x{address:x}");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Raise(string message) => throw new GuestFault(message);

    /// <summary>#XM: an SSE floating-point exception that MXCSR leaves unmasked.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void SimdException(uint unmaskedFlags) =>
        throw new GuestFault($"SIMD floating-point exception (#XM): unmasked {FlagNames(unmaskedFlags)}");

    /// <summary>#MF: a waiting x87 instruction found an unmasked exception pending in the status word.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void X87Exception(uint pendingFlags) =>
        throw new GuestFault($"x87 floating-point exception (#MF): unmasked {FlagNames(pendingFlags)} pending");

    /// <summary>#GP for a reason other than alignment (e.g. a reserved MXCSR bit).</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void GeneralProtection(string why) => throw new GuestFault($"general protection fault (#GP): {why}");

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
