using System.Net.NetworkInformation;

namespace Paravirt.Hypervisor.Tests.Devices;

/// <summary>A VM with one net device, driven by the test as its guest.</summary>
internal sealed class NetGuest : IDisposable
{
    public const ulong TxRing = 0x200000;
    public const ulong RxRing = 0x210000;
    public const ulong TxBuffers = 0x300000;
    public const ulong RxBuffers = 0x400000;
    public const int Order = 4;

    public NetGuest(NetDevice device)
    {
        Device = device;
        Harness = new DeviceHarness(device);
        Tx = new GuestRing<NetTxRequest, NetTxResponse>(Harness.Memory, TxRing, Order, NetConstants.SlotSize);
        Rx = new GuestRing<NetRxRequest, NetRxResponse>(Harness.Memory, RxRing, Order, NetConstants.SlotSize);
        Assert.Equal(0, Harness.Call(HypercallCode.NetAttach, 0, TxRing, RxRing, Order));
        Tx.SetRspEvent(1);
        Rx.SetRspEvent(1);
    }

    public NetDevice Device { get; }
    public DeviceHarness Harness { get; }
    public GuestRing<NetTxRequest, NetTxResponse> Tx { get; }
    public GuestRing<NetRxRequest, NetRxResponse> Rx { get; }
    public byte[] Mac => Device.MacAddress.GetAddressBytes();

    public static byte[] Frame(byte[] dst, byte[] src, int length, byte fill)
    {
        byte[] f = new byte[length];
        f.AsSpan().Fill(fill);
        dst.CopyTo(f, 0);
        src.CopyTo(f, 6);
        f[12] = 0x88;
        f[13] = 0xB5; // local experimental EtherType
        return f;
    }

    /// <summary>Transmits frames (one doorbell) and returns their tx statuses.</summary>
    public List<long> Send(params byte[][] frames)
    {
        for (int i = 0; i < frames.Length; i++)
        {
            ulong buffer = TxBuffers + (ulong)i * 16384;
            Harness.Memory.Write(new GuestAddress(buffer), frames[i]);
            Tx.Put(new NetTxRequest { Id = (ulong)i, Buffer = buffer, Length = (uint)frames[i].Length });
        }
        Tx.Publish();
        Assert.Equal(0, Harness.EventSend(0));
        return [.. Tx.TakeResponses().Select(r => r.Status)];
    }

    /// <summary>Posts <paramref name="count"/> receive buffers of <paramref name="capacity"/> bytes (no doorbell).</summary>
    public void PostRx(int count, uint capacity = 16384)
    {
        for (int i = 0; i < count; i++)
        {
            uint slot = Rx.ReqProd & (Rx.Slots - 1);
            Rx.Put(new NetRxRequest { Id = slot, Buffer = RxBuffers + slot * 16384UL, Capacity = capacity });
        }
        Rx.Publish();
    }

    /// <summary>Takes received frames.</summary>
    public List<(long Status, byte[] Frame)> Receive() =>
        [.. Rx.TakeResponses().Select(r => (r.Status, r.Status == 0 ? Harness.Memory.GetSpan(new GuestAddress(RxBuffers + r.Id * 16384), r.Length).ToArray() : []))];

    public void Dispose() => Harness.Dispose();
}

