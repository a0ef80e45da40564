namespace Paravirt.Hypervisor.Tests.Devices;

/// <summary>
/// A guest without guest code: the test plays the guest, writing rings and requests straight into guest memory and
/// calling hypercalls through the real dispatcher with a real session.
/// </summary>
internal sealed class DeviceHarness : IDisposable
{
    public const ulong MemorySize = 8UL << 20;

    private readonly CancellationTokenSource _stop = new();

    public DeviceHarness(params VirtualDevice[] devices)
        : this(null, devices)
    {
    }

    public DeviceHarness(Diagnostics.ParavirtMetrics? metrics, params VirtualDevice[] devices)
    {
        Memory = new GuestMemory(MemorySize);
        var image = new GuestImage([], 0x100000, [], AbiVersion.Current, []);
        Session = new GuestSession(Memory, image, Stream.Null, _stop.Token) { Devices = devices, Metrics = metrics };
        Dispatcher = new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]);
    }

    public GuestMemory Memory { get; }
    public GuestSession Session { get; }
    public HypercallDispatcher Dispatcher { get; }

    public long Call(HypercallCode code, ulong a1 = 0, ulong a2 = 0, ulong a3 = 0, ulong a4 = 0, ulong a5 = 0) =>
        Dispatcher.Dispatch(new HypercallArgs((ulong)code, a1, a2, a3, a4, a5), Session);

    public long EventSend(int port) => Call(HypercallCode.EventSend, (ulong)port);

    /// <summary>
    /// A block ring of 2^<paramref name="order"/> slots that the test writes at <paramref name="address"/>, attached to
    /// block device <paramref name="index"/>; asserts the attach returned the device's event port (its index).
    /// </summary>
    public GuestRing<BlockRequest, BlockResponse> AttachBlockRing(int index, ulong address, int order)
    {
        var ring = new GuestRing<BlockRequest, BlockResponse>(Memory, address, order, BlockConstants.SlotSize);
        Assert.Equal(index, Call(HypercallCode.BlockAttach, (ulong)index, address, (ulong)order));
        return ring;
    }

    /// <summary>Puts <paramref name="request"/> on <paramref name="ring"/>, rings <paramref name="port"/>'s doorbell and returns the one response the device must have produced.</summary>
    public TResponse Single<TRequest, TResponse>(GuestRing<TRequest, TResponse> ring, int port, TRequest request)
        where TRequest : unmanaged
        where TResponse : unmanaged
    {
        ring.Put(request);
        ring.Publish();
        Assert.Equal(0, EventSend(port));
        return Assert.Single(ring.TakeResponses());
    }

    /// <summary>Polls the given ports with a deadline <paramref name="timeoutMs"/> from now; returns the pending bits.</summary>
    public ulong Poll(ulong mask, int timeoutMs = 0) =>
        (ulong)Call(HypercallCode.Poll, (ulong)(Session.MonotonicNanoseconds + timeoutMs * 1_000_000L), mask);

    public void Dispose()
    {
        Session.Dispose();
        foreach (VirtualDevice d in Session.Devices)
        {
            d.Dispose();
        }
        Memory.Dispose();
        _stop.Dispose();
    }
}

/// <summary>The guest (front-end) side of a ring, written by the test directly into guest memory.</summary>
internal sealed unsafe class GuestRing<TRequest, TResponse>
    where TRequest : unmanaged
    where TResponse : unmanaged
{
    private readonly GuestMemory _memory;
    private uint _reqProd;
    private uint _rspCons;

    public GuestRing(GuestMemory memory, ulong address, int order, uint slotSize)
    {
        _memory = memory;
        Address = address;
        Slots = 1u << order;
        SlotSize = slotSize;
        memory.Clear(new GuestAddress(address), RingConstants.HeaderSize + Slots * slotSize);
    }

    public ulong Address { get; }
    public uint Slots { get; }
    public uint SlotSize { get; }

    public uint ReqProd
    {
        get => _reqProd;
        set => _reqProd = value;
    }

    public ulong SlotAddress(uint index) => Address + RingConstants.HeaderSize + (index & (Slots - 1)) * SlotSize;

    /// <summary>Writes a request into the next slot (not yet published).</summary>
    public void Put(in TRequest request)
    {
        _memory.Write(new GuestAddress(SlotAddress(_reqProd)), in request);
        _reqProd++;
    }

    /// <summary>Publishes req_prod.</summary>
    public void Publish() => SetReqProd(_reqProd);

    /// <summary>Writes req_prod to the shared header (any value, for hostile tests).</summary>
    public void SetReqProd(uint value) => _memory.Write(new GuestAddress(Address + 0), value);

    public uint RspProd => _memory.Read<uint>(new GuestAddress(Address + 8));
    public uint ReqEvent => _memory.Read<uint>(new GuestAddress(Address + 4));
    public void SetRspEvent(uint value) => _memory.Write(new GuestAddress(Address + 12), value);

    /// <summary>Takes every published response.</summary>
    public List<TResponse> TakeResponses()
    {
        var list = new List<TResponse>();
        uint prod = RspProd;
        while (_rspCons != prod)
        {
            list.Add(_memory.Read<TResponse>(new GuestAddress(SlotAddress(_rspCons))));
            _rspCons++;
        }
        return list;
    }
}
