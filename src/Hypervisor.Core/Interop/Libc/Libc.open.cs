namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int open(const char *pathname, int flags)</c> (no <c>mode</c>: never called with <c>O_CREAT</c>).</summary>
    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int open(string pathname, int flags);
}
