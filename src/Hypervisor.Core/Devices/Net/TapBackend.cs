using System.Net.NetworkInformation;
using System.Text;

namespace Paravirt.Hypervisor.Devices.Net;

/// <summary>
/// A Linux TAP interface as a net backend: frames the guest sends appear on the host interface, frames the host
/// stack sends out of it reach the guest. Opens <c>/dev/net/tun</c> and binds it to the interface with
/// <c>TUNSETIFF</c> (<c>IFF_TAP | IFF_NO_PI</c>): an existing interface (e.g. created with
/// <c>ip tuntap add dev tap0 mode tap user $USER</c>) needs no privilege; creating one needs CAP_NET_ADMIN.
/// One reader thread polls the fd and hands frames to the device.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class TapBackend : INetBackend
{
    private const int ReadBufferSize = 65536;
    private const int PollIntervalMs = 100;

    private readonly SafeFileHandle _fd;
    private Thread? _reader;
    private volatile bool _stopping;
    private long _readErrors;

    /// <summary>Opens TAP interface <paramref name="interfaceName"/> (creating it when it does not exist and the process may).</summary>
    /// <exception cref="DeviceConfigurationException">No TUN/TAP support, permission denied, the interface is busy, or the name is invalid.</exception>
    public TapBackend(string interfaceName)
    {
        ArgumentNullException.ThrowIfNull(interfaceName);
        byte[] name = Encoding.ASCII.GetBytes(interfaceName);
        if (name.Length is 0 or >= Libc.IFNAMSIZ || interfaceName.Any(c => c is <= ' ' or > '~' or '/' or ':'))
        {
            throw new DeviceConfigurationException($"TAP interface name '{interfaceName}' is invalid (1 to {Libc.IFNAMSIZ - 1} printable characters, no '/', ':' or spaces)");
        }
        InterfaceName = interfaceName;
        if (!OperatingSystem.IsLinux())
        {
            throw new DeviceConfigurationException("TAP network devices need Linux");
        }
        int fd = Libc.open("/dev/net/tun", Libc.O_RDWR | Libc.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new DeviceConfigurationException(errno switch
            {
                Libc.ENOENT or Libc.ENODEV => "cannot open /dev/net/tun: the kernel has no TUN/TAP support here (load the tun module, or give the container /dev/net/tun)",
                Libc.EACCES or Libc.EPERM => "cannot open /dev/net/tun: permission denied (run as root, or grant access to /dev/net/tun)",
                _ => $"cannot open /dev/net/tun: errno {errno}",
            });
        }
        _fd = new SafeFileHandle(fd, ownsHandle: true);
        var request = new Libc.IfReq { ifr_flags = Libc.IFF_TAP | Libc.IFF_NO_PI };
        int rc;
        unsafe
        {
            // Safe: the name is shorter than IFNAMSIZ (checked above), so the NUL terminator stays; the IfReq lives on the stack for the call.
            name.CopyTo(new Span<byte>(request.ifr_name, Libc.IFNAMSIZ));
            rc = Libc.ioctl(_fd, Libc.TUNSETIFF, &request);
        }
        if (rc < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _fd.Dispose();
            throw new DeviceConfigurationException(errno switch
            {
                Libc.EPERM or Libc.EACCES => $"cannot attach TAP interface {interfaceName}: permission denied (creating a TAP interface needs CAP_NET_ADMIN; create it first with 'ip tuntap add dev {interfaceName} mode tap user {Environment.UserName}')",
                Libc.EBUSY => $"cannot attach TAP interface {interfaceName}: it is in use by another process",
                Libc.EINVAL => $"cannot attach TAP interface {interfaceName}: it exists but is not a TAP interface",
                _ => $"cannot attach TAP interface {interfaceName}: errno {errno}",
            });
        }
    }

    /// <summary>The host interface name.</summary>
    public string InterfaceName { get; }

    /// <summary>Frames written to the interface that the kernel refused.</summary>
    public long WriteErrors { get; private set; }

    /// <summary>Failed reads from the interface.</summary>
    public long ReadErrors => Interlocked.Read(ref _readErrors);

    /// <inheritdoc/>
    public void Start(NetFrameReceiver receiver, PhysicalAddress mac)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        if (_reader is not null)
        {
            throw new InvalidOperationException("the TAP backend serves one device");
        }
        _reader = new Thread(() => ReadLoop(receiver)) { IsBackground = true, Name = $"tap {InterfaceName}" };
        _reader.Start();
    }

    /// <inheritdoc/>
    public bool Send(ReadOnlySpan<byte> frame)
    {
        if (_stopping)
        {
            return false;
        }
        unsafe
        {
            // Safe: the span is pinned for the duration of the call and its length is passed.
            fixed (byte* p = frame)
            {
                if (Libc.write(_fd, p, (nuint)frame.Length) == frame.Length)
                {
                    return true;
                }
            }
        }
        WriteErrors++;
        return false;
    }

    private unsafe void ReadLoop(NetFrameReceiver receiver)
    {
        byte[] buffer = new byte[ReadBufferSize];
        bool added = false;
        _fd.DangerousAddRef(ref added);
        try
        {
            var pfd = new Libc.PollFd { fd = (int)_fd.DangerousGetHandle(), events = Libc.POLLIN };
            while (!_stopping)
            {
                pfd.revents = 0;
                // Safe: pfd is a stack local for the duration of the call; the fd is kept alive by the AddRef above.
                int ready = Libc.poll(&pfd, 1, PollIntervalMs);
                if (ready <= 0)
                {
                    continue; // timeout or EINTR: look at _stopping again
                }
                nint n;
                // Safe: buffer is pinned and its length passed.
                fixed (byte* p = buffer)
                {
                    n = Libc.read(_fd, p, (nuint)buffer.Length);
                }
                if (n < 0)
                {
                    Interlocked.Increment(ref _readErrors);
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno is not (Libc.EINTR or Libc.EAGAIN))
                    {
                        Thread.Sleep(PollIntervalMs); // e.g. EIO while the interface is down
                    }
                    continue;
                }
                if (n >= NetConstants.EthernetHeader)
                {
                    receiver(buffer.AsSpan(0, (int)n));
                }
            }
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _stopping = true;
        _reader?.Join();
        _fd.Dispose();
    }
}
