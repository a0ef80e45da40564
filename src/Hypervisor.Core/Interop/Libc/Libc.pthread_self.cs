namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>pthread_t pthread_self(void)</c> (<c>pthread_t</c> is an unsigned long on glibc).</summary>
    [LibraryImport(Library, EntryPoint = "pthread_self")]
    internal static partial nuint pthread_self();
}
