using System.Net;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Text.RegularExpressions;

namespace Paravirt.Hypervisor.Tests.Devices;

/// <summary>
/// A fact that needs TAP in a throw-away network namespace: skipped, with the reason, where the kernel or the
/// sandbox refuses (not Linux, no <c>ip</c>, no permission for namespaces, no /dev/net/tun).
/// </summary>
internal sealed class TapFactAttribute : FactAttribute
{
    public TapFactAttribute()
    {
        if (TapNamespace.Unavailable is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A network namespace for the test, and a way to run code inside it (on a thread that joined it).</summary>
internal static partial class TapNamespace
{
    private const int CLONE_NEWNET = 0x40000000;

    private static readonly Lazy<string?> Probe = new(ProbeOnce);

    /// <summary>Null when TAP in a namespace works here, else why not.</summary>
    public static string? Unavailable => Probe.Value;

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    public static (int ExitCode, string Output) Ip(string arguments)
    {
        var psi = new ProcessStartInfo("ip", arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using Process p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    /// <summary>Runs <paramref name="action"/> on a fresh thread that joined namespace <paramref name="ns"/>.</summary>
    [SupportedOSPlatform("linux")]
    public static T RunInside<T>(string ns, Func<T> action)
    {
        T? result = default;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var nsFile = File.OpenHandle($"/var/run/netns/{ns}", FileMode.Open, FileAccess.Read);
                if (setns((int)nsFile.DangerousGetHandle(), CLONE_NEWNET) != 0)
                {
                    throw new InvalidOperationException($"setns failed: errno {Marshal.GetLastPInvokeError()}");
                }
                result = action();
            }
#pragma warning disable CA1031 // rethrown on the test thread
            catch (Exception ex)
#pragma warning restore CA1031
            {
                error = ex;
            }
        });
        thread.Start();
        thread.Join(); // the thread ends here, so no pooled thread is left inside the namespace
        if (error is not null)
        {
            throw new InvalidOperationException($"in namespace {ns}: {error.Message}", error);
        }
        return result!;
    }

    private static string? ProbeOnce()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "TAP devices need Linux";
        }
        if (!File.Exists("/dev/net/tun"))
        {
            return "the kernel offers no /dev/net/tun here";
        }
        return ProbeLinux();
    }

    [SupportedOSPlatform("linux")]
    private static string? ProbeLinux()
    {
        string ns = $"pvprobe{Environment.ProcessId}";
        try
        {
            (int rc, string output) = Ip($"netns add {ns}");
            if (rc != 0)
            {
                return $"cannot create a network namespace for the TAP test: {output.Trim()}";
            }
            try
            {
                using TapBackend tap = RunInside(ns, () => new TapBackend("pvprobe0"));
            }
            catch (InvalidOperationException ex)
            {
                return $"the kernel refuses TAP here: {ex.InnerException?.Message ?? ex.Message}";
            }
            return null;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return $"the 'ip' tool is not available: {ex.Message}";
        }
        finally
        {
            try
            {
                Ip($"netns del {ns}");
            }
            catch (System.ComponentModel.Win32Exception)
            {
            }
        }
    }
}

