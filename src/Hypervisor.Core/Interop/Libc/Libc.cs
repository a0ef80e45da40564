namespace Paravirt.Hypervisor.Interop;

/// <summary>
/// P/Invokes into the C library (Linux). One file per native function (<c>Libc.NAME.cs</c>), native names verbatim,
/// <c>LibraryImport</c> so the marshalling is generated at compile time and NativeAOT-friendly.
/// </summary>
internal static partial class Libc
{
    internal const string Library = "libc";

    internal const int PROT_NONE = 0x0;
    internal const int PROT_READ = 0x1;
    internal const int PROT_WRITE = 0x2;
    internal const int PROT_EXEC = 0x4;
    internal const int MAP_SHARED = 0x01;
    internal const int MAP_PRIVATE = 0x02;
    internal const int MAP_FIXED = 0x10;
    internal const int MAP_ANONYMOUS = 0x20;
    internal const int MAP_NORESERVE = 0x4000;
    internal static readonly nint MAP_FAILED = -1;

    internal const int O_RDWR = 0x2;
    internal const int O_CLOEXEC = 0x80000;

    internal const int EINTR = 4;
    internal const int EAGAIN = 11;
    internal const int EACCES = 13;
    internal const int ENOENT = 2;
    internal const int EPERM = 1;
    internal const int EINVAL = 22;
    internal const int ENODEV = 19;
    internal const int EBUSY = 16;
    internal const int ENOSYS = 38;
    internal const int EOPNOTSUPP = 95;
}
