namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>ssize_t getrandom(void *buf, size_t buflen, unsigned int flags)</c> (glibc 2.25+).</summary>
    [LibraryImport(Library, EntryPoint = "getrandom", SetLastError = true)]
    internal static unsafe partial nint getrandom(byte* buf, nuint buflen, uint flags);
}
