namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>ssize_t write(int fd, const void *buf, size_t count)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "write", SetLastError = true)]
    internal static unsafe partial nint write(SafeFileHandle fd, byte* buf, nuint count);
}
