namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int __libc_current_sigrtmin(void)</c>: the value of <c>SIGRTMIN</c> (glibc reserves the first real-time signals for itself, so it is a run-time value, 34 on current glibc).</summary>
    [LibraryImport(Library, EntryPoint = "__libc_current_sigrtmin")]
    internal static partial int __libc_current_sigrtmin();
}
