using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;

namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>
/// The bounded queue between the vCPU thread (<c>console_write</c>, <c>debug_write</c>) and the run's console output
/// stream. The vCPU thread only copies into a <see cref="Pipe"/> (at most <c>capacity</c> bytes held); a background
/// writer thread (<see cref="ConsoleWriterThreads"/>), handed the queue when data arrives, writes to the stream until
/// the queue is empty. A stream that stalls therefore holds that thread, never the vCPU thread: the guest sees a full
/// queue (back-pressure) and the run's timeout still works. Writer threads are reused between queues (a thread per run
/// cost more than a small guest's whole run: measured, bench/emulator-suite-notes.md). A <see cref="MemoryStream"/>
/// (exactly that type: a subclass may do anything in its Write) is written on the vCPU thread instead, with no queue:
/// its write is a copy into memory that cannot stall, and the hand-off to a writer thread and back cost a small guest
/// more than its run (measured: tens of microseconds, milliseconds on a loaded machine; "Fifth round").
/// </summary>
/// <remarks>
/// Write, WaitForSpace and Drain are called on the vCPU thread; <see cref="Wake"/> from any thread. After
/// <see cref="Dispose"/> whatever is still queued is discarded: the stream is not written after the run returned,
/// except for the one write that may be in progress when the reader stalled.
/// </remarks>
internal sealed class ConsoleOutputQueue : IDisposable
{
    private readonly Stream _target;
    private readonly int _capacity;
    private readonly Pipe? _pipe;
    /// <summary>The target is a plain <see cref="MemoryStream"/>: written on the calling thread, nothing queued.</summary>
    private readonly bool _direct;
    private readonly object _lock = new();
    private long _queued; // bytes in the pipe that the writer thread has not yet written; guarded by _lock
    /// <summary>Writes (and the dispose) not yet seen by a writer thread; nonzero while a writer thread owns the queue's reader.</summary>
    private int _signals;
    private volatile bool _failed;
    private volatile bool _abandoned;

    public ConsoleOutputQueue(Stream target, int capacity)
    {
        _target = target;
        _capacity = capacity;
        _direct = target.GetType() == typeof(MemoryStream);
        if (!ReferenceEquals(target, Stream.Null) && !_direct)
        {
            // The pipe never pauses the writer itself: _queued is the bound.
            _pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false));
        }
    }

    /// <summary>True once the stream failed (closed, I/O error): output is discarded from then on.</summary>
    public bool Failed => _failed;

    /// <summary>Bytes that may be queued now without waiting.</summary>
    public int Space
    {
        get
        {
            if (_direct)
            {
                return _capacity; // nothing is ever queued; a write is still at most a queue's worth, as with a writer thread
            }
            if (_pipe is null)
            {
                return int.MaxValue;
            }
            lock (_lock)
            {
                return (int)Math.Max(0, _capacity - _queued);
            }
        }
    }

    /// <summary>
    /// Waits until there is space, the stream failed, <paramref name="stopping"/> is signalled or
    /// <paramref name="maxWait"/> passed; returns the free space (0 when still full).
    /// </summary>
    public int WaitForSpace(TimeSpan maxWait, CancellationToken stopping)
    {
        if (_direct || _pipe is null)
        {
            return Space;
        }
        long deadline = Stopwatch.GetTimestamp() + (long)(maxWait.TotalSeconds * Stopwatch.Frequency);
        lock (_lock)
        {
            while (_queued >= _capacity && !_failed && !stopping.IsCancellationRequested)
            {
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                {
                    return 0;
                }
                Monitor.Wait(_lock, (int)Math.Clamp(left * 1000 / Stopwatch.Frequency + 1, 1, int.MaxValue));
            }
            return (int)Math.Max(0, _capacity - _queued);
        }
    }

    /// <summary>Queues <paramref name="data"/> (the caller checked <see cref="Space"/>); never blocks.</summary>
    public void Write(ReadOnlySpan<byte> data)
    {
        if (_direct && !_failed && !data.IsEmpty)
        {
            try
            {
                _target.Write(data);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
            {
                _failed = true; // closed, or a fixed buffer that is full: the guest's output is discarded from now on
            }
            return;
        }
        if (_pipe is null || _failed || data.IsEmpty)
        {
            return;
        }
        Debug.Assert(data.Length <= Space, "the caller checked the space");
        PipeWriter writer = _pipe.Writer;
        writer.Write(data);
        lock (_lock)
        {
            _queued += data.Length;
        }
        ValueTask<FlushResult> flush = writer.FlushAsync();
        Debug.Assert(flush.IsCompleted, "a pipe without a pause threshold completes its flushes at once");
        _ = flush.Result;
        Schedule();
    }

    /// <summary>Hands the queue to a writer thread unless one owns it already (which then sees this signal before it lets go).</summary>
    private void Schedule()
    {
        if (Interlocked.Increment(ref _signals) == 1)
        {
            ConsoleWriterThreads.Run(this);
        }
    }

    /// <summary>Waits until everything queued reached the stream, the stream failed, or <paramref name="timeout"/> passed; true when drained.</summary>
    public bool Drain(TimeSpan timeout)
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        lock (_lock)
        {
            while (_queued > 0 && !_failed)
            {
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                {
                    return false;
                }
                Monitor.Wait(_lock, (int)Math.Clamp(left * 1000 / Stopwatch.Frequency + 1, 1, int.MaxValue));
            }
            return true;
        }
    }

    /// <summary>Wakes a vCPU thread waiting in <see cref="WaitForSpace"/> (the run is stopping). Thread-safe.</summary>
    public void Wake()
    {
        lock (_lock)
        {
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>
    /// On a writer thread: writes what is queued to the stream until the queue is empty and no write came meanwhile,
    /// then gives the queue up (the next <see cref="Schedule"/> hands it out again). Completes the reader once the
    /// writer side completed (<see cref="Dispose"/>). Only one thread at a time owns the reader: the one that took
    /// <see cref="_signals"/> from 0.
    /// </summary>
    internal void Pump()
    {
        PipeReader reader = _pipe!.Reader;
        int seen = Volatile.Read(ref _signals);
        while (true)
        {
            while (reader.TryRead(out ReadResult result))
            {
                ReadOnlySequence<byte> buffer = result.Buffer;
                if (!_failed && !_abandoned && !buffer.IsEmpty)
                {
                    try
                    {
                        foreach (ReadOnlyMemory<byte> segment in buffer)
                        {
                            _target.Write(segment.Span);
                        }
                        _target.Flush();
                    }
                    catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
                    {
                        _failed = true; // the reader went away: the guest's output is discarded from now on
                    }
                }
                reader.AdvanceTo(buffer.End);
                lock (_lock)
                {
                    _queued -= buffer.Length;
                    Monitor.PulseAll(_lock);
                }
                if (result.IsCompleted || result.IsCanceled)
                {
                    reader.Complete();
                    return; // disposed: the queue stays owned (_signals never returns to 0), nothing is handed out again
                }
            }
            int left = Interlocked.Add(ref _signals, -seen);
            if (left == 0)
            {
                return;
            }
            seen = left; // writes came while this thread wrote: they are in the pipe now
        }
    }

    /// <summary>Stops writing: what is still queued is discarded. Does not wait for a stalled stream.</summary>
    public void Dispose()
    {
        if (_pipe is null)
        {
            return;
        }
        _abandoned = true;
        _pipe.Writer.Complete();
        Schedule(); // a writer thread completes the reader (now, or when it is done with a write in progress)
    }
}