public sealed class TapBackendTests
{
    private static readonly byte[] Broadcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    [TapFact]
    [SupportedOSPlatform("linux")]
    public void FramesCrossATapDeviceInBothDirections()
    {
        string ns = $"pvtap{Environment.ProcessId}";
        const string If = "pvtap0";
        Assert.Equal(0, TapNamespace.Ip($"netns add {ns}").ExitCode);
        try
        {
            (TapBackend tap, Socket socket) = TapNamespace.RunInside(ns, () =>
            {
                var t = new TapBackend(If);
                Assert.Equal(0, TapNamespace.Ip($"-n {ns} addr add 10.199.0.1/24 dev {If}").ExitCode);
                Assert.Equal(0, TapNamespace.Ip($"-n {ns} link set {If} up").ExitCode);
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 5000 };
                s.Bind(new IPEndPoint(IPAddress.Parse("10.199.0.1"), 4242));
                return (t, s);
            });
            using (socket)
            using (var guest = new NetGuest(new NetDevice("net0", tap)))
            {
                (_, string link) = TapNamespace.Ip($"-n {ns} link show {If}");
                byte[] hostMac = Convert.FromHexString(Regex.Match(link, "link/ether ([0-9a-f:]{17})").Groups[1].Value.Replace(":", "", StringComparison.Ordinal));

                // Guest -> kernel: a UDP datagram to 10.199.0.1:4242 arrives at the socket in the namespace.
                byte[] payload = Encoding.ASCII.GetBytes("hello from the guest");
                byte[] frame = UdpFrame(hostMac, guest.Mac, [10, 199, 0, 2], [10, 199, 0, 1], 4243, 4242, payload);
                Assert.Equal([0L], guest.Send(frame));
                byte[] received = new byte[256];
                EndPoint from = new IPEndPoint(IPAddress.Any, 0);
                int n = socket.ReceiveFrom(received, ref from);
                Assert.Equal(payload, received.AsSpan(0, n).ToArray());
                Assert.Equal(IPAddress.Parse("10.199.0.2"), ((IPEndPoint)from).Address);

                // Kernel -> guest: sending to 10.199.0.3 makes the kernel ARP for it out of the TAP device.
                guest.PostRx(16);
                socket.SendTo("ping"u8.ToArray(), new IPEndPoint(IPAddress.Parse("10.199.0.3"), 9));
                byte[]? arp = null;
                var deadline = Stopwatch.StartNew();
                while (arp is null && deadline.Elapsed < TimeSpan.FromSeconds(10))
                {
                    guest.Harness.Poll(1, 500);
                    foreach ((long status, byte[] f) in guest.Receive())
                    {
                        Assert.Equal(0, status);
                        if (f.Length >= 42 && f[12] == 0x08 && f[13] == 0x06 && f.AsSpan(38, 4).SequenceEqual(new byte[] { 10, 199, 0, 3 }))
                        {
                            arp = f;
                        }
                    }
                    if (guest.Rx.ReqProd - guest.Rx.RspProd < 8)
                    {
                        guest.PostRx(8);
                        guest.Harness.EventSend(0);
                    }
                }
                Assert.NotNull(arp);
                Assert.Equal(Broadcast, arp.AsSpan(0, 6).ToArray());
                Assert.Equal(hostMac, arp.AsSpan(6, 6).ToArray());
            }
        }
        finally
        {
            TapNamespace.Ip($"netns del {ns}");
        }
    }

    [Fact]
    [SupportedOSPlatform("linux")]
    public void BadInterfaceNamesAreClearErrors()
    {
        var ex = Assert.Throws<DeviceConfigurationException>(() => new TapBackend("this-name-is-far-too-long"));
        Assert.Contains("invalid", ex.Message, StringComparison.Ordinal);
        Assert.Throws<DeviceConfigurationException>(() => new TapBackend("a/b"));
    }

    private static byte[] UdpFrame(byte[] dstMac, byte[] srcMac, byte[] srcIp, byte[] dstIp, ushort srcPort, ushort dstPort, byte[] payload)
    {
        int ipLength = 20 + 8 + payload.Length;
        byte[] f = new byte[14 + ipLength];
        dstMac.CopyTo(f, 0);
        srcMac.CopyTo(f, 6);
        f[12] = 0x08; // IPv4
        Span<byte> ip = f.AsSpan(14);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)ipLength);
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        srcIp.CopyTo(ip[12..]);
        dstIp.CopyTo(ip[16..]);
        uint sum = 0;
        for (int i = 0; i < 20; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(ip[i..]);
        }
        while (sum > 0xFFFF)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~sum);
        Span<byte> udp = ip[20..];
        BinaryPrimitives.WriteUInt16BigEndian(udp, srcPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], dstPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(8 + payload.Length));
        payload.CopyTo(udp[8..]); // UDP checksum 0: none
        return f;
    }
}
