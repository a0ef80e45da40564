// The guest (front-end) half of a shared request/response ring, as native/include/paravirt/ring.h is for C guests.
using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>
    /// The guest's (front-end) side of a shared ring: <see cref="RingHeader"/> then 2^order slots, requests
    /// produced by the guest and responses by the host in the same slots; indexes run freely and are taken modulo
    /// the size; the doorbell is rung only when the host asked for it (req_event), as in Xen's io/ring.h.
    /// </summary>
    public unsafe struct FrontRing
    {
        private RingHeader* _shared;
        private byte* _slots;
        private uint _size;
        private uint _slotSize;
        private uint _reqProdPvt;
        private uint _rspCons;

        /// <summary>Bytes of a ring of 2^<paramref name="order"/> slots of <paramref name="slotSize"/> bytes.</summary>
        public static ulong Bytes(uint order, uint slotSize) => RingConstants.HeaderSize + ((ulong)slotSize << (int)order);

        /// <summary>Initialises the ring in <paramref name="memory"/> (zeroed pages of at least <see cref="Bytes"/>).</summary>
        public void Init(void* memory, uint order, uint slotSize)
        {
            _shared = (RingHeader*)memory;
            _shared->ReqProd = 0;
            _shared->RspProd = 0;
            _shared->ReqEvent = 1;
            _shared->RspEvent = 1;
            _slots = (byte*)memory + RingConstants.HeaderSize;
            _size = 1u << (int)order;
            _slotSize = slotSize;
            _reqProdPvt = 0;
            _rspCons = 0;
        }

        /// <summary>Free request slots.</summary>
        public readonly uint FreeRequests => _size - (_reqProdPvt - _rspCons);

        /// <summary>Number of slots.</summary>
        public readonly uint Size => _size;

        /// <summary>The free-running index the next queued request will get (its slot is the index modulo <see cref="Size"/>).</summary>
        public readonly uint RequestProducer => _reqProdPvt;

        /// <summary>Requests queued and not yet answered.</summary>
        public readonly uint Outstanding => _reqProdPvt - _rspCons;

        /// <summary>The slot for the next request (fill it, then <see cref="QueueRequest"/>).</summary>
        public readonly void* NextRequest => Slot(_reqProdPvt);

        /// <summary>Makes the filled request part of the next <see cref="PushRequests"/>.</summary>
        public void QueueRequest() => _reqProdPvt++;

        /// <summary>Publishes the queued requests; true when the host wants a doorbell.</summary>
        public bool PushRequests()
        {
            uint old = _shared->ReqProd;
            uint now = _reqProdPvt;
            if (old == now)
                return false;
            Devices.Barrier(); // the host sees the requests before the index
            _shared->ReqProd = now;
            Devices.Barrier(); // the index is visible before req_event is read
            uint ev = _shared->ReqEvent;
            return now - ev < now - old;
        }

        /// <summary>Responses the host produced that the guest has not consumed.</summary>
        public readonly uint UnconsumedResponses
        {
            get
            {
                uint n = _shared->RspProd - _rspCons;
                Devices.Barrier();
                return n;
            }
        }

        /// <summary>The next response.</summary>
        public readonly void* NextResponse => Slot(_rspCons);

        /// <summary>Consumes the response returned by <see cref="NextResponse"/>.</summary>
        public void ConsumeResponse() => _rspCons++;

        /// <summary>Unconsumed responses; when none, asks the host for an event on the next one and checks again.</summary>
        public uint FinalCheckForResponses()
        {
            uint n = UnconsumedResponses;
            if (n != 0)
                return n;
            _shared->RspEvent = _rspCons + 1;
            Devices.Barrier();
            return UnconsumedResponses;
        }

        /// <summary>False when the host claims more responses than there are requests (a broken or hostile host).</summary>
        public readonly bool ResponsesSane => _shared->RspProd - _rspCons <= _reqProdPvt - _rspCons;

        private readonly void* Slot(uint index) => _slots + (ulong)(index & (_size - 1)) * _slotSize;
    }
}
