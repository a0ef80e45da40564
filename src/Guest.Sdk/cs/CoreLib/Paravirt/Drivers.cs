// The console (ring) and net drivers for C# guests: the counterparts of the C runtime's pv_cons_* and pv_net_*
// (native/runtime/devices.c), with the same protocol and rules, over the ABI compiled from src/Hypercall.Abi.
using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>
    /// The paravirtual console: the console page (<see cref="ConsoleInterface"/>, xencons style) attached with
    /// <see cref="HypercallCode.ConsoleAttach"/>. Output goes into the out ring (one doorbell per write: the console
    /// has no output event index); input is read from the in ring, waiting on the device's event port.
    /// </summary>
    public sealed unsafe class ConsoleRing
    {
        /// <summary>
        /// The console's input ended and every byte was read (the host set <see cref="ConsoleInputFlags.EndOfInput"/>):
        /// the C driver's <c>PV_CONS_EOF</c>. Below every <see cref="HypercallStatus"/> (negated errno values, at most
        /// 4095), so it never collides with one.
        /// </summary>
        public const long EndOfInput = -4096;

        private byte* _page;

        private ConsoleRing() { }

        /// <summary>Device index.</summary>
        public uint Index { get; private set; }
        /// <summary>Event port of the device.</summary>
        public uint Port { get; private set; }

        /// <summary>Attaches console <paramref name="name"/> (the first console when null); returns 0 and the console, or a negative status.</summary>
        public static long Attach(string? name, out ConsoleRing? console)
        {
            console = null;
            DeviceInfo info;
            long index = Devices.Find(DeviceKind.Console, name, &info);
            if (index < 0)
                return index;
            byte* page = (byte*)Devices.AllocPages((ConsoleInterface.Size + EntryConvention.PageSize - 1) / EntryConvention.PageSize);
            if (page == null)
                return (long)HypercallStatus.NoMemory;
            var c = new ConsoleRing { _page = page, Index = (uint)index };
            long port = Hypercall.Call(HypercallCode.ConsoleAttach, (ulong)index, (ulong)page);
            if (port < 0)
                return port;
            c.Port = (uint)port;
            console = c;
            return 0;
        }

        private uint* U32(uint offset) => (uint*)(_page + offset);

        /// <summary>Writes all <paramref name="length"/> bytes (waiting while the ring is full); returns the length or a negative status.</summary>
        public long Write(byte* data, ulong length)
        {
            ulong done = 0;
            while (done < length)
            {
                uint prod = *U32(ConsoleInterface.OutProdOffset);
                uint cons = *U32(ConsoleInterface.OutConsOffset);
                Devices.Barrier();
                uint used = prod - cons;
                if (used > ConsoleInterface.OutSize)
                    return (long)HypercallStatus.Broken; // the host corrupted out_cons
                uint space = ConsoleInterface.OutSize - used;
                if (space == 0)
                {
                    // Full: ask the host to drain (it does so synchronously) and, if it could not, wait a little.
                    long r = Devices.EventSend(Port);
                    if (r < 0)
                        return r;
                    Devices.Barrier();
                    if (*U32(ConsoleInterface.OutConsOffset) == cons)
                    {
                        r = Devices.Poll(Guest.MonotonicNs() + 1000000u, 1ul << (int)Port);
                        if (r < 0)
                            return r;
                    }
                    continue;
                }
                uint n = (uint)(length - done < space ? length - done : space);
                byte* ring = _page + ConsoleInterface.OutOffset;
                for (uint i = 0; i < n; i++)
                    ring[(prod + i) & (ConsoleInterface.OutSize - 1)] = data[done + i];
                Devices.Barrier(); // the bytes before the index
                *U32(ConsoleInterface.OutProdOffset) = prod + n;
                done += n;
            }
            long rr = Devices.EventSend(Port);
            return rr < 0 ? rr : (long)length;
        }

        /// <summary>Writes <paramref name="text"/> (ASCII; other characters become '?'); returns its length or a negative status.</summary>
        public long Write(string text)
        {
            byte* buf = stackalloc byte[256];
            long total = 0;
            int i = 0;
            while (i < text.Length)
            {
                int n = 0;
                while (n < 256 && i < text.Length)
                {
                    char ch = text[i++];
                    buf[n++] = ch < 0x80 ? (byte)ch : (byte)'?';
                }
                long r = Write(buf, (ulong)n);
                if (r < 0)
                    return r;
                total += r;
            }
            return total;
        }

        /// <summary>Reads up to <paramref name="capacity"/> bytes of input without waiting; returns the count (0: none now), <see cref="EndOfInput"/>, or a negative status.</summary>
        public long Read(byte* buffer, ulong capacity)
        {
            // in_flags before in_prod: the host publishes the final in_prod before it sets EndOfInput.
            uint flags = *U32(ConsoleInterface.InFlagsOffset);
            Devices.Barrier();
            uint cons = *U32(ConsoleInterface.InConsOffset);
            uint prod = *U32(ConsoleInterface.InProdOffset);
            Devices.Barrier(); // the index before the bytes
            uint avail = prod - cons;
            if (avail > ConsoleInterface.InSize)
                return (long)HypercallStatus.Broken;
            if (avail == 0 && (flags & (uint)ConsoleInputFlags.EndOfInput) != 0)
                return EndOfInput;
            if (avail == 0 || capacity == 0)
                return 0;
            uint n = capacity < avail ? (uint)capacity : avail;
            byte* ring = _page + ConsoleInterface.InOffset;
            for (uint i = 0; i < n; i++)
                buffer[i] = ring[(cons + i) & (ConsoleInterface.InSize - 1)];
            Devices.Barrier(); // the bytes were read before in_cons frees them
            *U32(ConsoleInterface.InConsOffset) = cons + n;
            if (avail == ConsoleInterface.InSize)
                Devices.EventSend(Port); // the ring was full: the host may hold more input
            return n;
        }

        /// <summary>Reads at least one byte, waiting until the deadline (TimedOut); returns the count, <see cref="EndOfInput"/>, or a negative status.</summary>
        public long ReadWait(byte* buffer, ulong capacity, ulong deadlineNs)
        {
            for (;;)
            {
                long n = Read(buffer, capacity);
                if (n != 0 || capacity == 0)
                    return n;
                long r = Devices.Poll(deadlineNs, 1ul << (int)Port);
                if (r < 0)
                    return r;
                if (r == 0)
                {
                    // One last look: input may have landed together with the timeout.
                    n = Read(buffer, capacity);
                    return n != 0 ? n : (long)HypercallStatus.TimedOut;
                }
            }
        }

        /// <summary>
        /// Reads one line (without its '\n'; '\r' dropped; bytes past <paramref name="capacity"/> - 1 dropped) into
        /// <paramref name="line"/>, NUL-terminated; returns its length, TimedOut, or <see cref="EndOfInput"/> when the input
        /// ended with no line left (a last line without '\n' is returned as a line first).
        /// </summary>
        public long ReadLine(byte* line, ulong capacity, ulong deadlineNs)
        {
            ulong len = 0;
            ulong seen = 0;
            for (;;)
            {
                byte ch;
                long r = ReadWait(&ch, 1, deadlineNs);
                if (r == EndOfInput && seen > 0)
                    break; // the last line had no '\n'
                if (r < 0)
                    return r;
                seen++;
                if (ch == (byte)'\n')
                    break;
                if (ch == (byte)'\r')
                    continue;
                if (capacity > 0 && len < capacity - 1)
                    line[len++] = ch;
            }
            if (capacity > 0)
                line[len] = 0;
            return (long)len;
        }
    }

    /// <summary>
    /// The net device driver: the C# counterpart of the C runtime's pv_net_* (same protocol): a transmit ring and a
    /// receive ring of 2^order slots (up to 32 frames in flight each way), one frame buffer per slot; every receive
    /// buffer is kept posted; the doorbell is rung only when the host asked for it.
    /// </summary>
    public sealed unsafe class NetDevice
    {
        private FrontRing _tx;
        private FrontRing _rx;
        private byte* _txBufs;
        private byte* _rxBufs;
        private uint _bufSize;
        private byte* _mac;

        private NetDevice() { }

        /// <summary>Device index.</summary>
        public uint Index { get; private set; }
        /// <summary>Event port of the device.</summary>
        public uint Port { get; private set; }
        /// <summary>MTU in bytes (payload, without the Ethernet header).</summary>
        public uint Mtu { get; private set; }
        /// <summary>Received frames the host reported as dropped (error responses).</summary>
        public ulong RxDropped { get; private set; }
        /// <summary>The device's MAC address (6 bytes).</summary>
        public byte* Mac => _mac;

        /// <summary>Opens net device <paramref name="name"/> (the first when null); returns 0 and the device, or a negative status.</summary>
        public static long Open(string? name, out NetDevice? device)
        {
            device = null;
            DeviceInfo info;
            long index = Devices.Find(DeviceKind.Net, name, &info);
            if (index < 0)
                return index;
            if (info.Mtu == 0 || info.Mtu + NetConstants.EthernetHeader > NetConstants.MaxFrame)
                return (long)HypercallStatus.Protocol;
            uint bufSize = (info.Mtu + NetConstants.EthernetHeader + 63u) & ~63u;
            uint order = 5; // 32 frames in flight each way
            if (order > info.MaxRingOrder)
                order = info.MaxRingOrder;
            if (order > RingConstants.MaxOrder)
                order = RingConstants.MaxOrder;
            uint slots = 1u << (int)order;
            ulong ringPages = (FrontRing.Bytes(order, NetConstants.SlotSize) + EntryConvention.PageSize - 1) / EntryConvention.PageSize;
            ulong bufPages = ((ulong)slots * bufSize + EntryConvention.PageSize - 1) / EntryConvention.PageSize;
            void* tx = Devices.AllocPages(ringPages);
            void* rx = Devices.AllocPages(ringPages);
            byte* txBufs = (byte*)Devices.AllocPages(bufPages);
            byte* rxBufs = (byte*)Devices.AllocPages(bufPages);
            byte* mac = (byte*)Devices.AllocPages(1);
            if (tx == null || rx == null || txBufs == null || rxBufs == null || mac == null)
                return (long)HypercallStatus.NoMemory;
            for (int i = 0; i < 6; i++)
                mac[i] = info.Mac[i];
            var d = new NetDevice
            {
                Index = (uint)index,
                Mtu = info.Mtu,
                _bufSize = bufSize,
                _txBufs = txBufs,
                _rxBufs = rxBufs,
                _mac = mac,
            };
            d._tx.Init(tx, order, NetConstants.SlotSize);
            d._rx.Init(rx, order, NetConstants.SlotSize);
            for (uint i = 0; i < slots; i++)
                d.PostRx(i);
            // Publish before attaching: the host reads the ring indices at attach. No doorbell needed yet.
            d._rx.PushRequests();
            long port = Hypercall.Call(HypercallCode.NetAttach, (ulong)index, (ulong)tx, (ulong)rx, order);
            if (port < 0)
                return port;
            d.Port = (uint)port;
            device = d;
            return 0;
        }

        private void PostRx(ulong bufferIndex)
        {
            NetRxRequest* req = (NetRxRequest*)_rx.NextRequest;
            *req = default;
            req->Id = bufferIndex;
            req->Buffer = (ulong)(_rxBufs + bufferIndex * _bufSize);
            req->Capacity = _bufSize;
            _rx.QueueRequest();
        }

        // Consumes transmit completions (their buffers become free: buffer i belongs to slot i).
        private long ReapTx()
        {
            if (!_tx.ResponsesSane)
                return (long)HypercallStatus.Protocol;
            while (_tx.UnconsumedResponses != 0)
                _tx.ConsumeResponse();
            return 0;
        }

        /// <summary>Sends one frame (Ethernet header first, 14..MTU+14 bytes), waiting while the ring is full; returns the length or a negative status.</summary>
        public long Send(byte* frame, ulong length)
        {
            if (length < NetConstants.EthernetHeader || length > (ulong)Mtu + NetConstants.EthernetHeader)
                return (long)HypercallStatus.Invalid;
            for (;;)
            {
                long r = ReapTx();
                if (r < 0)
                    return r;
                if (_tx.FreeRequests != 0)
                    break;
                // Full: make sure the host looks, then wait for completions.
                if (_tx.FinalCheckForResponses() == 0)
                {
                    r = Devices.EventSend(Port);
                    if (r < 0)
                        return r;
                    if (_tx.UnconsumedResponses == 0)
                    {
                        r = Devices.Poll(Guest.MonotonicNs() + 1000000u, 1ul << (int)Port);
                        if (r < 0)
                            return r;
                    }
                }
            }
            uint slot = _tx.RequestProducer & (_tx.Size - 1);
            byte* buf = _txBufs + (ulong)slot * _bufSize;
            for (ulong i = 0; i < length; i++)
                buf[i] = frame[i];
            NetTxRequest* req = (NetTxRequest*)_tx.NextRequest;
            *req = default;
            req->Id = slot;
            req->Buffer = (ulong)buf;
            req->Length = (uint)length;
            _tx.QueueRequest();
            if (_tx.PushRequests())
            {
                long r = Devices.EventSend(Port);
                if (r < 0)
                    return r;
            }
            return (long)length;
        }

        /// <summary>
        /// Receives one frame into <paramref name="buffer"/>, waiting until the deadline; returns its length, TimedOut,
        /// TooBig (the frame did not fit <paramref name="capacity"/>; it is dropped) or another negative status.
        /// </summary>
        public long Receive(byte* buffer, ulong capacity, ulong deadlineNs)
        {
            for (;;)
            {
                if (!_rx.ResponsesSane)
                    return (long)HypercallStatus.Protocol;
                if (_rx.UnconsumedResponses != 0)
                {
                    NetRxResponse rsp = *(NetRxResponse*)_rx.NextResponse;
                    _rx.ConsumeResponse();
                    if (rsp.Id >= _rx.Size)
                        return (long)HypercallStatus.Protocol; // not a buffer we posted
                    long result;
                    if (rsp.Status < 0)
                    {
                        RxDropped++;
                        result = 0;
                    }
                    else if (rsp.Length > _bufSize)
                    {
                        result = (long)HypercallStatus.Protocol;
                    }
                    else if (rsp.Length > capacity)
                    {
                        result = (long)HypercallStatus.TooBig;
                    }
                    else
                    {
                        byte* src = _rxBufs + rsp.Id * _bufSize;
                        for (uint i = 0; i < rsp.Length; i++)
                            buffer[i] = src[i];
                        result = rsp.Length;
                    }
                    PostRx(rsp.Id); // keep every buffer posted
                    if (_rx.PushRequests())
                    {
                        long r = Devices.EventSend(Port);
                        if (r < 0)
                            return r;
                    }
                    if (result != 0)
                        return result;
                    continue;
                }
                if (_rx.FinalCheckForResponses() != 0)
                    continue;
                long p = Devices.Poll(deadlineNs, 1ul << (int)Port);
                if (p < 0)
                    return p;
                if (p == 0 && _rx.UnconsumedResponses == 0)
                    return (long)HypercallStatus.TimedOut;
            }
        }
    }
}
