namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact)</c> (glibc wrapper: it supplies <c>SA_RESTORER</c> and the restorer).</summary>
    [LibraryImport(Library, EntryPoint = "sigaction", SetLastError = true)]
    internal static unsafe partial int sigaction(int signum, SigAction* act, SigAction* oldact);

    /// <summary>glibc's x86-64 <c>struct sigaction</c> (152 bytes): handler, 1024-bit mask, flags, restorer.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 0x98)]
    internal struct SigAction
    {
        /// <summary><c>sa_handler</c> / <c>sa_sigaction</c>.</summary>
        [FieldOffset(0x00)] public nint Handler;
        /// <summary>First word of <c>sa_mask</c> (128 bytes, signals blocked while the handler runs); zero = none.</summary>
        [FieldOffset(0x08)] public ulong Mask0;
        /// <summary><c>sa_flags</c>.</summary>
        [FieldOffset(0x88)] public int Flags;
        /// <summary><c>sa_restorer</c> (set by glibc).</summary>
        [FieldOffset(0x90)] public nint Restorer;
    }
}
