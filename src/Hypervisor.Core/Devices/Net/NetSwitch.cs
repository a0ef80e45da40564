using System.Buffers.Binary;

namespace Paravirt.Hypervisor.Devices.Net;

/// <summary>
/// An in-memory Ethernet (L2) learning switch that connects the net devices of VMs running in one host process.
/// It learns each source MAC's port, forwards unicast frames to the learned port, and floods broadcast, multicast
/// and unknown-unicast frames to every other port. Thread-safe; memory stays bounded (the MAC table has
/// <see cref="MaxMacEntries"/> entries; each device's receive queue is bounded and drops, counted, when its guest
/// does not post receive buffers).
/// </summary>
public sealed class NetSwitch
{
    /// <summary>Largest number of learned MAC addresses; past it the switch floods frames to unlearned addresses.</summary>
    public const int MaxMacEntries = 4096;

    private readonly object _lock = new();
    private readonly List<Port> _ports = [];
    private readonly Dictionary<ulong, Port> _macTable = [];
    private long _forwarded;
    private long _flooded;
    private long _dropped;

    /// <summary>Creates a switch.</summary>
    /// <param name="name">A name for messages (e.g. the CLI's <c>switch:NAME</c>).</param>
    public NetSwitch(string name = "switch")
    {
        Name = name ?? throw new ArgumentNullException(nameof(name));
    }

    /// <summary>The switch name.</summary>
    public string Name { get; }

    /// <summary>Frames delivered to exactly one learned port.</summary>
    public long FramesForwarded => Interlocked.Read(ref _forwarded);

    /// <summary>Frames flooded (broadcast, multicast, unknown unicast).</summary>
    public long FramesFlooded => Interlocked.Read(ref _flooded);

    /// <summary>Deliveries a port refused because its receive queue was full.</summary>
    public long FramesDropped => Interlocked.Read(ref _dropped);

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

    /// <summary>Creates a new port: the backend for one <see cref="NetDevice"/>.</summary>
    public INetBackend CreatePort() => new Port(this);

    private void Forward(Port source, ReadOnlySpan<byte> frame)
    {
        if (frame.Length < 14)
        {
            return;
        }
        ulong dst = ReadMac(frame);
        ulong src = ReadMac(frame[6..]);
        Port? target = null;
        Port[] flood;
        lock (_lock)
        {
            if ((frame[6] & 1) == 0 && (_macTable.ContainsKey(src) || _macTable.Count < MaxMacEntries))
            {
                _macTable[src] = source; // learn (or move) the source address
            }
            if ((frame[0] & 1) == 0 && _macTable.TryGetValue(dst, out Port? learned))
            {
                if (ReferenceEquals(learned, source))
                {
                    return; // the destination is on the sender's own port: nothing to do
                }
                target = learned;
                flood = [];
            }
            else
            {
                flood = _ports.Count <= 1 ? [] : [.. _ports.Where(p => !ReferenceEquals(p, source))];
            }
        }
        // Deliver outside the lock: receivers take their own locks and may wake a vCPU thread.
        if (target is not null)
        {
            Interlocked.Increment(ref _forwarded);
            Deliver(target, frame);
        }
        else
        {
            Interlocked.Increment(ref _flooded);
            foreach (Port p in flood)
            {
                Deliver(p, frame);
            }
        }
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

        public void Start(NetFrameReceiver receiver)
        {
            ArgumentNullException.ThrowIfNull(receiver);
            lock (owner._lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (Receiver is not null)
                {
                    throw new InvalidOperationException("a switch port serves one device");
                }
                Receiver = receiver;
                owner._ports.Add(this);
            }
        }

        public bool Send(ReadOnlySpan<byte> frame)
        {
            if (_disposed)
            {
                return false;
            }
            owner.Forward(this, frame);
            return true;
        }

        public void Dispose()
        {
            lock (owner._lock)
            {
                if (_disposed)
                {
                    return;
                }
                _disposed = true;
                owner._ports.Remove(this);
                foreach (ulong mac in owner._macTable.Where(kv => ReferenceEquals(kv.Value, this)).Select(kv => kv.Key).ToList())
                {
                    owner._macTable.Remove(mac);
                }
                Receiver = null;
            }
        }
    }
}
