// The block driver for C# guests: the counterpart of the C runtime's pv_blk_* (native/runtime/devices.c).
using System.Runtime;
using System.Runtime.CompilerServices;
using Paravirt.Abi;

namespace Paravirt.Guest
{
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
            void* mem = Devices.AllocBytes(FrontRing.Bytes(order, BlockConstants.SlotSize));
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
