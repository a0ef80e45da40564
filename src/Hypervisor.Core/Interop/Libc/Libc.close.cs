namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int close(int fd)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "close", SetLastError = true)]
    internal static partial int close(int fd);
}
