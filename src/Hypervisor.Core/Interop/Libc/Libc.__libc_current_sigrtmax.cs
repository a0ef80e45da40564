namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int __libc_current_sigrtmax(void)</c>: the value of <c>SIGRTMAX</c> (64 on Linux).</summary>
    [LibraryImport(Library, EntryPoint = "__libc_current_sigrtmax")]
    internal static partial int __libc_current_sigrtmax();
}
