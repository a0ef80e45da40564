namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    // int ioctl(int fd, unsigned long request, ...) is variadic. On x86-64 System V a variadic call passes its
    // integer arguments exactly like a fixed-argument one (rdi, rsi, rdx), and glibc's ioctl reads the third
    // argument as one word, so fixed-argument overloads are correct for the one-word arguments used here. There is deliberately no
    // two-argument overload: requests "without" an argument still get whatever is in rdx, and KVM rejects some of
    // them (KVM_GET_API_VERSION, KVM_CREATE_VM) with EINVAL unless it is 0. Pass 0.

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

    /// <summary><c>int ioctl(int fd, unsigned long request, unsigned long arg)</c>: requests with an integer argument.</summary>
    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int ioctl(int fd, ulong request, ulong arg);

    /// <summary><c>int ioctl(int fd, unsigned long request, void *arg)</c>: requests with a pointer argument.</summary>
    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int ioctl(int fd, ulong request, nint arg);

    /// <summary><c>int ioctl(int fd, unsigned long request, void *arg)</c> on a handle kept alive for the call.</summary>
    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static unsafe partial int ioctl(SafeFileHandle fd, ulong request, void* arg);
}
