namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    internal const int MADV_DONTNEED = 4;

    /// <summary><c>int madvise(void *addr, size_t length, int advice)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "madvise", SetLastError = true)]
    internal static partial int madvise(nint addr, nuint length, int advice);
}