public sealed class NetDeviceTests
{
    private static readonly byte[] Broadcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    [Fact]
    public void DeviceInfoCarriesMacAndMtuAndDerivedMacsAreStableAndLocal()
    {
        var sw = new NetSwitch();
        using var g = new NetGuest(new NetDevice("net0", sw.CreatePort(), mtu: 9000, vmIndex: 3));
        Assert.Equal(64, g.Harness.Call(HypercallCode.DeviceInfo, 0, 0x500000, 64));
        DeviceInfo info = g.Harness.Memory.Read<DeviceInfo>(new GuestAddress(0x500000));
        Assert.Equal((uint)DeviceKind.Net, info.Kind);
        Assert.Equal(9000u, info.Mtu);
        Assert.Equal(g.Mac, g.Harness.Memory.GetSpan(new GuestAddress(0x500000 + 48), 6).ToArray());
        Assert.Equal(NetDevice.DeriveMac("net0", 3), g.Device.MacAddress);
        Assert.NotEqual(NetDevice.DeriveMac("net0", 4), g.Device.MacAddress);
        Assert.Equal(0x02, g.Mac[0]); // locally administered unicast
        Assert.Equal(PhysicalAddress.Parse("02-CD-59-91-1E-F8"), NetDevice.DeriveMac("net0", 0)); // pinned: FNV-1a of "paravirt/0/net0"
        var given = PhysicalAddress.Parse("02-00-00-00-00-2A");
        using var d = new NetDevice("net1", sw.CreatePort(), given);
        Assert.Equal(given, d.MacAddress);
        Assert.Throws<ArgumentException>(() => new NetDevice("net2", sw.CreatePort(), PhysicalAddress.Parse("01-00-5E-00-00-01")));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NetDevice("net3", sw.CreatePort(), mtu: 9001));
    }

    [Fact]
    public void TwoVmsOnOneSwitchExchangeBroadcastAndUnicastFrames()
    {
        var sw = new NetSwitch("lan");
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 0));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        Assert.NotEqual(a.Mac, b.Mac);
        a.PostRx(8);
        b.PostRx(8);

        // Broadcast from A floods to B.
        byte[] hello = NetGuest.Frame(Broadcast, a.Mac, 60, 0xA1);
        Assert.Equal([0L], a.Send(hello));
        Assert.Equal(1UL, b.Harness.Poll(1)); // delivered by the pump, event on port 0
        var got = b.Receive();
        Assert.Equal(hello, Assert.Single(got).Frame);
        Assert.Empty(a.Receive()); // never back to the sender

        // Unicast B -> A goes to the port that owns A's MAC.
        byte[] reply = NetGuest.Frame(a.Mac, b.Mac, 1514, 0xB2);
        long forwarded = sw.FramesForwarded;
        Assert.Equal([0L], b.Send(reply));
        Assert.Equal(forwarded + 1, sw.FramesForwarded);
        Assert.Equal(1UL, a.Harness.Poll(1));
        Assert.Equal(reply, Assert.Single(a.Receive()).Frame);

        // A -> B unicast is forwarded to B's port.
        byte[] again = NetGuest.Frame(b.Mac, a.Mac, 100, 0xC3);
        Assert.Equal([0L], a.Send(again));
        Assert.Equal(forwarded + 2, sw.FramesForwarded);
        b.Harness.Poll(1);
        Assert.Equal(again, Assert.Single(b.Receive()).Frame);
        Assert.Equal(2, a.Device.TxFrames);
        Assert.Equal(1, a.Device.RxFrames);
    }

    [Fact]
    public void UnknownUnicastIsDroppedAndMulticastFloodsToEveryOtherPort()
    {
        // Port security (issue 13): unicast to a MAC no port owns is never flooded; multicast and broadcast are.
        var sw = new NetSwitch();
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 0));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        using var c = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 2));
        foreach (NetGuest g in new[] { a, b, c })
        {
            g.PostRx(4);
        }
        byte[] unknown = NetGuest.Frame([0x02, 9, 9, 9, 9, 9], a.Mac, 64, 1);
        byte[] multicast = NetGuest.Frame([0x01, 0x00, 0x5E, 0, 0, 1], a.Mac, 64, 2);
        Assert.Equal([0L, 0L], a.Send(unknown, multicast));
        foreach (NetGuest g in new[] { b, c })
        {
            g.Harness.Poll(1);
            Assert.Equal([multicast], g.Receive().Select(r => r.Frame).ToArray());
        }
        a.Harness.Poll(1);
        Assert.Empty(a.Receive());
        Assert.Equal(1, sw.FramesFlooded);
        Assert.Equal(1, sw.FramesUnknown);
    }

    [Fact]
    public void FramesAreValidatedAgainstTheMtuAndGuestMemory()
    {
        var sw = new NetSwitch();
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort(), mtu: 1500));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        b.PostRx(8);
        byte[] max = NetGuest.Frame(Broadcast, a.Mac, 1514, 1);
        byte[] tooBig = NetGuest.Frame(Broadcast, a.Mac, 1515, 2);
        byte[] min = NetGuest.Frame(Broadcast, a.Mac, 14, 3);
        byte[] tooSmall = new byte[13];
        Assert.Equal([0L, (long)HypercallStatus.TooBig, 0L, (long)HypercallStatus.Invalid], a.Send(max, tooBig, min, tooSmall));

        a.Tx.Put(new NetTxRequest { Id = 1, Buffer = DeviceHarness.MemorySize - 20, Length = 60 });
        a.Tx.Put(new NetTxRequest { Id = 2, Buffer = ulong.MaxValue - 10, Length = 60 });
        a.Tx.Put(new NetTxRequest { Id = 3, Buffer = NetGuest.TxBuffers, Length = uint.MaxValue });
        a.Tx.Publish();
        Assert.Equal(0, a.Harness.EventSend(0));
        Assert.Equal([(long)HypercallStatus.Fault, (long)HypercallStatus.Fault, (long)HypercallStatus.TooBig], a.Tx.TakeResponses().Select(r => r.Status).ToArray());
        Assert.False(a.Device.IsBroken);

        b.Harness.Poll(1);
        Assert.Equal([max, min], b.Receive().Select(r => r.Frame).ToArray());
    }

    [Fact]
    public void ReceiveBuffersThatAreTooSmallOrOutsideMemoryGetErrorsAndDropTheFrame()
    {
        var sw = new NetSwitch();
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort()));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        b.Rx.Put(new NetRxRequest { Id = 0, Buffer = NetGuest.RxBuffers, Capacity = 100 });
        b.Rx.Put(new NetRxRequest { Id = 1, Buffer = DeviceHarness.MemorySize - 50, Capacity = 2000 });
        b.Rx.Put(new NetRxRequest { Id = 2, Buffer = NetGuest.RxBuffers + 16384 * 2, Capacity = 2000 });
        b.Rx.Publish();
        byte[] f = NetGuest.Frame(Broadcast, a.Mac, 200, 7);
        a.Send(f, f, f);
        b.Harness.Poll(1);
        var got = b.Receive();
        Assert.Equal([(long)HypercallStatus.TooBig, (long)HypercallStatus.Fault, 0L], got.Select(r => r.Status).ToArray());
        Assert.Equal(f, got[2].Frame);
        Assert.Equal(2, b.Device.RxDropped);
    }

    [Fact]
    public void AGuestThatPostsNoBuffersCostsBoundedMemoryAndCountsDrops()
    {
        var sw = new NetSwitch();
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort()));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        byte[] f = NetGuest.Frame(Broadcast, a.Mac, 1514, 9);
        for (int i = 0; i < 100; i++)
        {
            a.Send(f, f, f, f, f, f, f, f, f, f);
        }
        Assert.Equal(NetDevice.ReceiveQueueLimit, b.Device.RxQueued);
        Assert.Equal(1000 - NetDevice.ReceiveQueueLimit, b.Device.RxDropped);
        Assert.Equal(1000 - NetDevice.ReceiveQueueLimit, sw.FramesDropped);
        // B's vCPU polls: nothing to deliver into, so the host asks for a doorbell when buffers appear.
        Assert.Equal(0UL, b.Harness.Poll(1));
        Assert.Equal(b.Rx.ReqProd + 1, b.Rx.ReqEvent);
        Assert.Equal(NetDevice.ReceiveQueueLimit, b.Device.RxQueued);
        b.PostRx(16);
        Assert.Equal(0, b.Harness.EventSend(0));
        Assert.Equal(16, b.Receive().Count(r => r.Status == 0));
        Assert.Equal(NetDevice.ReceiveQueueLimit - 16, b.Device.RxQueued);
    }

    [Fact]
    public void AFrameFromAnotherThreadWakesAGuestBlockedInPoll()
    {
        var sw = new NetSwitch();
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort()));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        b.PostRx(4);
        byte[] f = NetGuest.Frame(Broadcast, a.Mac, 60, 5);
        var sender = new Thread(() =>
        {
            Thread.Sleep(50);
            a.Send(f); // A's vCPU thread
        });
        sender.Start();
        var sw2 = System.Diagnostics.Stopwatch.StartNew();
        ulong events = b.Harness.Poll(1, timeoutMs: 5000);
        sender.Join();
        Assert.Equal(1UL, events);
        Assert.True(sw2.ElapsedMilliseconds < 4000);
        Assert.Equal(f, Assert.Single(b.Receive()).Frame);
    }

    [Fact]
    public void LyingTransmitOrReceiveIndicesBreakTheDeviceNotTheHost()
    {
        var sw = new NetSwitch();
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort()));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        a.Tx.SetReqProd(uint.MaxValue); // "4 billion frames to send"
        Assert.Equal((long)HypercallStatus.Broken, a.Harness.EventSend(0));
        Assert.True(a.Device.IsBroken);
        Assert.Equal(0, a.Device.TxFrames);
        Assert.Equal((long)HypercallStatus.Broken, a.Harness.Call(HypercallCode.NetAttach, 0, NetGuest.TxRing, NetGuest.RxRing, NetGuest.Order));

        b.Rx.SetReqProd(1000); // more receive buffers than the 16 slots
        using var c = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 2));
        Assert.Equal([0L], c.Send(NetGuest.Frame(Broadcast, c.Mac, 60, 1)));
        Assert.Equal(1, b.Device.RxQueued);
        Assert.Equal(0UL, b.Harness.Poll(1)); // b's pump finds the lying receive index
        Assert.True(b.Device.IsBroken);
        Assert.Equal(0, b.Device.RxFrames);
        Assert.Equal((long)HypercallStatus.Broken, b.Harness.EventSend(0));
        Assert.False(c.Device.IsBroken);
    }

    [Fact]
    public void ATransmitRequestRewrittenDuringTheSendIsActedOnAsCopied()
    {
        var backend = new RewritingBackend();
        using var g = new NetGuest(new NetDevice("net0", backend));
        backend.Guest = g;
        byte[] frame = NetGuest.Frame(Broadcast, g.Mac, 60, 0x11);
        g.Harness.Memory.Write(new GuestAddress(NetGuest.TxBuffers), frame);
        g.Tx.Put(new NetTxRequest { Id = 42, Buffer = NetGuest.TxBuffers, Length = 60 });
        g.Tx.Publish();
        Assert.Equal(0, g.Harness.EventSend(0));
        NetTxResponse r = Assert.Single(g.Tx.TakeResponses());
        Assert.Equal(42UL, r.Id); // the id of the copy, not of the rewritten slot
        Assert.Equal(0, r.Status);
        Assert.Equal(frame, backend.Sent); // the frame the backend saw is the copy taken before the rewrite
    }

    private sealed class RewritingBackend : INetBackend
    {
        public NetGuest? Guest { get; set; }
        public byte[]? Sent { get; private set; }

        public void Start(NetFrameReceiver receiver, PhysicalAddress mac)
        {
        }

        public bool Send(ReadOnlySpan<byte> frame)
        {
            // The "guest" rewrites the request and the frame while the host is acting on them.
            GuestMemory m = Guest!.Harness.Memory;
            m.Write(new GuestAddress(Guest.Tx.SlotAddress(0)), new NetTxRequest { Id = 666, Buffer = ulong.MaxValue, Length = uint.MaxValue });
            m.GetSpan(new GuestAddress(NetGuest.TxBuffers), 60).Fill(0xEE);
            Sent = frame.ToArray();
            return true;
        }

        public void Dispose()
        {
        }
    }
}
