namespace Paravirt.Hypervisor.Tests.Devices;

/// <summary>
/// The guest is hostile: lying indices, wrapping lengths, buffers and rings outside memory, unknown operations,
/// doorbell storms and requests rewritten while the host works. Each gets an error status or Broken; nothing throws
/// and the host keeps serving other devices.
/// </summary>
public sealed class HostileGuestTests() : TestWithTempDirectory("hostile")
{
    private const ulong RingAddress = 0x200000;
    private const ulong Ring2Address = 0x280000;
    private const ulong BufferArea = 0x300000;

    private BlockDevice NewDisk(string name, int sectors = 128)
    {
        string path = Path.Combine(Dir, name + ".img");
        File.WriteAllBytes(path, new byte[sectors * 512]);
        return new BlockDevice(name, path);
    }

    [Fact]
    public void LyingRingIndicesBreakOnlyThatDevice()
    {
        using var h = new DeviceHarness(NewDisk("bad"), NewDisk("good"));
        var bad = h.AttachBlockRing(0, RingAddress, 4);
        var good = h.AttachBlockRing(1, Ring2Address, 4);

        bad.SetReqProd(0x7000_0000); // far more requests than the 16 slots
        Assert.Equal((long)HypercallStatus.Broken, h.EventSend(0));
        Assert.True(h.Session.Devices[0].IsBroken);
        Assert.NotNull(h.Session.Devices[0].BrokenReason);
        Assert.Equal(0u, bad.RspProd); // nothing was processed
        Assert.Equal((long)HypercallStatus.Broken, h.EventSend(0));
        Assert.Equal((long)HypercallStatus.Broken, h.Call(HypercallCode.BlockAttach, 0, RingAddress, 4));
        Assert.Equal(64, h.Call(HypercallCode.DeviceInfo, 0, BufferArea, 64));
        Assert.Equal((uint)DeviceFlags.Broken, h.Memory.Read<DeviceInfo>(new GuestAddress(BufferArea)).Flags & (uint)DeviceFlags.Broken);

        // The host and the other device keep working; polling pumps the broken device harmlessly.
        Assert.Equal(0, h.Single(good, 1, new BlockRequest { Id = 7, Operation = (uint)BlockOperation.Read, Buffer = BufferArea, Length = 512 }).Status);
        Assert.Equal(0UL, h.Poll(ulong.MaxValue));
    }

    [Fact]
    public void ReqProdOneMoreThanTheRingHoldsIsBroken()
    {
        using var h = new DeviceHarness(NewDisk("d"));
        var ring = h.AttachBlockRing(0, RingAddress, 2);
        ring.SetReqProd(4); // exactly full: fine
        Assert.Equal(0, h.EventSend(0));
        Assert.Equal(4u, ring.RspProd);
        ring.SetReqProd(4 + 5); // one more than the 4 slots
        Assert.Equal((long)HypercallStatus.Broken, h.EventSend(0));
    }

    [Fact]
    public void WrappingAndOutOfRangeRequestsGetErrorStatusesAndTheDeviceContinues()
    {
        using BlockDevice disk = NewDisk("d", sectors: 128);
        using var h = new DeviceHarness(disk);
        var ring = h.AttachBlockRing(0, RingAddress, 5);
        const uint read = (uint)BlockOperation.Read, write = (uint)BlockOperation.Write, discard = (uint)BlockOperation.Discard;
        (BlockRequest request, HypercallStatus expected)[] cases =
        [
            (new() { Operation = read, Length = 0xFFFF_FFFF, Buffer = BufferArea }, HypercallStatus.Invalid),
            (new() { Operation = read, Length = 0, Buffer = BufferArea }, HypercallStatus.Invalid),
            (new() { Operation = read, Length = 513, Buffer = BufferArea }, HypercallStatus.Invalid),
            (new() { Operation = write, Length = BlockConstants.MaxTransfer + 512, Buffer = BufferArea }, HypercallStatus.Invalid),
            (new() { Operation = read, Sector = ulong.MaxValue, Length = 512, Buffer = BufferArea }, HypercallStatus.OutOfRange),
            (new() { Operation = write, Sector = ulong.MaxValue - 1, Length = 1024, Buffer = BufferArea }, HypercallStatus.OutOfRange),
            (new() { Operation = read, Sector = (ulong.MaxValue / 512) + 1, Length = 512, Buffer = BufferArea }, HypercallStatus.OutOfRange),
            (new() { Operation = read, Sector = 127, Length = 1024, Buffer = BufferArea }, HypercallStatus.OutOfRange),
            (new() { Operation = read, Sector = 128, Length = 512, Buffer = BufferArea }, HypercallStatus.OutOfRange),
            (new() { Operation = discard, Sector = ulong.MaxValue, Length = 512 }, HypercallStatus.OutOfRange),
            (new() { Operation = read, Length = 4096, Buffer = DeviceHarness.MemorySize - 2048 }, HypercallStatus.Fault),
            (new() { Operation = write, Length = 4096, Buffer = ulong.MaxValue - 1000 }, HypercallStatus.Fault),
            (new() { Operation = read, Length = 512, Buffer = DeviceHarness.MemorySize }, HypercallStatus.Fault),
            (new() { Operation = 4, Length = 512, Buffer = BufferArea }, HypercallStatus.Invalid),
            (new() { Operation = uint.MaxValue }, HypercallStatus.Invalid),
        ];
        ulong id = 0;
        foreach ((BlockRequest request, _) in cases)
        {
            BlockRequest r = request;
            r.Id = ++id;
            ring.Put(r);
        }
        ring.Put(new BlockRequest { Id = 100, Operation = read, Sector = 127, Length = 512, Buffer = BufferArea });
        ring.Publish();
        Assert.Equal(0, h.EventSend(0));
        List<BlockResponse> responses = ring.TakeResponses();
        Assert.Equal(cases.Length + 1, responses.Count);
        for (int i = 0; i < cases.Length; i++)
        {
            Assert.Equal((ulong)(i + 1), responses[i].Id);
            Assert.Equal((long)cases[i].expected, responses[i].Status);
            Assert.Equal(0u, responses[i].Length);
        }
        Assert.Equal(0, responses[^1].Status);
        Assert.Equal(512u, responses[^1].Length);
        Assert.False(disk.IsBroken);
    }

