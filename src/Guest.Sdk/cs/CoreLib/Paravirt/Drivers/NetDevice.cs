// The net driver for C# guests: the counterpart of the C runtime's pv_net_* (native/runtime/devices.c).
using Paravirt.Abi;

namespace Paravirt.Guest
{
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
            ulong ringBytes = FrontRing.Bytes(order, NetConstants.SlotSize);
            ulong bufBytes = (ulong)slots * bufSize;
            void* tx = Devices.AllocBytes(ringBytes);
            void* rx = Devices.AllocBytes(ringBytes);
            byte* txBufs = (byte*)Devices.AllocBytes(bufBytes);
            byte* rxBufs = (byte*)Devices.AllocBytes(bufBytes);
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
