namespace Paravirt.Hypervisor.Tests.Hypercalls;

/// <summary>
/// A plain <see cref="MemoryStream"/> behind the console queue is written on the vCPU thread, at once (no writer
/// thread, nothing queued); one that refuses the write (closed, a full fixed buffer) fails the queue without an
/// exception, as a failing stream does on a writer thread. Subclasses go through the writer threads
/// (<see cref="ConsoleOutputQueueTests"/>).
/// </summary>
public sealed class ConsoleDirectWriteTests
{
    [Fact]
    public void A_plain_memory_stream_holds_each_write_when_Write_returns()
    {
        var stream = new MemoryStream();
        using var queue = new ConsoleOutputQueue(stream, 16);
        for (int i = 0; i < 100; i++)
        {
            queue.Write("hello"u8);
            Assert.Equal(5L * (i + 1), stream.Length); // the same thread, before Write returned
        }
        Assert.Equal(16, queue.Space); // nothing queued: the whole capacity, every time (one write is at most that, as with a writer thread)
        Assert.True(queue.Drain(TimeSpan.Zero));
        Assert.False(queue.Failed);
    }

    [Fact]
    public void A_full_fixed_buffer_fails_the_queue_and_keeps_what_fitted()
    {
        byte[] buffer = new byte[8];
        var stream = new MemoryStream(buffer); // not expandable
        using var queue = new ConsoleOutputQueue(stream, 1 << 16);
        queue.Write("12345"u8);
        queue.Write("6789"u8); // does not fit: NotSupportedException inside, a failed queue outside

        Assert.True(queue.Failed);
        queue.Write("more"u8); // discarded
        Assert.Equal("12345"u8.ToArray(), buffer[..5]);
        Assert.Equal(5, stream.Position);
    }

    [Fact]
    public void A_closed_memory_stream_fails_the_queue()
    {
        var stream = new MemoryStream();
        using var queue = new ConsoleOutputQueue(stream, 1 << 16);
        stream.Dispose();
        queue.Write("x"u8);

        Assert.True(queue.Failed);
    }
}
