namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int pthread_kill(pthread_t thread, int sig)</c>. Returns the error number (does not set errno).</summary>
    [LibraryImport(Library, EntryPoint = "pthread_kill")]
    internal static partial int pthread_kill(nuint thread, int sig);
}
