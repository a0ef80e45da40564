using System.Buffers;
using System.Net.NetworkInformation;
using System.Text;
using Paravirt.Hypervisor.Devices.Rings;

namespace Paravirt.Hypervisor.Devices.Net;

/// <summary>
/// A paravirtual Ethernet interface: a transmit ring (<see cref="NetTxRequest"/>/<see cref="NetTxResponse"/>) whose
/// frames go to the backend, and a receive ring (<see cref="NetRxRequest"/>/<see cref="NetRxResponse"/>) of empty
/// buffers the guest posts, which the host fills with frames from the backend: queue 0 and queue 1 of
/// <see cref="HypercallCode.DeviceAttach"/>, each with its own event port (the ABI 1.0 <see cref="HypercallCode.NetAttach"/>
/// binds both to one). Its configuration is a <see cref="NetConfig"/>.
/// </summary>
/// <remarks>
/// Frames from the backend arrive on other threads and wait in a bounded queue (<see cref="ReceiveQueueLimit"/>
/// frames, each in a buffer rented from <see cref="ArrayPool{T}.Shared"/> and returned once the frame is in the guest
/// or dropped; further frames are dropped and counted in <see cref="RxDropped"/>) until the vCPU thread pumps them
/// into posted receive buffers. Transmitted frames are validated (<c>14 &lt;= length &lt;= MTU + 14</c>, buffer inside guest
/// memory, source MAC = the device's MAC) and copied once before the backend sees them; a frame with another source
/// MAC is answered <see cref="HypercallStatus.PermissionDenied"/> and counted in <see cref="TxSpoofed"/> (as
/// Firecracker counts <c>tx_spoofed_mac_count</c>), so no backend ever carries a spoofed frame.
/// </remarks>
public sealed class NetDevice : VirtualDevice
{
    /// <summary>Frames waiting for receive buffers, per device, before new ones are dropped.</summary>
    public const int ReceiveQueueLimit = 256;
    /// <summary>Smallest MTU accepted (IPv4's minimum).</summary>
    public const uint MinMtu = 68;
    /// <summary>Largest MTU accepted (a jumbo frame).</summary>
    public const uint MaxMtu = NetConstants.MaxFrame - NetConstants.EthernetHeader;

    private readonly INetBackend _backend;
    private readonly byte[] _mac;
    private const int TxQueue = 0;
    private const int RxQueue = 1;

    private readonly Queue<PooledFrame> _rxQueue = new();
    private readonly byte[] _txBuffer;
    private readonly TxHandler _txHandler;
    private SharedRing<NetTxRequest, NetTxResponse>? _tx;
    private SharedRing<NetRxRequest, NetRxResponse>? _rx;
    private long _rxDropped;
    private long _txSpoofed;
    private long _txFrames;
    private long _rxFrames;
    private long _txBytes;
    private long _rxBytes;

