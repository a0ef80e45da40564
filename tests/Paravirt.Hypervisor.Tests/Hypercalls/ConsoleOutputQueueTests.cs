using System.Text;
using Paravirt.Hypervisor.Tests.Hostile;

namespace Paravirt.Hypervisor.Tests.Hypercalls;

/// <summary>The console queue's writer threads (<see cref="ConsoleWriterThreads"/>): reused between queues, one per stalled stream, in order.</summary>
public sealed class ConsoleOutputQueueTests
{
    /// <summary>A memory stream that remembers which threads wrote to it, and can be slow.</summary>
    private sealed class RecordingStream(int delayEvery = 0) : MemoryStream
    {
        private int _writes;

        public HashSet<int> Writers { get; } = [];

        public override void Write(ReadOnlySpan<byte> buffer) => Write(buffer.ToArray(), 0, buffer.Length);

        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (Writers)
            {
                Writers.Add(Environment.CurrentManagedThreadId);
            }
            if (delayEvery > 0 && ++_writes % delayEvery == 0)
            {
                Thread.Sleep(1); // the vCPU side keeps writing meanwhile
            }
            base.Write(buffer, offset, count);
        }
    }

    [Fact]
    public void Queues_of_runs_one_after_another_reuse_writer_threads_instead_of_starting_one_each()
    {
        var writers = new HashSet<int>();
        for (int run = 0; run < 20; run++)
        {
            var stream = new RecordingStream();
            using (var queue = new ConsoleOutputQueue(stream, 1 << 16))
            {
                queue.Write(Encoding.ASCII.GetBytes($"run {run}\n"));
                Assert.True(queue.Drain(TimeSpan.FromSeconds(10)));
            }
            Assert.Equal($"run {run}\n", Encoding.ASCII.GetString(stream.ToArray()));
            Assert.DoesNotContain(Environment.CurrentManagedThreadId, stream.Writers);
            writers.UnionWith(stream.Writers);
        }
        // A thread per queue would be 20; tests running in parallel may take an idle writer now and then.
        Assert.True(writers.Count <= 10, $"{writers.Count} writer threads for 20 queues");
    }

    [Fact]
    public void A_stalled_stream_holds_its_own_writer_thread_only()
    {
        using var stalled = new StalledStream();
        using var stuck = new ConsoleOutputQueue(stalled, 1 << 16);
        stuck.Write("stuck"u8);
        var stream = new RecordingStream();
        using (var queue = new ConsoleOutputQueue(stream, 1 << 16))
        {
            queue.Write("free\n"u8);
            Assert.True(queue.Drain(TimeSpan.FromSeconds(10)));
        }
        Assert.Equal("free\n", Encoding.ASCII.GetString(stream.ToArray()));
        Assert.Equal(0, stalled.Written);
        stalled.Release();
        Assert.True(stuck.Drain(TimeSpan.FromSeconds(10)));
        Assert.Equal(5, stalled.Written);
    }

    [Fact]
    public void Many_small_writes_racing_a_slow_writer_thread_arrive_complete_and_in_order()
    {
        var stream = new RecordingStream(delayEvery: 50);
        var expected = new StringBuilder();
        using (var queue = new ConsoleOutputQueue(stream, 1 << 20))
        {
            for (int i = 0; i < 5000; i++)
            {
                string line = $"{i},";
                expected.Append(line);
                queue.Write(Encoding.ASCII.GetBytes(line));
                if (i % 500 == 0)
                {
                    Assert.True(queue.Drain(TimeSpan.FromSeconds(10))); // the writer thread lets go of an empty queue, then gets it back
                }
            }
            Assert.True(queue.Drain(TimeSpan.FromSeconds(10)));
        }
        Assert.Equal(expected.ToString(), Encoding.ASCII.GetString(stream.ToArray()));
    }
}
