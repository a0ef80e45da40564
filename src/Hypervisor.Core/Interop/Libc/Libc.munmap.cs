namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int munmap(void *addr, size_t length)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "munmap", SetLastError = true)]
    internal static partial int munmap(nint addr, nuint length);
}
