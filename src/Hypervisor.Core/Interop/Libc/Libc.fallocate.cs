namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    internal const int FALLOC_FL_KEEP_SIZE = 0x01;
    internal const int FALLOC_FL_PUNCH_HOLE = 0x02;

    /// <summary><c>int fallocate(int fd, int mode, off_t offset, off_t len)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "fallocate", SetLastError = true)]
    internal static partial int fallocate(SafeFileHandle fd, int mode, long offset, long len);
}
