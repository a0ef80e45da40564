using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary><c>_IOW('T', 202, int)</c>: attach a tun/tap fd to an interface.</summary>
    internal const ulong TUNSETIFF = 0x400454ca;
    internal const short IFF_TAP = 0x0002;
    internal const short IFF_NO_PI = 0x1000;
    internal const int IFNAMSIZ = 16;

    /// <summary><c>struct ifreq</c> as TUNSETIFF reads it: the name and the flags (the union padded to 40 bytes).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 40)]
    internal unsafe struct IfReq
    {
        [FieldOffset(0)] public fixed byte ifr_name[IFNAMSIZ];
        [FieldOffset(16)] public short ifr_flags;
    }

    /// <summary><c>int ioctl(int fd, unsigned long request, ...)</c> with a pointer argument.</summary>
    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static unsafe partial int ioctl(SafeFileHandle fd, ulong request, void* arg);
}
