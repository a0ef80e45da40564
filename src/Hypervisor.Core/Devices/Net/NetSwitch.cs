using System.Net.NetworkInformation;

namespace Paravirt.Hypervisor.Devices.Net;

/// <summary>
/// An in-memory Ethernet (L2) switch that connects the net devices of VMs running in one host process, with port
/// security as a cloud VPC port has it: each port carries exactly one MAC address, the one the host assigned to its
/// device (<see cref="INetBackend.Start"/>), and the switch never learns from guest traffic.
/// </summary>
/// <remarks>
/// A frame whose source MAC is not its port's is dropped and counted (<see cref="FramesSpoofed"/>): a guest cannot
/// claim another VM's address to receive its traffic. Unicast goes to the one port that owns the destination MAC;
/// unicast to a MAC no port owns is dropped and counted (<see cref="FramesUnknown"/>), never flooded, so no guest sees
/// traffic meant for another port; broadcast and multicast go to every other port. The MAC table holds one entry
/// per port (the host decides how many ports there are), each receive queue is bounded by its device, and the switch
/// is thread-safe.
/// </remarks>
public sealed class NetSwitch
{
    private readonly object _lock = new();
    private readonly List<Port> _ports = [];
    private readonly Dictionary<ulong, Port> _macTable = [];
    private Port[] _snapshot = [];
    private long _forwarded;
    private long _flooded;
    private long _dropped;
    private long _spoofed;
    private long _unknown;

    /// <summary>Creates a switch.</summary>
    /// <param name="name">A name for messages (e.g. the CLI's <c>switch:NAME</c>).</param>
    public NetSwitch(string name = "switch")
    {
        Name = name ?? throw new ArgumentNullException(nameof(name));
    }

    /// <summary>The switch name.</summary>
    public string Name { get; }

    /// <summary>Frames delivered to the one port that owns their destination MAC.</summary>
    public long FramesForwarded => Interlocked.Read(ref _forwarded);

    /// <summary>Broadcast and multicast frames sent to every other port.</summary>
    public long FramesFlooded => Interlocked.Read(ref _flooded);

    /// <summary>Deliveries a port refused because its receive queue was full.</summary>
    public long FramesDropped => Interlocked.Read(ref _dropped);

    /// <summary>Frames dropped because their source MAC was not their port's (or they were shorter than a header).</summary>
    public long FramesSpoofed => Interlocked.Read(ref _spoofed);

    /// <summary>Unicast frames dropped because no port owns their destination MAC.</summary>
    public long FramesUnknown => Interlocked.Read(ref _unknown);

    /// <summary>Number of connected ports.</summary>
    public int PortCount
    {
        get
        {
            lock (_lock)
            {
                return _ports.Count;
            }
        }
    }

    /// <summary>Creates a new port: the backend for one <see cref="NetDevice"/>, which binds it to its MAC when it starts it.</summary>
    public INetBackend CreatePort() => new Port(this);

    private bool Forward(Port source, ReadOnlySpan<byte> frame)
    {
        if (frame.Length < 14 || ReadMac(frame[6..]) != source.Mac)
        {
            Interlocked.Increment(ref _spoofed);
            return false;
        }
        if ((frame[0] & 1) != 0)
        {
            Interlocked.Increment(ref _flooded);
            foreach (Port p in Volatile.Read(ref _snapshot))
            {
                if (!ReferenceEquals(p, source))
                {
                    Deliver(p, frame);
                }
            }
            return true;
        }
        Port? target;
        lock (_lock)
        {
            _macTable.TryGetValue(ReadMac(frame), out target);
        }
        if (target is null || ReferenceEquals(target, source))
        {
            Interlocked.Increment(ref _unknown);
            return false;
        }
        // Delivered outside the lock: receivers take their own locks and may wake a vCPU thread.
        Interlocked.Increment(ref _forwarded);
        Deliver(target, frame);
        return true;
    }

    private void Deliver(Port port, ReadOnlySpan<byte> frame)
    {
        if (port.Receiver is not { } receiver || !receiver(frame))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    private static ulong ReadMac(ReadOnlySpan<byte> p) =>
        ((ulong)BinaryPrimitives.ReadUInt16BigEndian(p) << 32) | BinaryPrimitives.ReadUInt32BigEndian(p[2..]);

    private sealed class Port(NetSwitch owner) : INetBackend
    {
        private bool _disposed;

        public NetFrameReceiver? Receiver { get; private set; }

        public ulong Mac { get; private set; } = ulong.MaxValue; // never a unicast source before Start

        public void Start(NetFrameReceiver receiver, PhysicalAddress mac)
        {
            ArgumentNullException.ThrowIfNull(receiver);
            ArgumentNullException.ThrowIfNull(mac);
            byte[] bytes = mac.GetAddressBytes();
            if (bytes.Length != 6 || (bytes[0] & 1) != 0)
            {
                throw new ArgumentException($"a switch port needs a 6-byte unicast MAC address (got {mac})", nameof(mac));
            }
            ulong key = ReadMac(bytes);
            lock (owner._lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (Receiver is not null)
                {
                    throw new InvalidOperationException("a switch port serves one device");
                }
                if (!owner._macTable.TryAdd(key, this))
                {
                    throw new DeviceConfigurationException($"MAC address {FormatMac(bytes)} is already used on switch {owner.Name}; give each device its own mac=");
                }
                Mac = key;
                Receiver = receiver;
                owner._ports.Add(this);
                owner._snapshot = [.. owner._ports];
            }
        }

        public bool Send(ReadOnlySpan<byte> frame) => !_disposed && owner.Forward(this, frame);

        public void Dispose()
        {
            lock (owner._lock)
            {
                if (_disposed)
                {
                    return;
                }
                _disposed = true;
                if (owner._ports.Remove(this))
                {
                    owner._macTable.Remove(Mac);
                    owner._snapshot = [.. owner._ports];
                }
                Receiver = null;
            }
        }

        private static string FormatMac(byte[] b) => string.Join(':', b.Select(x => x.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
    }
}
