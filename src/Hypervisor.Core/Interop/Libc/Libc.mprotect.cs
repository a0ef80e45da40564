namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>int mprotect(void *addr, size_t len, int prot)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "mprotect", SetLastError = true)]
    internal static partial int mprotect(nint addr, nuint len, int prot);
}
