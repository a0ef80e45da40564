using Paravirt.Hypervisor.Devices.Rings;

namespace Paravirt.Hypervisor.Tests.Devices;

/// <summary>
/// The generic device model (ABI 1.1, hypercalls 0x0600-0x0603): a user-defined device written against the public
/// contract only, and the built-in devices through the same path. The test plays the guest (DeviceHarness).
/// </summary>
public sealed class DeviceModelTests() : TestWithTempDirectory("devmodel")
{
    private const ulong Queues = 0x100000;
    private const ulong RingA = 0x200000;
    private const ulong RingB = 0x210000;
    private const ulong Buffer = 0x300000;

    /// <summary>
    /// A user device with two rings of <see cref="BlockRequest"/>-sized slots: queue 0 doubles each request's
    /// sector, queue 1 negates it. Records what the lifecycle did.
    /// </summary>
    private sealed class TwoQueueDevice(string name, bool snapshots = false) : VirtualDevice(name)
    {
        public const DeviceKind Type = (DeviceKind)(DeviceTypes.UserFirst + 7);
        private readonly SharedRing<BlockRequest, BlockResponse>?[] _rings = new SharedRing<BlockRequest, BlockResponse>?[2];

        public List<string> Events { get; } = [];

        public HypercallStatus ActivateResult { get; set; } = HypercallStatus.Ok;

        public override DeviceKind Kind => Type;
        public override uint Version => 3;
        public override IReadOnlyList<DeviceQueue> Queues { get; } =
            [DeviceQueue.Ring<BlockRequest, BlockResponse>("double", maxOrder: 4), DeviceQueue.Ring<BlockRequest, BlockResponse>("negate")];
        public override bool SupportsSnapshots => snapshots;
        protected override int ConfigSize => 8;

        protected override void WriteConfig(Span<byte> config) => MemoryMarshal.Write(config, 0x1122334455667788UL);

        protected override HypercallStatus OnActivate(DeviceActivation activation)
        {
            Events.Add($"activate ports {activation.Port(0)},{activation.Port(1)}");
            if (ActivateResult == HypercallStatus.Ok)
            {
                _rings[0] = activation.OpenRing<BlockRequest, BlockResponse>(0);
                _rings[1] = activation.OpenRing<BlockRequest, BlockResponse>(1);
            }
            return ActivateResult;
        }

        protected override void OnReset()
        {
            Events.Add("reset");
            _rings[0] = _rings[1] = null;
        }

        protected override void OnNotify(GuestSession session, int queue)
        {
            Events.Add($"notify {queue}");
            RingRun run = _rings[queue]!.Process(new Handler(queue));
            if (run.Corrupt)
            {
                MarkBroken($"queue {queue} corrupt");
            }
            else if (run.Notify)
            {
                Notify(session, queue);
            }
        }

        protected override object? SaveState() => "state";

        protected override void LoadState(object? state, DeviceActivation? activation)
        {
            Events.Add($"load {state} {(activation is null ? "detached" : "attached")}");
            _rings[0] = activation?.OpenRing<BlockRequest, BlockResponse>(0);
            _rings[1] = activation?.OpenRing<BlockRequest, BlockResponse>(1);
        }

        private readonly struct Handler(int queue) : IRingRequestHandler<BlockRequest, BlockResponse>
        {
            public BlockResponse Handle(in BlockRequest request) =>
                new() { Id = request.Id, Status = queue == 0 ? (long)(request.Sector * 2) : -(long)request.Sector };
        }
    }

    private static void WriteQueues(DeviceHarness h, params (ulong Address, uint Order)[] queues)
    {
        for (int i = 0; i < queues.Length; i++)
        {
            h.Memory.Write(new GuestAddress(Queues + (ulong)(16 * i)), new QueueDescriptor { Address = queues[i].Address, Order = queues[i].Order, Port = 0xdead });
        }
    }

    private static uint PortOf(DeviceHarness h, int queue) => h.Memory.Read<QueueDescriptor>(new GuestAddress(Queues + (ulong)(16 * queue))).Port;

