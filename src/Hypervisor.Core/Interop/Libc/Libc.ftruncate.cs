namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int ftruncate(int fd, off_t length)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "ftruncate", SetLastError = true)]
    internal static partial int ftruncate(SafeFileHandle fd, long length);
}
