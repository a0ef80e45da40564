namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>A KVM file descriptor (<c>/dev/kvm</c>, a VM or a vCPU), closed exactly once by the <see cref="SafeHandle"/> machinery.</summary>
[SupportedOSPlatform("linux")]
internal sealed class KvmFd : SafeHandle
{
    /// <summary>Creates an invalid handle (used by the marshaller and as the failure value).</summary>
    public KvmFd() : base(-1, ownsHandle: true) { }

    /// <summary>Wraps <paramref name="fd"/>, taking ownership.</summary>
    public KvmFd(int fd) : base(-1, ownsHandle: true) => SetHandle(fd);

    /// <inheritdoc/>
    public override bool IsInvalid => handle < 0;

    /// <summary>The descriptor number. Callers keep this object alive (and undisposed) while they use it.</summary>
    public int Fd => (int)handle;

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => Libc.close((int)handle) == 0;

    /// <summary><c>ioctl(fd, request, 0)</c>; returns the result, or -1 with the errno in <paramref name="errno"/>.</summary>
    public int Ioctl(ulong request, out int errno) => Call(request, Arg.None, 0, out errno);

    /// <summary><c>ioctl(fd, request, arg)</c> with an integer argument.</summary>
    public int Ioctl(ulong request, ulong arg, out int errno) => Call(request, Arg.Integer, arg, out errno);

    /// <summary><c>ioctl(fd, request, ptr)</c> with a pointer argument (the caller keeps the pointee alive and pinned).</summary>
    public unsafe int Ioctl(ulong request, void* arg, out int errno) => Call(request, Arg.Pointer, (ulong)arg, out errno);

    private enum Arg { None, Integer, Pointer }

    private int Call(ulong request, Arg kind, ulong arg, out int errno)
    {
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
            int fd = (int)handle;
            int r = kind switch
            {
                Arg.None => Libc.ioctl(fd, request, 0UL), // KVM checks that unused arguments are 0
                Arg.Integer => Libc.ioctl(fd, request, arg),
                _ => Libc.ioctl(fd, request, (nint)arg),
            };
            errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
            return r;
        }
        finally
        {
            if (added)
            {
                DangerousRelease();
            }
        }
    }
}