    [Fact]
    public void A_user_device_is_described_configured_and_attached_with_a_port_per_queue()
    {
        using var console = new MemoryStream();
        using var first = new TwoQueueDevice("first");
        using var dev = new TwoQueueDevice("user0");
        using var h = new DeviceHarness(first, dev);
        Assert.True(h.Session.OfferedFeatures.HasFlag(FeatureBits.DeviceModel));

        Assert.Equal(64, h.Call(HypercallCode.DeviceDescribe, 1, Buffer, 64));
        DeviceDescriptor desc = h.Memory.Read<DeviceDescriptor>(new GuestAddress(Buffer));
        Assert.Equal((uint)TwoQueueDevice.Type, desc.Type);
        Assert.Equal(3u, desc.Version);
        Assert.Equal((ushort)2, desc.QueueCount);
        Assert.Equal((ushort)RingConstants.MaxOrder, desc.MaxRingOrder);
        Assert.Equal(8u, desc.ConfigSize);
        Assert.Equal("user0\0"u8.ToArray(), h.Memory.GetSpan(new GuestAddress(Buffer + 24), 6).ToArray());
        Assert.Equal((long)HypercallStatus.NoDevice, h.Call(HypercallCode.DeviceDescribe, 2, Buffer, 64));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.DeviceDescribe, 1, Buffer, 63));

        Assert.Equal(8, h.Call(HypercallCode.DeviceConfig, 1, Buffer, 8));
        Assert.Equal(0x1122334455667788UL, h.Memory.Read<ulong>(new GuestAddress(Buffer)));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.DeviceConfig, 1, Buffer, 7));

        var a = new GuestRing<BlockRequest, BlockResponse>(h.Memory, RingA, 2, 64);
        var b = new GuestRing<BlockRequest, BlockResponse>(h.Memory, RingB, 2, 64);
        a.SetRspEvent(1);
        b.SetRspEvent(1);
        WriteQueues(h, (RingA, 2), (RingB, 2));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 1, Queues, 2));
        // Queue 0 on the device's index; queue 1 on the lowest port no device index holds.
        Assert.Equal(1u, PortOf(h, 0));
        Assert.Equal(2u, PortOf(h, 1));
        Assert.Equal(["activate ports 1,2"], dev.Events);
        Assert.Equal((long)HypercallStatus.Busy, h.Call(HypercallCode.DeviceAttach, 1, Queues, 2));

        b.Put(new BlockRequest { Id = 9, Sector = 5 });
        b.Publish();
        Assert.Equal(0, h.EventSend(2));
        Assert.Equal(-5, Assert.Single(b.TakeResponses()).Status);
        Assert.Equal(1UL << 2, h.Poll(ulong.MaxValue)); // only queue 1's port was signalled
        a.Put(new BlockRequest { Id = 1, Sector = 21 });
        a.Publish();
        Assert.Equal(0, h.EventSend(1));
        Assert.Equal(42, Assert.Single(a.TakeResponses()).Status);
        Assert.Equal(1UL << 1, h.Poll(ulong.MaxValue));
        Assert.Equal(["activate ports 1,2", "notify 1", "notify 0"], dev.Events);

        // A second device's second queue skips the ports already bound.
        WriteQueues(h, (0x400000, 0), (0x410000, 0));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 0, Queues, 2));
        Assert.Equal(0u, PortOf(h, 0));
        Assert.Equal(3u, PortOf(h, 1));

        // Reset releases the queues and their ports: the doorbell is a bad handle until the guest attaches again.
        Assert.Equal(0, h.Call(HypercallCode.DeviceReset, 1));
        Assert.False(dev.IsAttached);
        Assert.Equal((long)HypercallStatus.BadHandle, h.EventSend(1));
        Assert.Equal((long)HypercallStatus.BadHandle, h.EventSend(2));
        Assert.Equal(0, h.Call(HypercallCode.DeviceReset, 1)); // idempotent
        WriteQueues(h, (RingA, 2), (RingB, 2));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 1, Queues, 2));
        Assert.Equal(2u, PortOf(h, 1));
    }

    [Theory]
    [InlineData(RingA + 1, 2, RingB, 2, 2, HypercallStatus.Invalid)]           // not page aligned
    [InlineData(RingA, 5, RingB, 2, 2, HypercallStatus.Invalid)]               // queue 0 allows order 4 at most
    [InlineData(RingA, 2, RingB, 9, 2, HypercallStatus.Invalid)]               // past RingConstants.MaxOrder
    [InlineData(RingA, 2, RingA, 2, 2, HypercallStatus.Invalid)]               // the rings overlap
    [InlineData(RingA + 0x1000, 2, RingA, 8, 2, HypercallStatus.Invalid)]      // queue 1's 16 KiB ring covers queue 0
    [InlineData(RingA, 2, DeviceHarness.MemorySize - 0x1000, 8, 2, HypercallStatus.Fault)] // past the end of memory
    [InlineData(RingA, 2, RingB, 2, 1, HypercallStatus.Invalid)]               // wrong queue count
    [InlineData(RingA, 2, RingB, 2, 9, HypercallStatus.Invalid)]               // more than MaxQueues
    public void Attach_validates_every_queue(ulong a, uint orderA, ulong b, uint orderB, int count, HypercallStatus expected)
    {
        using var dev = new TwoQueueDevice("user0");
        using var h = new DeviceHarness(dev);
        WriteQueues(h, (a, orderA), (b, orderB));
        Assert.Equal((long)expected, h.Call(HypercallCode.DeviceAttach, 0, Queues, (ulong)count));
        Assert.False(dev.IsAttached);
        Assert.Empty(dev.Events); // nothing reached the device
    }

    [Fact]
    public void Attach_answers_a_descriptor_array_outside_memory_and_a_refusing_device()
    {
        using var dev = new TwoQueueDevice("user0") { ActivateResult = HypercallStatus.NoMemory };
        using var h = new DeviceHarness(dev);
        Assert.Equal((long)HypercallStatus.Fault, h.Call(HypercallCode.DeviceAttach, 0, DeviceHarness.MemorySize - 16, 2));
        Assert.Equal((long)HypercallStatus.NoDevice, h.Call(HypercallCode.DeviceAttach, 1, Queues, 2));
        WriteQueues(h, (RingA, 2), (RingB, 2));
        Assert.Equal((long)HypercallStatus.NoMemory, h.Call(HypercallCode.DeviceAttach, 0, Queues, 2));
        Assert.False(dev.IsAttached);
        Assert.Equal(["activate ports 0,1", "reset"], dev.Events);
    }

    [Fact]
    public void A_corrupt_queue_breaks_only_its_device_and_reset_does_not_revive_it()
    {
        using var dev = new TwoQueueDevice("user0");
        using var h = new DeviceHarness(dev);
        var a = new GuestRing<BlockRequest, BlockResponse>(h.Memory, RingA, 2, 64);
        WriteQueues(h, (RingA, 2), (RingB, 2));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 0, Queues, 2));
        a.SetReqProd(1000);
        Assert.Equal((long)HypercallStatus.Broken, h.EventSend(0));
        Assert.True(dev.IsBroken);
        Assert.Equal((long)HypercallStatus.Broken, h.Call(HypercallCode.DeviceReset, 0));
        Assert.Equal((long)HypercallStatus.Broken, h.EventSend(1));
        Assert.Equal(64, h.Call(HypercallCode.DeviceDescribe, 0, Buffer, 64));
        Assert.Equal((uint)DeviceFlags.Broken, h.Memory.Read<DeviceDescriptor>(new GuestAddress(Buffer)).Flags);
    }

    [Fact]
    public void A_snapshot_refuses_an_attached_device_without_snapshot_support_and_restores_one_with_it()
    {
        using var plain = new TwoQueueDevice("plain");
        using var able = new TwoQueueDevice("able", snapshots: true);
        using var h = new DeviceHarness(plain, able);
        Assert.Null(plain.Save().Queues); // detached: nothing to refuse
        WriteQueues(h, (RingA, 2), (RingB, 2));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 0, Queues, 2));
        DeviceSnapshotException ex = Assert.Throws<DeviceSnapshotException>(() => plain.Save());
        Assert.Equal("plain", ex.DeviceName);

        WriteQueues(h, (0x400000, 1), (0x410000, 1));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 1, Queues, 2));
        DeviceState saved = able.Save();
        Assert.Equal(0, h.Call(HypercallCode.DeviceReset, 1));
        able.Load(saved, h.Session);
        Assert.True(able.IsAttached);
        Assert.Equal(1, able.Port);
        Assert.Equal("load state attached", able.Events[^1]);
        var ring = new GuestRing<BlockRequest, BlockResponse>(h.Memory, 0x400000, 1, 64);
        ring.Put(new BlockRequest { Id = 1, Sector = 4 });
        ring.Publish();
        Assert.Equal(0, h.EventSend(1));
        Assert.Equal(8, Assert.Single(ring.TakeResponses()).Status);
    }

    [Fact]
    public void The_built_in_devices_take_the_generic_path_with_their_configuration()
    {
        string image = Path.Combine(Dir, "disk.img");
        File.WriteAllBytes(image, new byte[64 * 512]);
        using var disk = new BlockDevice("disk0", image);
        var sw = new NetSwitch();
        using var net = new NetDevice("net0", sw.CreatePort());
        using var h = new DeviceHarness(disk, net);

        Assert.Equal(16, h.Call(HypercallCode.DeviceConfig, 0, Buffer, 64));
        BlockConfig block = h.Memory.Read<BlockConfig>(new GuestAddress(Buffer));
        Assert.Equal(64UL, block.Sectors);
        Assert.Equal(512u, block.SectorSize);
        Assert.Equal(16, h.Call(HypercallCode.DeviceConfig, 1, Buffer, 64));
        NetConfig config = h.Memory.Read<NetConfig>(new GuestAddress(Buffer));
        Assert.Equal(1500u, config.Mtu);
        Assert.Equal(net.MacAddress.GetAddressBytes(), h.Memory.GetSpan(new GuestAddress(Buffer), 6).ToArray());

        // Net: tx and rx get their own ports through the generic attach (one shared port through net_attach).
        WriteQueues(h, (RingA, 2), (RingB, 2));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 1, Queues, 2));
        Assert.Equal(1u, PortOf(h, 0));
        Assert.Equal(2u, PortOf(h, 1));

        // Block: one read through the generic attach.
        var ring = new GuestRing<BlockRequest, BlockResponse>(h.Memory, 0x400000, 3, BlockConstants.SlotSize);
        WriteQueues(h, (0x400000, 3));
        Assert.Equal(0, h.Call(HypercallCode.DeviceAttach, 0, Queues, 1));
        ring.Put(new BlockRequest { Id = 5, Operation = (uint)BlockOperation.Read, Sector = 1, Buffer = Buffer, Length = 512 });
        ring.Publish();
        Assert.Equal(0, h.EventSend(0));
        BlockResponse rsp = Assert.Single(ring.TakeResponses());
        Assert.Equal(0, rsp.Status);
        Assert.Equal(512u, rsp.Length);
    }

    private sealed class BadTypeDevice(DeviceKind kind) : VirtualDevice("bad")
    {
        public override DeviceKind Kind => kind;
        public override IReadOnlyList<DeviceQueue> Queues { get; } = [];
        protected override HypercallStatus OnActivate(DeviceActivation activation) => HypercallStatus.Ok;
        protected override void OnNotify(GuestSession session, int queue) { }
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(4u)]
    [InlineData(0xFFFFu)]
    public void A_user_device_type_below_the_user_range_is_refused_before_the_run(uint type)
    {
        using var dev = new BadTypeDevice((DeviceKind)type);
        ArgumentException ex = Assert.Throws<ArgumentException>(() => new DeviceHarness(dev));
        Assert.Contains("DeviceTypes.UserFirst", ex.Message, StringComparison.Ordinal);
    }
}