    /// <summary>Creates a net device on <paramref name="backend"/> (which the device then owns).</summary>
    /// <param name="name">Device name (e.g. "net0").</param>
    /// <param name="backend">Where frames go: <see cref="NetSwitch.CreatePort"/> or a <see cref="TapBackend"/>.</param>
    /// <param name="mac">The MAC address; null derives a locally administered one from the name and <paramref name="vmIndex"/>.</param>
    /// <param name="mtu">MTU in bytes (payload without the Ethernet header), <see cref="MinMtu"/>..<see cref="MaxMtu"/>.</param>
    /// <param name="vmIndex">Distinguishes the derived MACs of same-named devices of several VMs.</param>
    /// <exception cref="ArgumentException">The MAC is not 6 bytes or is multicast, or the MTU is out of range.</exception>
    /// <exception cref="DeviceConfigurationException">The backend refused the MAC (another port of the switch has it).</exception>
    public NetDevice(string name, INetBackend backend, PhysicalAddress? mac = null, uint mtu = NetConstants.DefaultMtu, int vmIndex = 0)
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (mtu is < MinMtu or > MaxMtu)
        {
            throw new ArgumentOutOfRangeException(nameof(mtu), mtu, $"the MTU must be {MinMtu} to {MaxMtu} bytes");
        }
        _mac = mac?.GetAddressBytes() ?? DeriveMac(name, vmIndex).GetAddressBytes();
        if (_mac.Length != 6 || (_mac[0] & 1) != 0)
        {
            throw new ArgumentException($"MAC address {mac} must be a 6-byte unicast address", nameof(mac));
        }
        Mtu = mtu;
        _txBuffer = new byte[mtu + NetConstants.EthernetHeader];
        _txHandler = new TxHandler(this);
        _backend = backend;
        try
        {
            _backend.Start(OnFrameReceived, new PhysicalAddress(_mac));
        }
        catch
        {
            _backend.Dispose(); // the device owns it, and there will be no device
            throw;
        }
    }

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Net;

    /// <summary>The MAC address.</summary>
    public PhysicalAddress MacAddress => new(_mac);

    /// <summary>MTU in bytes (without the 14-byte Ethernet header).</summary>
    public uint Mtu { get; }

    /// <summary>Frames dropped because the guest had no receive buffer (queue full) or its buffer was too small.</summary>
    public long RxDropped => Interlocked.Read(ref _rxDropped);

    /// <summary>Frames the guest tried to transmit with a source MAC other than the device's (dropped).</summary>
    public long TxSpoofed => Interlocked.Read(ref _txSpoofed);

    /// <summary>Frames the guest transmitted successfully.</summary>
    public long TxFrames => Interlocked.Read(ref _txFrames);

    /// <summary>Frames delivered into the guest's receive buffers.</summary>
    public long RxFrames => Interlocked.Read(ref _rxFrames);

    /// <summary>Frames waiting in the receive queue.</summary>
    public int RxQueued
    {
        get
        {
            lock (_rxQueue)
            {
                return _rxQueue.Count;
            }
        }
    }

    /// <summary>
    /// A locally administered unicast MAC derived from <paramref name="name"/> and <paramref name="vmIndex"/>:
    /// 0x02 followed by 5 bytes of the 64-bit FNV-1a hash of <c>"paravirt/{vmIndex}/{name}"</c> (UTF-8). Stable
    /// across runs and hosts, and needs no crypto library (minimal hosts lack OpenSSL).
    /// </summary>
    public static PhysicalAddress DeriveMac(string name, int vmIndex)
    {
        ArgumentNullException.ThrowIfNull(name);
        ulong hash = 0xcbf29ce484222325;
        foreach (byte b in Encoding.UTF8.GetBytes($"paravirt/{vmIndex.ToString(System.Globalization.CultureInfo.InvariantCulture)}/{name}"))
        {
            hash = (hash ^ b) * 0x100000001b3;
        }
        byte[] mac = new byte[6];
        mac[0] = 0x02; // locally administered, unicast
        for (int i = 1; i < 6; i++)
        {
            mac[i] = (byte)(hash >> (8 * (i - 1)));
        }
        return new PhysicalAddress(mac);
    }

    /// <inheritdoc/>
    public override IReadOnlyList<DeviceQueue> Queues { get; } =
        [DeviceQueue.Ring<NetTxRequest, NetTxResponse>("tx"), DeviceQueue.Ring<NetRxRequest, NetRxResponse>("rx")];

    /// <inheritdoc/>
    public override bool SupportsSnapshots => true;

    /// <inheritdoc/>
    protected override int ConfigSize => System.Runtime.CompilerServices.Unsafe.SizeOf<NetConfig>();

    /// <inheritdoc/>
    protected override unsafe void WriteConfig(Span<byte> config)
    {
        var net = new NetConfig { Mtu = Mtu };
        _mac.CopyTo(new Span<byte>(net.Mac, 6)); // Safe: a local struct (not movable) with a 6-byte field; _mac is 6 bytes
        MemoryMarshal.Write(config, in net);
    }

    /// <summary>Both rings' private indices (exact).</summary>
    protected override object? SaveState() => _tx is { } tx && _rx is { } rx ? (tx.Save(), rx.Save()) : null;

    /// <inheritdoc/>
    protected override void LoadState(object? state, DeviceActivation? activation)
    {
        (_tx, _rx) = state is (RingState tx, RingState rx) && activation is not null
            ? (SharedRing<NetTxRequest, NetTxResponse>.Load(activation.Memory, tx), SharedRing<NetRxRequest, NetRxResponse>.Load(activation.Memory, rx))
            : (null, null);
    }

    private protected override void DescribeInto(ref DeviceInfo info)
    {
        info.Mtu = Mtu;
        unsafe
        {
            // Safe: the field is 6 bytes and _mac is 6 bytes (checked in the constructor); info is pinned.
            fixed (byte* p = info.Mac)
            {
                _mac.CopyTo(new Span<byte>(p, 6));
            }
        }
    }

    /// <inheritdoc/>
    protected override HypercallStatus OnActivate(DeviceActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        _tx = activation.OpenRing<NetTxRequest, NetTxResponse>(TxQueue);
        _rx = activation.OpenRing<NetRxRequest, NetRxResponse>(RxQueue);
        return HypercallStatus.Ok;
    }

    /// <inheritdoc/>
    protected override void OnReset() => (_tx, _rx) = (null, null);

    /// <inheritdoc/>
    protected override void OnNotify(GuestSession session, int queue)
    {
        if (queue == TxQueue)
        {
            Transmit(session);
        }
        else if (DeliverReceived(session) && !IsBroken)
        {
            Notify(session, RxQueue);
        }
    }

    /// <inheritdoc/>
    protected override void OnPump(GuestSession session)
    {
        if (_tx is { } tx && tx.Refresh() && tx.Pending != 0)
        {
            Transmit(session); // transmit work left over from a budget-limited doorbell
        }
        if (!IsBroken && DeliverReceived(session) && !IsBroken)
        {
            Notify(session, RxQueue);
        }
    }

    /// <summary>Processes the transmit ring (at most one ring's worth).</summary>
    private void Transmit(GuestSession session)
    {
        long txBytes = _txBytes;
        RingRun run = _tx!.Process(_txHandler, session.Stopping);
        if (run.Corrupt)
        {
            MarkBroken($"the guest's transmit ring indices are corrupt (req_prod more than {_tx.Slots} ahead)");
            return;
        }
        if (run.MoreWork)
        {
            session.RequestPump();
        }
        session.Metrics?.RecordDeviceBytes(Name, "tx", _txBytes - txBytes);
        if (run.Notify)
        {
            Notify(session, TxQueue);
        }
    }

    /// <summary>Copies queued frames into posted receive buffers (at most one ring's worth per call); true when the guest wants an event.</summary>
    private bool DeliverReceived(GuestSession session)
    {
        SharedRing<NetRxRequest, NetRxResponse> rx = _rx!;
        if (RxQueued == 0)
        {
            return false;
        }
        if (!rx.Refresh())
        {
            MarkBroken($"the guest's receive ring indices are corrupt (req_prod more than {rx.Slots} ahead)");
            return false;
        }
        long rxBytes = _rxBytes;
        for (uint budget = rx.Slots; budget > 0; budget--)
        {
            PooledFrame frame;
            lock (_rxQueue)
            {
                if (!_rxQueue.TryPeek(out frame))
                {
                    break;
                }
            }
            if (!rx.TryTakeRequest(out NetRxRequest request))
            {
                // No buffer posted: ask for a doorbell when the guest posts one.
                if (!rx.FinalCheckForRequests(out bool corrupt))
                {
                    if (corrupt)
                    {
                        MarkBroken($"the guest's receive ring indices are corrupt (req_prod more than {rx.Slots} ahead)");
                    }
                    break;
                }
                if (!rx.TryTakeRequest(out request))
                {
                    break;
                }
            }
            lock (_rxQueue)
            {
                _rxQueue.Dequeue();
            }
            var response = new NetRxResponse { Id = request.Id };
            if (request.Capacity < frame.Length)
            {
                response.Status = (long)HypercallStatus.TooBig;
                Interlocked.Increment(ref _rxDropped);
            }
            else if (!session.Memory.TryWrite(new GuestAddress(request.Buffer), frame.Span))
            {
                response.Status = (long)HypercallStatus.Fault;
                Interlocked.Increment(ref _rxDropped);
            }
            else
            {
                response.Length = (uint)frame.Length;
                Interlocked.Increment(ref _rxFrames);
                _rxBytes += frame.Length;
            }
            frame.Return();
            rx.PutResponse(in response);
        }
        session.Metrics?.RecordDeviceBytes(Name, "rx", _rxBytes - rxBytes);
        bool notify = rx.PushResponses();
        if (RxQueued != 0 && rx.Pending != 0)
        {
            session.RequestPump(); // budget used up with buffers and frames left
        }
        return notify;
    }

    private NetTxResponse TransmitOne(in NetTxRequest request)
    {
        var response = new NetTxResponse { Id = request.Id };
        if (request.Length < NetConstants.EthernetHeader)
        {
            response.Status = (long)HypercallStatus.Invalid;
        }
        else if (request.Length > Mtu + NetConstants.EthernetHeader)
        {
            response.Status = (long)HypercallStatus.TooBig;
        }
        else
        {
            Span<byte> frame = _txBuffer.AsSpan(0, (int)request.Length);
            if (!Session!.Memory.TryRead(new GuestAddress(request.Buffer), frame))
            {
                response.Status = (long)HypercallStatus.Fault;
            }
            else if (!frame.Slice(6, 6).SequenceEqual(_mac))
            {
                response.Status = (long)HypercallStatus.PermissionDenied;
                Interlocked.Increment(ref _txSpoofed);
            }
            else
            {
                // The frame was copied once out of guest memory; the backend sees the copy.
                _backend.Send(frame);
                Interlocked.Increment(ref _txFrames);
                _txBytes += frame.Length;
            }
        }
        return response;
    }

    private bool OnFrameReceived(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < NetConstants.EthernetHeader || frame.Length > Mtu + NetConstants.EthernetHeader)
        {
            Interlocked.Increment(ref _rxDropped);
            return false;
        }
        lock (_rxQueue)
        {
            if (_rxQueue.Count >= ReceiveQueueLimit)
            {
                Interlocked.Increment(ref _rxDropped);
                return false;
            }
            _rxQueue.Enqueue(PooledFrame.CopyOf(frame));
        }
        RequestPump();
        return true;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _backend.Dispose(); // no more frames arrive after this
            lock (_rxQueue)
            {
                while (_rxQueue.TryDequeue(out PooledFrame frame))
                {
                    frame.Return();
                }
            }
        }
        base.Dispose(disposing);
    }

    private sealed class TxHandler(NetDevice device) : IRingRequestHandler<NetTxRequest, NetTxResponse>
    {
        public NetTxResponse Handle(in NetTxRequest request) => device.TransmitOne(in request);
    }

    /// <summary>A received frame waiting in the queue, in a buffer rented from the shared pool (no allocation per frame).</summary>
    private readonly record struct PooledFrame(byte[] Buffer, int Length)
    {
        public ReadOnlySpan<byte> Span => Buffer.AsSpan(0, Length);

        public static PooledFrame CopyOf(ReadOnlySpan<byte> frame)
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent(frame.Length);
            frame.CopyTo(buffer);
            return new PooledFrame(buffer, frame.Length);
        }

        public void Return() => ArrayPool<byte>.Shared.Return(Buffer);
    }
}
