namespace Paravirt.Hypervisor.Devices.Rings;

/// <summary>Sizes of shared rings (independent of the slot types).</summary>
public static class SharedRing
{
    /// <summary>Bytes a ring of <paramref name="order"/> with <paramref name="slotSize"/>-byte slots occupies: the <see cref="RingHeader"/> and the slots.</summary>
    public static ulong ByteSize(uint order, uint slotSize) => (ulong)Unsafe.SizeOf<RingHeader>() + ((ulong)slotSize << (int)order);
}

/// <summary>
/// The host (back-end) side of one shared request/response ring, Xen <c>io/ring.h</c> style: a
/// <see cref="RingHeader"/> followed by <c>2^order</c> slots, each holding a <typeparamref name="TRequest"/> from
/// the guest or the <typeparamref name="TResponse"/> the host wrote over it.
/// </summary>
/// <remarks>
/// The guest initialises the header (zeros, and <c>rsp_event = 1</c> to hear about the first response, as Xen's
/// <c>SHARED_RING_INIT</c>); the host sets <c>req_event</c> at attach.
/// The guest is hostile. The ring range is validated once at attach. The consumer and private producer indices
/// live here, never re-read from shared memory; <c>req_prod</c> is read once per refresh and checked against the
/// ring size (<c>req_prod - rsp_prod_pvt &gt; slots</c> means a corrupt guest); each request is copied out of its slot
/// once and the caller validates the copy; every loop is bounded by the slot count. Used from the vCPU thread only.
/// </remarks>
public sealed unsafe class SharedRing<TRequest, TResponse>
    where TRequest : unmanaged
    where TResponse : unmanaged
{
    private readonly GuestMemory _memory;
    private readonly ulong _base;
    private readonly uint _slotSize;
    private uint _reqCons;
    private uint _rspProdPvt;
    private uint _rspProdPublished;
    private uint _reqProdSeen;

    private SharedRing(GuestMemory memory, ulong address, uint slots, uint slotSize)
    {
        _memory = memory;
        _base = address;
        Slots = slots;
        _slotSize = slotSize;
    }

    /// <summary>Number of slots (a power of two).</summary>
    public uint Slots { get; }

    /// <summary>Requests the host consumed so far (free-running).</summary>
    public uint RequestConsumer => _reqCons;

    /// <summary>Requests seen but not yet consumed, as of the last <see cref="Refresh"/>.</summary>
    public uint Pending => _reqProdSeen - _reqCons;

    /// <summary>The host-side state of the ring (address, size, private indices), for snapshots.</summary>
    internal RingState Save() => new(_base, Slots, _slotSize, _reqCons, _rspProdPvt, _rspProdPublished, _reqProdSeen);

    /// <summary>A ring in <paramref name="memory"/> with the state <see cref="Save"/> took (of this or another memory with the same contents).</summary>
    internal static SharedRing<TRequest, TResponse> Load(GuestMemory memory, RingState state) =>
        new(memory, state.Address, state.Slots, state.SlotSize)
        {
            _reqCons = state.RequestConsumer,
            _rspProdPvt = state.ResponseProducer,
            _rspProdPublished = state.ResponsesPublished,
            _reqProdSeen = state.RequestsSeen,
        };

    /// <summary>
    /// Binds a ring the caller validated (<see cref="DeviceActivation.OpenRing{TRequest, TResponse}"/>: page aligned,
    /// order within bounds, the whole ring inside guest memory). The indices start from the guest's <c>rsp_prod</c>
    /// (requests it produced before attaching are processed; a corrupt <c>req_prod</c> is caught by the first
    /// <see cref="Refresh"/>).
    /// </summary>
    internal static SharedRing<TRequest, TResponse> Open(GuestMemory memory, ulong address, uint order)
    {
        uint slotSize = (uint)Math.Max(sizeof(TRequest), sizeof(TResponse));
        System.Diagnostics.Debug.Assert(memory.Contains(new GuestAddress(address), SharedRing.ByteSize(order, slotSize)), "validated by the caller");
        uint rspProd = Volatile.Read(in ReadHeader(memory, address).RspProd);
        var ring = new SharedRing<TRequest, TResponse>(memory, address, 1u << (int)order, slotSize)
        {
            _reqCons = rspProd,
            _rspProdPvt = rspProd,
            _rspProdPublished = rspProd,
            _reqProdSeen = rspProd,
        };
        // req_event is the host's to write: ask for a doorbell on the first request (as Xen's SHARED_RING_INIT
        // does), so a guest that zeroed the header is woken for its first request too.
        ring.RequestEventOnNextRequest();
        return ring;
    }

    /// <summary>
    /// Reads <c>req_prod</c> once and checks it: false when the guest claims more outstanding requests than the ring
    /// holds (the caller marks the device broken).
    /// </summary>
    public bool Refresh()
    {
        uint reqProd = Volatile.Read(in ReadHeader(_memory, _base).ReqProd);
        if (reqProd - _rspProdPvt > Slots)
        {
            return false;
        }
        _reqProdSeen = reqProd;
        // Read barrier (Xen rmb): the slot contents are read after req_prod.
        Interlocked.MemoryBarrier();
        return true;
    }

    /// <summary>Copies the next request out of its slot (once) and consumes it; false when none is pending.</summary>
    public bool TryTakeRequest(out TRequest request)
    {
        if (_reqCons == _reqProdSeen)
        {
            request = default;
            return false;
        }
        bool ok = _memory.TryRead(SlotAddress(_reqCons), out request);
        System.Diagnostics.Debug.Assert(ok, "the ring range was validated at attach");
        _reqCons++;
        return true;
    }

    /// <summary>Writes a response into the next response slot (not yet visible to the guest; see <see cref="PushResponses"/>).</summary>
    public void PutResponse(in TResponse response)
    {
        System.Diagnostics.Debug.Assert(_rspProdPvt != _reqCons, "a response needs a consumed request");
        GuestAddress slot = SlotAddress(_rspProdPvt);
        // Clear the whole slot first so no stale request bytes remain in the response's reserved fields.
        _memory.GetSpan(slot, _slotSize).Clear();
        _memory.Write(slot, in response);
        _rspProdPvt++;
    }

    /// <summary>
    /// Publishes the responses written so far (<c>rsp_prod</c>), with a full barrier before and after, and returns
    /// true when the guest asked to be notified (its <c>rsp_event</c> lies in the published range).
    /// </summary>
    public bool PushResponses()
    {
        uint old = _rspProdPublished;
        uint next = _rspProdPvt;
        if (old == next)
        {
            return false;
        }
        Interlocked.MemoryBarrier(); // the guest sees the responses before the index
        Volatile.Write(ref WriteHeader().RspProd, next);
        _rspProdPublished = next;
        Interlocked.MemoryBarrier(); // the index is visible before rsp_event is read
        uint evt = Volatile.Read(in ReadHeader(_memory, _base).RspEvent);
        return next - evt < next - old;
    }

    /// <summary>
    /// Before the host goes idle (Xen <c>RING_FINAL_CHECK_FOR_REQUESTS</c>): when nothing is pending, sets
    /// <c>req_event = req_cons + 1</c> so the guest rings the doorbell for its next request, then re-reads
    /// <c>req_prod</c>. Returns true when requests are pending; <paramref name="corrupt"/> is set when the re-read index is invalid.
    /// </summary>
    public bool FinalCheckForRequests(out bool corrupt)
    {
        corrupt = false;
        if (_reqProdSeen != _reqCons)
        {
            return true;
        }
        Volatile.Write(ref WriteHeader().ReqEvent, _reqCons + 1);
        Interlocked.MemoryBarrier();
        if (!Refresh())
        {
            corrupt = true;
            return false;
        }
        return _reqProdSeen != _reqCons;
    }

    /// <summary>Asks the guest to ring the doorbell as soon as it produces one more request.</summary>
    public void RequestEventOnNextRequest()
    {
        Volatile.Write(ref WriteHeader().ReqEvent, _reqCons + 1);
        Interlocked.MemoryBarrier();
    }

    /// <summary>
    /// The standard back-end loop for rings whose requests are answered at once (block, net transmit): refreshes,
    /// takes, handles and answers at most <see cref="Slots"/> requests, publishes the responses, and before going
    /// idle arms <c>req_event</c> and re-checks. Returns the outcome; the caller signals the guest when
    /// <see cref="RingRun.Notify"/> and marks the device broken when <see cref="RingRun.Corrupt"/>. Once
    /// <paramref name="stopping"/> is signalled no further request is started (a ring of slow requests, e.g. 256 block
    /// flushes, must not hold a stopping run for more than the one in progress).
    /// </summary>
    public RingRun Process<THandler>(THandler handler, CancellationToken stopping = default)
        where THandler : IRingRequestHandler<TRequest, TResponse>
    {
        uint budget = Slots;
        bool notify = false;
        if (!Refresh())
        {
            return new RingRun(Corrupt: true, Notify: false, MoreWork: false);
        }
        while (true)
        {
            while (budget > 0 && !stopping.IsCancellationRequested && TryTakeRequest(out TRequest request))
            {
                TResponse response = handler.Handle(in request);
                PutResponse(in response);
                budget--;
            }
            notify |= PushResponses();
            if (stopping.IsCancellationRequested)
            {
                return new RingRun(Corrupt: false, Notify: notify, MoreWork: false);
            }
            bool more = FinalCheckForRequests(out bool corrupt);
            if (!more || budget == 0)
            {
                // Idle (req_event armed), corrupt, or the budget is spent: the rest waits for the next pump,
                // which the caller requests when MoreWork.
                return new RingRun(Corrupt: corrupt, Notify: notify, MoreWork: more);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GuestAddress SlotAddress(uint index) =>
        new(_base + (ulong)sizeof(RingHeader) + (ulong)(index & (Slots - 1)) * _slotSize);

    /// <summary>The shared header, read in place (the ABI struct itself, never offsets re-typed here).</summary>
    private static ref readonly RingHeader ReadHeader(GuestMemory memory, ulong address)
    {
        bool ok = memory.TryGetReadOnlySpan(new GuestAddress(address), (ulong)sizeof(RingHeader), out ReadOnlySpan<byte> span);
        System.Diagnostics.Debug.Assert(ok, "the ring range was validated at attach");
        return ref MemoryMarshal.AsRef<RingHeader>(span);
    }

    /// <summary>The shared header for a host write (its page is marked dirty for snapshots).</summary>
    private ref RingHeader WriteHeader() =>
        ref MemoryMarshal.AsRef<RingHeader>(_memory.GetSpan(new GuestAddress(_base), (ulong)sizeof(RingHeader)));
}

/// <summary>Handles one request copied out of a ring and returns its response (<see cref="SharedRing{TRequest, TResponse}.Process"/>).</summary>
public interface IRingRequestHandler<TRequest, TResponse>
    where TRequest : unmanaged
    where TResponse : unmanaged
{
    /// <summary>Validates the copy, acts on it and returns the response (never throws for bad guest input).</summary>
    TResponse Handle(in TRequest request);
}

/// <summary>The host-side state of a <see cref="SharedRing{TRequest, TResponse}"/>: where it is and its private indices (a snapshot of it).</summary>
internal readonly record struct RingState(ulong Address, uint Slots, uint SlotSize, uint RequestConsumer, uint ResponseProducer, uint ResponsesPublished, uint RequestsSeen);

/// <summary>The outcome of <see cref="SharedRing{TRequest, TResponse}.Process"/>.</summary>
/// <param name="Corrupt">The guest's indices were invalid: mark the device broken.</param>
/// <param name="Notify">The guest asked to be notified of the published responses.</param>
/// <param name="MoreWork">Requests remain after the per-doorbell budget: pump again.</param>
public readonly record struct RingRun(bool Corrupt, bool Notify, bool MoreWork);
