using System.Runtime.InteropServices;

namespace Paravirt.Hypervisor.Interop;

internal static partial class Libc
{
    // int ioctl(int fd, unsigned long request, ...) is variadic. On x86-64 System V a variadic call passes its
    // integer arguments exactly like a fixed-argument one (rdi, rsi, rdx), and glibc's ioctl reads the third
    // argument as one word, so fixed-argument overloads are correct for the one-word arguments used here. There is deliberately no
    // two-argument overload: requests "without" an argument still get whatever is in rdx, and KVM rejects some of
    // them (KVM_GET_API_VERSION, KVM_CREATE_VM) with EINVAL unless it is 0. Pass 0.

    /// <summary><c>int ioctl(int fd, unsigned long request, unsigned long arg)</c>: requests with an integer argument.</summary>
    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int ioctl(int fd, ulong request, ulong arg);

    /// <summary><c>int ioctl(int fd, unsigned long request, void *arg)</c>: requests with a pointer argument.</summary>
    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int ioctl(int fd, ulong request, nint arg);
}
