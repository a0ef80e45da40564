using System.Net.NetworkInformation;
using System.Text;
using Paravirt.Abi;
using Paravirt.Hypervisor.Devices.Rings;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Devices.Net;

/// <summary>
/// A paravirtual Ethernet interface: a transmit ring (<see cref="NetTxRequest"/>/<see cref="NetTxResponse"/>) whose
/// frames go to the backend, and a receive ring (<see cref="NetRxRequest"/>/<see cref="NetRxResponse"/>) of empty
/// buffers the guest posts, which the host fills with frames from the backend. Both rings share one event port.
/// </summary>
/// <remarks>
/// Frames from the backend arrive on other threads and wait in a bounded queue (<see cref="ReceiveQueueLimit"/>
/// frames; further frames are dropped and counted in <see cref="RxDropped"/>) until the vCPU thread pumps them into
/// posted receive buffers. Transmitted frames are validated (<c>14 &lt;= length &lt;= MTU + 14</c>, buffer inside guest
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
    private readonly Queue<byte[]> _rxQueue = new();
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

    private protected override uint MaxRingOrder => RingConstants.MaxOrder;

    private protected override object? SaveKindState() => _tx is { } tx && _rx is { } rx ? (tx.Save(), rx.Save()) : null;

    private protected override void LoadKindState(object? state, GuestSession session)
    {
        (_tx, _rx) = state is (RingState tx, RingState rx)
            ? (SharedRing<NetTxRequest, NetTxResponse>.Load(session.Memory, tx), SharedRing<NetRxRequest, NetRxResponse>.Load(session.Memory, rx))
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

    /// <summary><c>net_attach(device, tx_ring, rx_ring, order)</c>: validates and binds both rings; returns the event port.</summary>
    internal long Attach(GuestSession session, ulong txRing, ulong rxRing, ulong order, int port)
    {
        if (!CanAttach(session, out long status))
        {
            return status;
        }
        RingError txError = SharedRing<NetTxRequest, NetTxResponse>.TryAttach(session.Memory, txRing, order, MaxRingOrder, out SharedRing<NetTxRequest, NetTxResponse>? tx);
        RingError rxError = SharedRing<NetRxRequest, NetRxResponse>.TryAttach(session.Memory, rxRing, order, MaxRingOrder, out SharedRing<NetRxRequest, NetRxResponse>? rx);
        if (txError == RingError.Invalid || rxError == RingError.Invalid)
        {
            return (long)HypercallStatus.Invalid;
        }
        if (txError == RingError.Fault || rxError == RingError.Fault)
        {
            return (long)HypercallStatus.Fault;
        }
        ulong size = SharedRing<NetTxRequest, NetTxResponse>.ByteSize((uint)order, NetConstants.SlotSize);
        if (txRing < rxRing + size && rxRing < txRing + size)
        {
            return (long)HypercallStatus.Invalid; // the two rings overlap
        }
        _tx = tx;
        _rx = rx;
        return CompleteAttach(session, port);
    }

    private protected override void OnDoorbell(GuestSession session)
    {
        bool notify = false;
        long txBytes = _txBytes;
        RingRun run = _tx!.Process(_txHandler, session.Stopping);
        if (run.Corrupt)
        {
            MarkBroken($"the guest's transmit ring indices are corrupt (req_prod more than {_tx.Slots} ahead)");
            return;
        }
        notify |= run.Notify;
        if (run.MoreWork)
        {
            session.RequestPump();
        }
        session.Metrics?.RecordDeviceBytes(Name, "tx", _txBytes - txBytes);
        notify |= DeliverReceived(session);
        if (notify && !IsBroken)
        {
            Notify(session);
        }
    }

    private protected override void OnPump(GuestSession session)
    {
        if (_tx is { } tx && tx.Refresh() && tx.Pending != 0)
        {
            OnDoorbell(session); // transmit work left over from a budget-limited doorbell
            return;
        }
        if (DeliverReceived(session) && !IsBroken)
        {
            Notify(session);
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
            byte[]? frame;
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
            else if (!session.Memory.TryWrite(new GuestAddress(request.Buffer), frame))
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

    private NetTxResponse Transmit(in NetTxRequest request)
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
            _rxQueue.Enqueue(frame.ToArray());
        }
        RequestPump();
        return true;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _backend.Dispose();
        }
        base.Dispose(disposing);
    }

    private sealed class TxHandler(NetDevice device) : IRingRequestHandler<NetTxRequest, NetTxResponse>
    {
        public NetTxResponse Handle(in NetTxRequest request) => device.Transmit(in request);
    }
}
