using System.Runtime.InteropServices;
using Paravirt.Abi;

namespace Paravirt.Guest.Linux;

/// <summary>
/// User-defined hypercalls (codes <see cref="HypercallRanges.UserFirst"/> to <see cref="HypercallRanges.UserLast"/>, which the
/// host application registers) from a .NET app running on the Paravirt Linux personality. The library OS under the
/// app forwards two extra system call numbers (<see cref="LinuxConstants.HypercallSyscall"/>,
/// <see cref="LinuxConstants.HypercallBufferSyscall"/>) to the host.
/// </summary>
/// <remarks>
/// Results are the host handler's: <c>&gt;= 0</c> on success, else a negative <see cref="HypercallStatus"/>
/// (errno values). Off Paravirt every call returns <see cref="HypercallStatus.NotImplemented"/> (Linux's
/// <c>-ENOSYS</c>); <see cref="IsAvailable"/> says which case applies.
/// </remarks>
public static partial class Hypercall
{
    private const long EINVAL = 22;

    private static readonly Lazy<bool> Available = new(() => Syscall(LinuxConstants.HypercallSyscall, 0, 0, 0, 0, 0, 0) == -EINVAL);

    /// <summary>True when the app runs on the Paravirt Linux personality (it answers a code outside the user range with <c>-EINVAL</c>; Linux has no such system call).</summary>
    public static bool IsAvailable => Available.Value;

    /// <summary>Calls user-defined hypercall <paramref name="code"/> with five value arguments.</summary>
    /// <returns>The host's result, or <see cref="HypercallStatus.Invalid"/> for a code outside the user-defined range.</returns>
    public static long Call(uint code, ulong a1 = 0, ulong a2 = 0, ulong a3 = 0, ulong a4 = 0, ulong a5 = 0) =>
        Syscall(LinuxConstants.HypercallSyscall, code, a1, a2, a3, a4, a5);

    /// <summary>
    /// Calls user-defined hypercall <paramref name="code"/> with <paramref name="buffer"/> (at most
    /// <see cref="LinuxConstants.MaxHypercallBuffer"/> bytes) as its first two arguments: the host reads it and may
    /// write results into it.
    /// </summary>
    /// <returns>The host's result, or <see cref="HypercallStatus.TooBig"/> for a buffer over the limit.</returns>
    public static unsafe long Call(uint code, Span<byte> buffer, ulong a3 = 0, ulong a4 = 0, ulong a5 = 0)
    {
        if ((uint)buffer.Length > LinuxConstants.MaxHypercallBuffer)
        {
            return (long)HypercallStatus.TooBig;
        }
        fixed (byte* p = buffer)
        {
            // Safe: p points at buffer.Length bytes, pinned while the library OS copies them and back.
            return Syscall(LinuxConstants.HypercallBufferSyscall, code, (ulong)p, (ulong)buffer.Length, a3, a4, a5);
        }
    }

    private static long Syscall(uint number, ulong a1, ulong a2, ulong a3, ulong a4, ulong a5, ulong a6)
    {
        long r = syscall(number, a1, a2, a3, a4, a5, a6);
        // glibc's wrapper turns a result in [-4095, -1] into -1 and errno; hypercall statuses are such values.
        return r == -1 ? -Marshal.GetLastPInvokeError() : r;
    }

    /// <summary><c>long syscall(long number, ...)</c> (glibc; its assembly takes the arguments in registers, so a fixed signature is fine).</summary>
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, ulong a1, ulong a2, ulong a3, ulong a4, ulong a5, ulong a6);
}
