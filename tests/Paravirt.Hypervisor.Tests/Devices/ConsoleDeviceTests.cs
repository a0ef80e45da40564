using System.Buffers;
using System.IO.Pipelines;

namespace Paravirt.Hypervisor.Tests.Devices;

public sealed class ConsoleDeviceTests
{
    private const ulong Page = 0x200000;

    private sealed class ConsoleGuest : IDisposable
    {
        private uint _outProd;
        private uint _inCons;

        public ConsoleGuest(ConsoleDevice device)
        {
            Device = device;
            Harness = new DeviceHarness(device);
            Harness.Memory.Clear(new GuestAddress(Page), 4096);
            Assert.Equal(0, Harness.Call(HypercallCode.ConsoleAttach, 0, Page));
        }

        public ConsoleDevice Device { get; }
        public DeviceHarness Harness { get; }
        private GuestMemory M => Harness.Memory;

        public uint OutCons => M.Read<uint>(new GuestAddress(Page + ConsoleInterface.OutConsOffset));
        public uint InProd => M.Read<uint>(new GuestAddress(Page + ConsoleInterface.InProdOffset));

        /// <summary>Writes as much of <paramref name="data"/> as fits; returns the count.</summary>
        public int Write(ReadOnlySpan<byte> data)
        {
            int n = (int)Math.Min((uint)data.Length, ConsoleInterface.OutSize - (_outProd - OutCons));
            for (int i = 0; i < n; i++)
            {
                M.Write(new GuestAddress(Page + ConsoleInterface.OutOffset + ((_outProd + (uint)i) & (ConsoleInterface.OutSize - 1))), data.Slice(i, 1));
            }
            _outProd += (uint)n;
            SetOutProd(_outProd);
            return n;
        }

        public void SetOutProd(uint value) => M.Write(new GuestAddress(Page + ConsoleInterface.OutProdOffset), value);
        public void SetInCons(uint value) => M.Write(new GuestAddress(Page + ConsoleInterface.InConsOffset), value);

        public byte[] ReadInput()
        {
            uint prod = InProd;
            var bytes = new List<byte>();
            for (; _inCons != prod; _inCons++)
            {
                bytes.Add(M.GetSpan(new GuestAddress(Page + ConsoleInterface.InOffset + (_inCons & (ConsoleInterface.InSize - 1))), 1)[0]);
            }
            SetInCons(_inCons);
            return [.. bytes];
        }

        public void Dispose() => Harness.Dispose();
    }

