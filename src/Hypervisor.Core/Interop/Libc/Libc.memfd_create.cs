namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    internal const uint MFD_CLOEXEC = 0x1;

    /// <summary><c>int memfd_create(const char *name, unsigned int flags)</c> (glibc 2.27+).</summary>
    [LibraryImport(Library, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int memfd_create(string name, uint flags);
}
