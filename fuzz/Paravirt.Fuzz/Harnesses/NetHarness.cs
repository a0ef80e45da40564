using System.Net.NetworkInformation;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The net rings: the fuzzed guest attaches its transmit and receive rings (fuzzed order and placement), transmits
/// frames straight from the input (any length, buffer, source MAC) and posts receive buffers of any capacity, while
/// a well-behaved peer on the same switch sends to it and receives from it. The host must not throw, the peer must
/// only ever see frames with the fuzzed guest's own MAC as source, and the fuzzed guest must only get frames that
/// fit the buffers it posted.
/// </summary>
internal sealed class NetHarness : Harness
{
    private const ulong TxRing = 0x40000, RxRing = 0x50000, Buffers = 0x100000;
    private static readonly PhysicalAddress GuestMac = PhysicalAddress.Parse("02-00-00-00-00-01");
    private static readonly PhysicalAddress PeerMac = PhysicalAddress.Parse("02-00-00-00-00-02");
    private readonly GuestMemory _memory = new(FuzzGuest.MemorySize);
    private readonly Hypervisor.Hypercalls.HypercallDispatcher _dispatcher = FuzzGuest.NewDispatcher();

    public override void Run(ReadOnlySpan<byte> data)
    {
        var r = new FuzzReader(data);
        _memory.Clear(new GuestAddress(0), 2 << 20);
        var sw = new NetSwitch();
        var peerFrames = new List<byte[]>();
        using INetBackend peer = sw.CreatePort();
        peer.Start(f => { peerFrames.Add(f.ToArray()); return true; }, PeerMac);
        var device = new NetDevice("net0", sw.CreatePort(), GuestMac, mtu: NetDevice.MinMtu + (uint)(r.U16() % 2000));
        using var guest = new FuzzGuest(_memory, _dispatcher, device);
        int order = r.U8() % 6;
        bool hostileRings = (r.U8() & 7) == 0;
        long port = guest.Call(HypercallCode.NetAttach, 0, hostileRings ? r.Interesting(FuzzGuest.MemorySize) : TxRing,
            hostileRings ? r.Interesting(FuzzGuest.MemorySize) : RxRing, (ulong)order);
        if (port < 0)
        {
            return;
        }
        Exercised++;
        uint slots = 1u << order;
        uint txProd = 0, rxProd = 0;
        var capacities = new Dictionary<ulong, uint>();
        for (int step = 0; step < 48 && !r.AtEnd; step++)
        {
            switch (r.U8() % 5)
            {
                case 0: // transmit one frame
                    {
                        ulong buffer = Buffers + (ulong)(step * 0x4000);
                        byte[] frame = r.Bytes(r.U16() % 2100).ToArray();
                        if (frame.Length >= 12 && (r.U8() & 3) != 0)
                        {
                            GuestMac.GetAddressBytes().CopyTo(frame, 6);
                        }
                        _memory.Write(new GuestAddress(buffer), frame);
                        var tx = new NetTxRequest { Id = txProd, Buffer = (r.U8() & 15) == 0 ? r.Interesting(FuzzGuest.MemorySize) : buffer, Length = (r.U8() & 15) == 0 ? r.U32() : (uint)frame.Length };
                        _memory.Write(new GuestAddress(TxRing + RingConstants.HeaderSize + (txProd & (slots - 1)) * NetConstants.SlotSize), in tx);
                        txProd++;
                        _memory.Write(new GuestAddress(TxRing), (r.U8() & 15) == 0 ? r.U32() : txProd);
                        guest.Call(HypercallCode.EventSend, (ulong)port);
                        break;
                    }
                case 1: // post a receive buffer
                    {
                        uint capacity = (r.U8() & 3) == 0 ? r.U32() : 2048;
                        ulong buffer = 0x200000 + (ulong)(rxProd & 63) * 0x4000;
                        // A unique id per posted buffer: a slot the guest reused reads back as its own capacity.
                        var rx = new NetRxRequest { Id = rxProd, Buffer = (r.U8() & 15) == 0 ? r.Interesting(FuzzGuest.MemorySize) : buffer, Capacity = capacity };
                        capacities[rxProd] = capacity;
                        _memory.Write(new GuestAddress(RxRing + RingConstants.HeaderSize + (rxProd & (slots - 1)) * NetConstants.SlotSize), in rx);
                        rxProd++;
                        _memory.Write(new GuestAddress(RxRing), (r.U8() & 15) == 0 ? r.U32() : rxProd);
                        _memory.Write(new GuestAddress(RxRing + 12), r.U32()); // rsp_event
                        guest.Call(HypercallCode.EventSend, (ulong)port);
                        break;
                    }
                case 2: // the peer sends to the guest (or to everyone)
                    {
                        byte[] frame = new byte[14 + r.U16() % 1600];
                        r.Bytes(frame.Length).CopyTo(frame);
                        ((r.U8() & 1) == 0 ? GuestMac.GetAddressBytes() : [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).CopyTo(frame, 0);
                        PeerMac.GetAddressBytes().CopyTo(frame, 6);
                        peer.Send(frame);
                        break;
                    }
                case 3:
                    guest.Call(HypercallCode.Poll, r.U32(), 1UL << (int)port);
                    break;
                default: // collect receive responses and check them against the posted capacities
                    {
                        uint rspProd = _memory.Read<uint>(new GuestAddress(RxRing + 8));
                        for (uint i = 0; i < Math.Min(slots, rspProd); i++)
                        {
                            NetRxResponse rsp = _memory.Read<NetRxResponse>(new GuestAddress(RxRing + RingConstants.HeaderSize + ((rspProd - 1 - i) & (slots - 1)) * NetConstants.SlotSize));
                            if (rsp.Status == 0 && capacities.TryGetValue(rsp.Id, out uint cap) && rsp.Length > cap)
                            {
                                throw new FuzzFindingException($"a {rsp.Length}-byte frame was delivered into a {cap}-byte buffer");
                            }
                        }
                        break;
                    }
            }
        }
        guest.Stop();
        foreach (byte[] f in peerFrames)
        {
            if (f.Length < 14 || !f.AsSpan(6, 6).SequenceEqual(GuestMac.GetAddressBytes()))
            {
                throw new FuzzFindingException("the peer received a frame whose source is not the guest's MAC");
            }
            if (f.Length > device.Mtu + NetConstants.EthernetHeader)
            {
                throw new FuzzFindingException($"the peer received a {f.Length}-byte frame past the guest's MTU {device.Mtu}");
            }
        }
    }

    public override void Dispose() => _memory.Dispose();
}
