namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>ssize_t read(int fd, void *buf, size_t count)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "read", SetLastError = true)]
    internal static unsafe partial nint read(SafeFileHandle fd, byte* buf, nuint count);
}