    private static async Task<byte[]> ReadAtLeast(PipeReader reader, int count)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            ReadResult r = await reader.ReadAtLeastAsync(count, cts.Token);
            byte[] data = r.Buffer.Slice(0, Math.Min(r.Buffer.Length, count)).ToArray();
            reader.AdvanceTo(r.Buffer.GetPosition(data.Length));
            return data;
        }
    }

    [Fact]
    public async Task OutputReachesThePipeAcrossRingWraps()
    {
        var output = new Pipe();
        using var g = new ConsoleGuest(new ConsoleDevice("console0", output.Writer));
        byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 700).Select(i => $"line {i}\n")));
        var collected = new List<byte>();
        int sent = 0;
        while (sent < text.Length)
        {
            sent += g.Write(text.AsSpan(sent));
            Assert.Equal(0, g.Harness.EventSend(0));
            collected.AddRange(await ReadAtLeast(output.Reader, sent - collected.Count));
        }
        Assert.True(text.Length > 2 * (int)ConsoleInterface.OutSize);
        Assert.Equal(text, collected.ToArray());
        Assert.Equal((uint)text.Length, g.OutCons);
        Assert.Equal(text.Length, g.Device.BytesOut);
    }

    [Fact]
    public void InputFromAnotherThreadWakesThePollAndFillsTheRingAsTheGuestConsumes()
    {
        var input = new Pipe();
        using var g = new ConsoleGuest(new ConsoleDevice("console0", PipeWriter.Create(Stream.Null), input.Reader));
        byte[] data = new byte[3000];
        new Random(5).NextBytes(data);
        input.Writer.Write(data);
        _ = input.Writer.FlushAsync().AsTask();

        var received = new List<byte>();
        for (int round = 0; round < 20 && received.Count < data.Length; round++)
        {
            ulong ev = g.Harness.Poll(1, timeoutMs: 2000);
            Assert.Equal(1UL, ev);
            byte[] chunk = g.ReadInput();
            Assert.True(chunk.Length <= ConsoleInterface.InSize);
            received.AddRange(chunk);
            Assert.Equal(0, g.Harness.EventSend(0)); // tell the host there is room again
        }
        Assert.Equal(data, received.ToArray());
        Assert.Equal(data.Length, g.Device.BytesIn);
    }

    [Fact]
    public async Task InputLargerThanTheHostQueueArrivesInOrderAcrossEveryWrap()
    {
        // 200 KiB in odd-sized writes: the 64 KiB host queue and the 1 KiB ring both wrap many times at unaligned
        // places, and the reader waits whenever the queue is full (bounded back-pressure).
        var input = new Pipe();
        using var g = new ConsoleGuest(new ConsoleDevice("console0", PipeWriter.Create(Stream.Null), input.Reader));
        byte[] data = new byte[200 * 1024];
        new Random(11).NextBytes(data);
        Task writer = Task.Run(async () =>
        {
            for (int at = 0; at < data.Length;)
            {
                int n = Math.Min(7919, data.Length - at);
                await input.Writer.WriteAsync(data.AsMemory(at, n));
                at += n;
            }
            await input.Writer.CompleteAsync();
        });
        var received = new List<byte>(data.Length);
        for (int round = 0; round < 5000 && received.Count < data.Length; round++)
        {
            g.Harness.Poll(1, timeoutMs: 2000);
            received.AddRange(g.ReadInput());
            Assert.Equal(0, g.Harness.EventSend(0));
        }
        await writer;
        Assert.Equal(data.Length, received.Count);
        Assert.True(data.AsSpan().SequenceEqual(received.ToArray()), "input bytes arrived out of order or changed");
    }

    /// <summary>A stream whose writes are slow, so a flush is still in flight when the run ends.</summary>
    private sealed class SlowStream : MemoryStream
    {
        public override async Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            await Task.Delay(100, CancellationToken.None);
            await base.WriteAsync(buffer.AsMemory(offset, count), CancellationToken.None);
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Delay(100, CancellationToken.None);
            await base.WriteAsync(buffer, CancellationToken.None);
        }
    }

    [Fact]
    public void OutputLeftAtTheEndOfTheRunIsDeliveredExactlyOnceEvenToASlowReader()
    {
        // Regression: the guest wrote its last line and exited while a flush to a slow stdout was in flight; the
        // device completed the writer concurrently with that flush (host crash, the line written twice), and the
        // bytes still in the ring without a doorbell were never delivered.
        var output = new SlowStream();
        using (var g = new ConsoleGuest(new ConsoleDevice("console0", output)))
        {
            g.Write("first\n"u8);
            Assert.Equal(0, g.Harness.EventSend(0));   // flush of "first" now in flight (slow)
            g.Write("BYE\n"u8);                        // no doorbell: the guest exits right after
            g.Harness.Session.Stop(System.Diagnostics.Stopwatch.GetTimestamp() + System.Diagnostics.Stopwatch.Frequency * 5); // what GuestRunner does at the end of every run
        }                                             // Dispose must not race the flush
        Assert.Equal("first\nBYE\n", Encoding.ASCII.GetString(output.ToArray()));
    }

    [Fact]
    public void StreamsWorkAsConsoleEnds()
    {
        var output = new MemoryStream();
        using var input = new MemoryStream("hi\n"u8.ToArray());
        using (var g = new ConsoleGuest(new ConsoleDevice("console0", output, input)))
        {
            g.Write("hello"u8);
            Assert.Equal(0, g.Harness.EventSend(0));
            var got = new List<byte>();
            for (int i = 0; i < 10 && got.Count < 3; i++)
            {
                g.Harness.Poll(1, 500); // the first event may be "output space freed"
                got.AddRange(g.ReadInput());
            }
            Assert.Equal("hi\n"u8.ToArray(), got.ToArray());
        }
        Assert.Equal("hello"u8.ToArray(), output.ToArray());
    }

    [Fact]
    public async Task OutputWhoseReaderIsGoneIsDiscardedSoTheGuestNeverStalls()
    {
        var output = new Pipe();
        using var g = new ConsoleGuest(new ConsoleDevice("console0", output.Writer));
        await output.Reader.CompleteAsync();
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(2048, g.Write(new byte[2048]));
            Assert.Equal(0, g.Harness.EventSend(0));
        }
        Assert.Equal(20480u, g.OutCons);
        Assert.False(g.Device.IsBroken);
    }

    [Fact]
    public void LyingConsoleIndicesBreakTheDevice()
    {
        using (var g = new ConsoleGuest(new ConsoleDevice("console0", new Pipe().Writer)))
        {
            g.SetOutProd(ConsoleInterface.OutSize + 1);
            Assert.Equal((long)HypercallStatus.Broken, g.Harness.EventSend(0));
            Assert.True(g.Device.IsBroken);
            Assert.Equal(0u, g.OutCons);
        }
        var input = new Pipe();
        using (var g = new ConsoleGuest(new ConsoleDevice("console0", new Pipe().Writer, input.Reader)))
        {
            g.SetInCons(5000); // consumed bytes the host never produced
            input.Writer.Write("x"u8);
            _ = input.Writer.FlushAsync().AsTask();
            var deadline = System.Diagnostics.Stopwatch.StartNew();
            while (!g.Device.IsBroken && deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                Assert.Equal(0UL, g.Harness.Poll(1, 50)); // the pump finds the lie when the input arrives
            }
            Assert.True(g.Device.IsBroken);
            Assert.Equal((long)HypercallStatus.Broken, g.Harness.EventSend(0));
        }
    }

    [Fact]
    public void ConsolePagesOutsideMemoryOrMisalignedAreRefused()
    {
        using var h = new DeviceHarness(new ConsoleDevice("console0", new Pipe().Writer));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.ConsoleAttach, 0, Page + 8));
        Assert.Equal((long)HypercallStatus.Fault, h.Call(HypercallCode.ConsoleAttach, 0, DeviceHarness.MemorySize));
        Assert.Equal((long)HypercallStatus.Fault, h.Call(HypercallCode.ConsoleAttach, 0, ulong.MaxValue & ~0xFFFUL));
        Assert.Equal(0, h.Call(HypercallCode.ConsoleAttach, 0, DeviceHarness.MemorySize - 4096));
        Assert.Equal((long)HypercallStatus.Invalid, h.Call(HypercallCode.BlockAttach, 0, Page, 1));
    }

    [Fact]
    public async Task ASlowReaderBackPressuresTheGuestInsteadOfBlockingTheHost()
    {
        var output = new Pipe(new PipeOptions(pauseWriterThreshold: 1024, resumeWriterThreshold: 512));
        using var g = new ConsoleGuest(new ConsoleDevice("console0", output.Writer));
        byte[] chunk = new byte[2048];
        Assert.Equal(2048, g.Write(chunk));
        Assert.Equal(0, g.Harness.EventSend(0)); // taken; the flush now waits for the reader
        Assert.Equal(2048, g.Write(chunk));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(0, g.Harness.EventSend(0)); // does not block
        Assert.True(sw.ElapsedMilliseconds < 1000);
        Assert.Equal(2048u, g.OutCons); // the second chunk waits in the guest's ring
        ReadResult r = await output.Reader.ReadAsync();
        Assert.Equal(2048, r.Buffer.Length);
        output.Reader.AdvanceTo(r.Buffer.End);
        for (int i = 0; i < 1000 && g.Device.BytesOut < 4096; i++)
        {
            await Task.Delay(10); // the writer resumes on the thread pool
            Assert.Equal(0, g.Harness.EventSend(0));
        }
        Assert.Equal(4096u, g.OutCons);
    }
}
