namespace Paravirt.Hypervisor.Tests.Devices;

public sealed class BlockDeviceTests() : TestWithTempDirectory("block")
{
    private const ulong RingAddress = 0x200000;
    private const ulong BufferArea = 0x300000;
    private const int DiskSectors = 4096; // 2 MiB

    private string CreateImage(int sectors, int seed)
    {
        string path = Path.Combine(Dir, $"disk{seed}.img");
        byte[] data = new byte[sectors * 512];
        new Random(seed).NextBytes(data);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static (DeviceHarness h, GuestRing<BlockRequest, BlockResponse> ring, int port) Attach(BlockDevice disk, int order = 5)
    {
        var h = new DeviceHarness(disk);
        var ring = h.AttachBlockRing(0, RingAddress, order);
        Assert.Equal(1u, ring.ReqEvent); // the host asked for a doorbell on the first request
        return (h, ring, 0);
    }

    [Fact]
    public void DeviceInfoDescribesTheDisk()
    {
        using var disk = new BlockDevice("disk0", CreateImage(DiskSectors, 1), readOnly: true);
        using var h = new DeviceHarness(disk);
        Assert.Equal(64, h.Call(HypercallCode.DeviceInfo, 0, BufferArea, 64));
        DeviceInfo info = h.Memory.Read<DeviceInfo>(new GuestAddress(BufferArea));
        Assert.Equal((uint)DeviceKind.Block, info.Kind);
        Assert.Equal((uint)DeviceFlags.ReadOnly, info.Flags);
        Assert.Equal((ulong)DiskSectors, info.Sectors);
        Assert.Equal(512u, info.SectorSize);
        Assert.Equal((ushort)RingConstants.MaxOrder, info.MaxRingOrder);
        Assert.Equal("disk0\0"u8.ToArray(), h.Memory.GetSpan(new GuestAddress(BufferArea + 8), 6).ToArray());
        Assert.Equal((long)HypercallStatus.NoDevice, h.Call(HypercallCode.DeviceInfo, 1, BufferArea, 64));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.DeviceInfo, 0, BufferArea, 63));
        Assert.Equal((long)HypercallStatus.Fault, h.Call(HypercallCode.DeviceInfo, 0, DeviceHarness.MemorySize - 32, 64));
        Assert.Equal(Paravirt.Abi.FeatureBits.Devices, h.Session.OfferedFeatures & Paravirt.Abi.FeatureBits.Devices);
    }

    [Fact]
    public void ReadsAndWritesOfManySizesAndOffsetsKeepTheDataIntact()
    {
        string path = CreateImage(DiskSectors, 2);
        byte[] model = File.ReadAllBytes(path);
        var rng = new Random(1234);
        using (var disk = new BlockDevice("disk0", path))
        {
            var (h, ring, port) = Attach(disk);
            using (h)
            {
                for (int i = 0; i < 300; i++)
                {
                    int sectors = rng.Next(1, 65);
                    ulong sector = (ulong)rng.Next(0, DiskSectors - sectors + 1);
                    int length = sectors * 512;
                    ulong buffer = BufferArea + (ulong)rng.Next(0, 4096);
                    if (rng.Next(2) == 0)
                    {
                        byte[] data = new byte[length];
                        rng.NextBytes(data);
                        h.Memory.Write(new GuestAddress(buffer), data);
                        BlockResponse w = h.Single(ring, port, new BlockRequest { Id = (ulong)i, Operation = (uint)BlockOperation.Write, Sector = sector, Buffer = buffer, Length = (uint)length });
                        Assert.Equal(0, w.Status);
                        Assert.Equal((uint)length, w.Length);
                        data.CopyTo(model, (int)sector * 512);
                    }
                    else
                    {
                        h.Memory.Clear(new GuestAddress(buffer), (ulong)length);
                        BlockResponse r = h.Single(ring, port, new BlockRequest { Id = (ulong)i, Operation = (uint)BlockOperation.Read, Sector = sector, Buffer = buffer, Length = (uint)length });
                        Assert.Equal((ulong)i, r.Id);
                        Assert.Equal(0, r.Status);
                        Assert.Equal(model.AsSpan((int)sector * 512, length).ToArray(), h.Memory.GetSpan(new GuestAddress(buffer), (ulong)length).ToArray());
                    }
                }
                Assert.Equal(0, h.Single(ring, port, new BlockRequest { Id = 999, Operation = (uint)BlockOperation.Flush }).Status);
                Assert.True(disk.BytesRead > 0 && disk.BytesWritten > 0);
            }
        }
        // Flush reached the file: reopen it and compare with the model.
        Assert.Equal(model, File.ReadAllBytes(path));
    }

    [Fact]
    public void ManyRequestsPerDoorbellAreAllAnsweredInOrder()
    {
        string path = CreateImage(DiskSectors, 3);
        byte[] original = File.ReadAllBytes(path);
        using var disk = new BlockDevice("disk0", path);
        var (h, ring, port) = Attach(disk, order: 5);
        using (h)
        {
            for (int round = 0; round < 4; round++)
            {
                for (uint i = 0; i < ring.Slots; i++)
                {
                    ring.Put(new BlockRequest { Id = i, Operation = (uint)BlockOperation.Read, Sector = i * 8, Buffer = BufferArea + i * 4096, Length = 4096 });
                }
                ring.Publish();
                Assert.Equal(0, h.EventSend(port));
                List<BlockResponse> responses = ring.TakeResponses();
                Assert.Equal((int)ring.Slots, responses.Count);
                for (int i = 0; i < responses.Count; i++)
                {
                    Assert.Equal((ulong)i, responses[i].Id);
                    Assert.Equal(0, responses[i].Status);
                    Assert.Equal(original.AsSpan(i * 4096, 4096).ToArray(), h.Memory.GetSpan(new GuestAddress(BufferArea + (ulong)i * 4096), 4096).ToArray());
                }
            }
            // After going idle the host asks for a doorbell on the next request.
            Assert.Equal(ring.ReqProd + 1, ring.ReqEvent);
        }
    }

    [Fact]
    public void TheGuestIsNotifiedOnlyWhenItAskedToBe()
    {
        using var disk = new BlockDevice("disk0", CreateImage(64, 4));
        var (h, ring, port) = Attach(disk);
        using (h)
        {
            ring.SetRspEvent(1);
            h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Flush });
            Assert.Equal(1UL, h.Poll(1UL << port));
            ring.SetRspEvent(100); // not interested yet
            h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Flush });
            Assert.Equal(0UL, h.Poll(1UL << port));
        }
    }

    [Fact]
    public void ReadOnlyDiskRefusesWritesAndDiscardsAndKeepsTheFile()
    {
        string path = CreateImage(64, 5);
        byte[] original = File.ReadAllBytes(path);
        using (var disk = new BlockDevice("disk0", path, readOnly: true))
        {
            var (h, ring, port) = Attach(disk);
            using (h)
            {
                Assert.Equal((long)HypercallStatus.ReadOnly, h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Write, Sector = 0, Buffer = BufferArea, Length = 512 }).Status);
                Assert.Equal((long)HypercallStatus.ReadOnly, h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Discard, Sector = 0, Length = 512 }).Status);
                Assert.Equal(0, h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Read, Sector = 1, Buffer = BufferArea, Length = 512 }).Status);
                Assert.Equal(0, h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Flush }).Status);
            }
        }
        Assert.Equal(original, File.ReadAllBytes(path));
    }

    [Fact]
    public void DiscardZeroesTheRange()
    {
        string path = CreateImage(256, 6);
        byte[] original = File.ReadAllBytes(path);
        using (var disk = new BlockDevice("disk0", path))
        {
            var (h, ring, port) = Attach(disk);
            using (h)
            {
                BlockResponse r = h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Discard, Sector = 16, Length = 64 * 512 });
                Assert.Equal(0, r.Status);
                Assert.Equal(64u * 512, r.Length);
                Assert.Equal(0, h.Single(ring, port, new BlockRequest { Operation = (uint)BlockOperation.Read, Sector = 16, Buffer = BufferArea, Length = 64 * 512 }).Status);
                Assert.True(h.Memory.GetSpan(new GuestAddress(BufferArea), 64 * 512).IndexOfAnyExcept((byte)0) < 0);
            }
        }
        byte[] after = File.ReadAllBytes(path);
        Assert.Equal(original.Length, after.Length);
        Assert.Equal(original.AsSpan(0, 16 * 512).ToArray(), after.AsSpan(0, 16 * 512).ToArray());
        Assert.True(after.AsSpan(16 * 512, 64 * 512).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(original.AsSpan(80 * 512).ToArray(), after.AsSpan(80 * 512).ToArray());
    }

    [Fact]
    public void MissingOrBadlySizedImagesAreClearUserErrors()
    {
        var missing = Assert.Throws<DeviceConfigurationException>(() => new BlockDevice("disk0", Path.Combine(Dir, "nope.img")));
        Assert.Contains("does not exist", missing.Message, StringComparison.Ordinal);
        string odd = Path.Combine(Dir, "odd.img");
        File.WriteAllBytes(odd, new byte[1000]);
        var size = Assert.Throws<DeviceConfigurationException>(() => new BlockDevice("disk0", odd));
        Assert.Contains("multiple of 512", size.Message, StringComparison.Ordinal);
        string empty = Path.Combine(Dir, "empty.img");
        File.WriteAllBytes(empty, []);
        Assert.Throws<DeviceConfigurationException>(() => new BlockDevice("disk0", empty));
        Assert.DoesNotContain('\n', missing.Message);
    }

    [Fact]
    public void DeviceBytesAreCountedPerDeviceAndDirection()
    {
        using var metrics = new Diagnostics.ParavirtMetrics();
        var seen = new List<(long Value, string Device, string Direction)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == Diagnostics.ParavirtMetrics.MeterName && instrument.Name == "paravirt.device.bytes")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            string device = "", direction = "";
            foreach (KeyValuePair<string, object?> t in tags)
            {
                if (t.Key == "paravirt.device") { device = (string)t.Value!; }
                if (t.Key == "paravirt.device.direction") { direction = (string)t.Value!; }
            }
            seen.Add((value, device, direction));
        });
        listener.Start();
        using var disk = new BlockDevice("disk9", CreateImage(64, 8));
        using var h = new DeviceHarness(metrics, disk);
        var ring = h.AttachBlockRing(0, RingAddress, 2);
        ring.Put(new BlockRequest { Operation = (uint)BlockOperation.Read, Sector = 0, Buffer = BufferArea, Length = 4096 });
        ring.Put(new BlockRequest { Operation = (uint)BlockOperation.Write, Sector = 8, Buffer = BufferArea, Length = 1024 });
        ring.Publish();
        Assert.Equal(0, h.EventSend(0));
        Assert.Contains((4096L, "disk9", "read"), seen);
        Assert.Contains((1024L, "disk9", "write"), seen);
    }

    [Fact]
    public void AWritableDiskIsOpenedExclusively()
    {
        string path = CreateImage(64, 7);
        using var disk = new BlockDevice("disk0", path);
        var ex = Assert.Throws<DeviceConfigurationException>(() => new BlockDevice("disk1", path));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }
}