    [Fact]
    public void RingsOutsideMemoryMisalignedOrTooLargeAreRefused()
    {
        using var h = new DeviceHarness(NewDisk("d"));
        ulong end = DeviceHarness.MemorySize;
        Assert.Equal((long)HypercallStatus.Fault, h.Call(HypercallCode.BlockAttach, 0, end - 4096, 8)); // 16 KiB ring, 4 KiB left
        Assert.Equal((long)HypercallStatus.Fault, h.Call(HypercallCode.BlockAttach, 0, end, 0));
        Assert.Equal((long)HypercallStatus.Fault, h.Call(HypercallCode.BlockAttach, 0, ulong.MaxValue & ~0xFFFUL, 0));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.BlockAttach, 0, RingAddress + 64, 2));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.BlockAttach, 0, RingAddress, RingConstants.MaxOrder + 1));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.BlockAttach, 0, RingAddress, ulong.MaxValue));
        Assert.Equal((long)HypercallStatus.NoDevice, h.Call(HypercallCode.BlockAttach, 1, RingAddress, 2));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.ConsoleAttach, 0, RingAddress));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.NetAttach, 0, RingAddress, Ring2Address, 2));
        // Not attached yet: the doorbell is refused; ports past the devices and past 63 too.
        Assert.Equal((long)HypercallStatus.BadHandle, h.EventSend(0));
        Assert.Equal((long)HypercallStatus.BadHandle, h.EventSend(5));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.EventSend, 64));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.EventSend, ulong.MaxValue));
        // The largest ring that fits exactly at the end of memory is accepted, and only once.
        Assert.Equal(0, h.Call(HypercallCode.BlockAttach, 0, end - 5 * 4096, 8)); // 16 KiB + 64 bytes fit in the last 20 KiB
        Assert.Equal((long)HypercallStatus.Busy, h.Call(HypercallCode.BlockAttach, 0, RingAddress, 2));
        Assert.False(h.Session.Devices[0].IsBroken);
    }

    [Fact]
    public void ADoorbellStormTakesBoundedTimeAndMemory()
    {
        using var h = new DeviceHarness(NewDisk("d"));
        var ring = h.AttachBlockRing(0, RingAddress, 3);
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(0, h.EventSend(0)); // warm up
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 100_000; i++)
        {
            if (h.EventSend(0) != 0)
            {
                Assert.Fail($"event_send {i} failed");
            }
        }
        sw.Stop();
        long grown = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"100k doorbells took {sw.Elapsed}");
        Assert.True(grown < 64 * 1024, $"100k empty doorbells allocated {grown} bytes");
        Assert.Equal(0u, ring.RspProd);
        Assert.False(h.Session.Devices[0].IsBroken);
    }

    [Fact]
    public void ARequestRewrittenWhileTheHostWorksIsActedOnAsCopied()
    {
        using BlockDevice disk = NewDisk("d", sectors: 64);
        using var h = new DeviceHarness(disk);
        var ring = h.AttachBlockRing(0, RingAddress, 0);
        // Two versions of the one request: a valid 512-byte read, and a hostile one (huge length, buffer past memory).
        var valid = new BlockRequest { Id = 1, Operation = (uint)BlockOperation.Read, Sector = 0, Buffer = BufferArea, Length = 512 };
        var hostile = new BlockRequest { Id = 2, Operation = (uint)BlockOperation.Write, Sector = ulong.MaxValue, Buffer = DeviceHarness.MemorySize - 8, Length = 0xFFFF_FFFF };
        GuestAddress slot = new(ring.SlotAddress(0));
        using var stop = new CancellationTokenSource();
        var flipper = new Thread(() =>
        {
            bool flip = false;
            while (!stop.IsCancellationRequested)
            {
                h.Memory.Write(slot, flip ? hostile : valid);
                flip = !flip;
            }
        });
        flipper.Start();
        try
        {
            for (int i = 0; i < 20_000; i++)
            {
                ring.ReqProd++;
                ring.Publish();
                Assert.Equal(0, h.EventSend(0));
            }
        }
        finally
        {
            stop.Cancel();
            flipper.Join();
        }
        Assert.False(disk.IsBroken);
        Assert.Equal(20_000u, ring.RspProd);
        Assert.Equal(0, disk.BytesWritten);
        Assert.Equal(0, disk.BytesRead % 512);
    }
}
