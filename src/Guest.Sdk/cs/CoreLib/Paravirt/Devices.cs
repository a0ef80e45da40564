// Paravirtual devices for C# guests: discovery, events, shared pages, the front end of the ring protocol and the
// block driver. The same ABI (src/Hypercall.Abi/Devices.cs, compiled into this library) and the same protocol as
// the C drivers (native/include/paravirt/ring.h, native/runtime/devices.c).
using System.Runtime;
using System.Runtime.CompilerServices;
using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>Device discovery, the doorbell, waiting for events and guest pages to share with the host.</summary>
    public static unsafe class Devices
    {
        /// <summary>Waits forever (a deadline that never comes).</summary>
        public const ulong Never = ulong.MaxValue;

        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_page_alloc")]
        private static extern void* PageAllocNative(nuint count);

        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_cs_barrier")]
        internal static extern void Barrier();

        /// <summary><paramref name="count"/> zeroed, page-aligned pages (the C drivers' allocator), or null when memory is exhausted.</summary>
        public static void* AllocPages(ulong count) => PageAllocNative((nuint)count);

        /// <summary>Copies device <paramref name="index"/>'s description into <paramref name="info"/>; returns the index or a negative status (NoDevice past the last).</summary>
        public static long GetInfo(uint index, DeviceInfo* info)
        {
            long r = Hypercall.Call(HypercallCode.DeviceInfo, index, (ulong)info, (ulong)sizeof(DeviceInfo));
            return r < 0 ? r : index;
        }

        /// <summary>The first device of <paramref name="kind"/> named <paramref name="name"/> (any name when null): its index, or a negative status.</summary>
        public static long Find(DeviceKind kind, string? name, DeviceInfo* info)
        {
            if ((Guest.BootInfo->Features0 & (ulong)FeatureBits.Devices) == 0)
                return (long)HypercallStatus.NotImplemented;
            DeviceInfo tmp;
            for (uint i = 0; i < RingConstants.EventPorts; i++)
            {
                long r = GetInfo(i, &tmp);
                if (r < 0)
                    return r;
                if (tmp.Kind == (uint)kind && (name == null || NameEquals(&tmp, name)))
                {
                    if (info != null)
                        *info = tmp;
                    return i;
                }
            }
            return (long)HypercallStatus.NoDevice;
        }

        /// <summary>Rings the doorbell of event port <paramref name="port"/>.</summary>
        public static long EventSend(uint port) => Hypercall.Call(HypercallCode.EventSend, port);

        /// <summary>Waits until one of <paramref name="events"/> is pending or the monotonic clock reaches <paramref name="deadlineNs"/>; returns the pending bits (0 on timeout) or a negative status.</summary>
        public static long Poll(ulong deadlineNs, ulong events) => Hypercall.Call(HypercallCode.Poll, deadlineNs, events);

        private static bool NameEquals(DeviceInfo* info, string name)
        {
            if (name.Length >= 24)
                return false;
            for (int i = 0; i < name.Length; i++)
            {
                if (info->Name[i] != name[i])
                    return false;
            }
            return info->Name[name.Length] == 0;
        }
    }

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

    /// <summary>One finished request of the asynchronous block API.</summary>
    public struct BlockCompletion
    {
        /// <summary>The caller's cookie.</summary>
        public ulong Cookie;
        /// <summary>0 or a negative <see cref="HypercallStatus"/>.</summary>
        public long Status;
        /// <summary>Bytes transferred.</summary>
        public uint Length;
    }

    /// <summary>
    /// The block device driver: the C# counterpart of the C runtime's pv_blk_* (same ring protocol, same rules):
    /// open attaches the largest ring the host allows; synchronous reads and writes split into
    /// <see cref="BlockConstants.MaxTransfer"/> requests queued before one doorbell; an asynchronous submit/kick/complete API.
    /// </summary>
    public sealed unsafe class BlockDevice
    {
        private FrontRing _ring;
        private BlockCompletion* _completions;
        private const int CompletionBatch = 16;

        private BlockDevice() { }

        /// <summary>Device index.</summary>
        public uint Index { get; private set; }
        /// <summary>Event port of the device.</summary>
        public uint Port { get; private set; }
        /// <summary>Capacity in 512-byte sectors.</summary>
        public ulong Sectors { get; private set; }
        /// <summary>True when the host refuses writes.</summary>
        public bool ReadOnly { get; private set; }
        /// <summary>Requests submitted and not completed.</summary>
        public uint InFlight => _ring.Outstanding;

        /// <summary>Opens block device <paramref name="name"/> (the first disk when null); returns 0 and the device, or a negative status.</summary>
        public static long Open(string? name, out BlockDevice? device)
        {
            device = null;
            DeviceInfo info;
            long index = Devices.Find(DeviceKind.Block, name, &info);
            if (index < 0)
                return index;
            if (info.SectorSize != BlockConstants.SectorSize)
                return (long)HypercallStatus.Protocol;
            uint order = info.MaxRingOrder < RingConstants.MaxOrder ? info.MaxRingOrder : RingConstants.MaxOrder;
            ulong bytes = FrontRing.Bytes(order, BlockConstants.SlotSize);
            void* mem = Devices.AllocPages((bytes + EntryConvention.PageSize - 1) / EntryConvention.PageSize);
            void* completions = Devices.AllocPages(1);
            if (mem == null || completions == null)
                return (long)HypercallStatus.NoMemory;
            var d = new BlockDevice
            {
                Index = (uint)index,
                Sectors = info.Sectors,
                ReadOnly = (info.Flags & (uint)DeviceFlags.ReadOnly) != 0,
                _completions = (BlockCompletion*)completions,
            };
            d._ring.Init(mem, order, BlockConstants.SlotSize);
            long port = Hypercall.Call(HypercallCode.BlockAttach, (ulong)index, (ulong)mem, order);
            if (port < 0)
                return port;
            d.Port = (uint)port;
            device = d;
            return 0;
        }

        /// <summary>Queues one request without ringing the doorbell: 0, Busy when the ring is full, or Invalid.</summary>
        public long Submit(BlockOperation op, ulong sector, void* buffer, uint length, ulong cookie)
        {
            if ((uint)op > (uint)BlockOperation.Discard || length > BlockConstants.MaxTransfer || length % BlockConstants.SectorSize != 0 ||
                (op != BlockOperation.Flush && length == 0))
                return (long)HypercallStatus.Invalid;
            if (_ring.FreeRequests == 0)
                return (long)HypercallStatus.Busy;
            BlockRequest* req = (BlockRequest*)_ring.NextRequest;
            *req = default;
            req->Id = cookie;
            req->Operation = (uint)op;
            req->Sector = sector;
            req->Buffer = (ulong)buffer;
            req->Length = length;
            _ring.QueueRequest();
            return 0;
        }

        /// <summary>Publishes the queued requests; rings the doorbell only when the host asked.</summary>
        public long Kick() => _ring.PushRequests() ? Devices.EventSend(Port) : 0;

        /// <summary>Collects up to <paramref name="max"/> completions, waiting until at least one or the deadline (TimedOut); kicks first.</summary>
        public long Complete(BlockCompletion* output, int max, ulong deadlineNs)
        {
            long r = Kick();
            if (r < 0)
                return r;
            for (;;)
            {
                if (!_ring.ResponsesSane)
                    return (long)HypercallStatus.Protocol;
                int got = 0;
                while (got < max && _ring.UnconsumedResponses != 0)
                {
                    BlockResponse* rsp = (BlockResponse*)_ring.NextResponse;
                    output[got].Cookie = rsp->Id;
                    output[got].Status = rsp->Status;
                    output[got].Length = rsp->Length;
                    _ring.ConsumeResponse();
                    got++;
                }
                if (got != 0 || max == 0)
                    return got;
                if (_ring.Outstanding == 0)
                    return (long)HypercallStatus.Invalid;
                if (_ring.FinalCheckForResponses() != 0)
                    continue;
                r = Devices.Poll(deadlineNs, 1ul << (int)Port);
                if (r < 0)
                    return r;
                if (r == 0 && _ring.UnconsumedResponses == 0)
                    return (long)HypercallStatus.TimedOut;
            }
        }

        /// <summary>Reads <paramref name="length"/> bytes (a multiple of 512) from <paramref name="sector"/>; returns the length or the first error.</summary>
        public long Read(ulong sector, byte* buffer, ulong length) => Sync(BlockOperation.Read, sector, buffer, length);

        /// <summary>Writes <paramref name="length"/> bytes (a multiple of 512) at <paramref name="sector"/>; returns the length or the first error.</summary>
        public long Write(ulong sector, byte* buffer, ulong length)
            => ReadOnly ? (long)HypercallStatus.ReadOnly : Sync(BlockOperation.Write, sector, buffer, length);

        /// <summary>Makes every completed write durable.</summary>
        public long Flush()
        {
            long r = Sync(BlockOperation.Flush, 0, null, 0);
            return r < 0 ? r : 0;
        }

        // Queues as many chunks as the ring holds, one doorbell, collects, repeats; the first error by chunk wins.
        private long Sync(BlockOperation op, ulong sector, byte* buffer, ulong length)
        {
            if (length % BlockConstants.SectorSize != 0 || (op != BlockOperation.Flush && length == 0))
                return (long)HypercallStatus.Invalid;
            if (InFlight != 0)
                return (long)HypercallStatus.Busy;
            ulong chunks = op == BlockOperation.Flush ? 1 : (length + BlockConstants.MaxTransfer - 1) / BlockConstants.MaxTransfer;
            ulong next = 0, done = 0, firstErrorChunk = ulong.MaxValue;
            long firstError = 0;
            while (done < chunks)
            {
                while (next < chunks && _ring.FreeRequests != 0)
                {
                    ulong off = next * BlockConstants.MaxTransfer;
                    uint n = (uint)(length - off < BlockConstants.MaxTransfer ? length - off : BlockConstants.MaxTransfer);
                    long r = Submit(op, sector + off / BlockConstants.SectorSize, buffer == null ? null : buffer + off, n, next);
                    if (r < 0)
                        return r;
                    next++;
                }
                long got = Complete(_completions, CompletionBatch, Devices.Never);
                if (got < 0)
                    return got;
                for (long i = 0; i < got; i++)
                {
                    if (_completions[i].Status < 0 && _completions[i].Cookie < firstErrorChunk)
                    {
                        firstError = _completions[i].Status;
                        firstErrorChunk = _completions[i].Cookie;
                    }
                }
                done += (ulong)got;
            }
            return firstError < 0 ? firstError : (long)length;
        }
    }
}
