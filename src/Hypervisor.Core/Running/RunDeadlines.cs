using System.Diagnostics;

namespace Paravirt.Hypervisor.Running;

/// <summary>
/// Fires run timeouts from one dedicated background thread, not from the thread pool: a console reader that stalls
/// can hold pool threads (a stream's <c>WriteAsync</c> often blocks one), and a pool timer's callback then waits for
/// a free thread, so a guest would overrun its timeout by however long the pool takes to grow. One thread serves every
/// run of the process; an entry is removed as soon as its run ends.
/// </summary>
internal static class RunDeadlines
{
    private static readonly object Lock = new();
    private static readonly SortedSet<Entry> Pending = new(EntryComparer.Instance);
    private static long _nextId;
    private static Thread? _thread;

    /// <summary>Cancels <paramref name="source"/> once <paramref name="after"/> has passed, unless the returned handle is disposed first.</summary>
    public static IDisposable Schedule(CancellationTokenSource source, TimeSpan after)
    {
        long ticks = (long)Math.Min(Math.Max(after.TotalSeconds, 0) * Stopwatch.Frequency, long.MaxValue / 4);
        var entry = new Entry(source, Stopwatch.GetTimestamp() + ticks, Interlocked.Increment(ref _nextId));
        lock (Lock)
        {
            Pending.Add(entry);
            if (_thread is null)
            {
                _thread = new Thread(Loop) { IsBackground = true, Name = "paravirt run deadlines" };
                _thread.Start();
            }
            Monitor.Pulse(Lock);
        }
        return entry;
    }

    private static void Loop()
    {
        while (true)
        {
            Entry? due = null;
            lock (Lock)
            {
                while (due is null)
                {
                    if (Pending.Count == 0)
                    {
                        Monitor.Wait(Lock);
                        continue;
                    }
                    Entry first = Pending.Min!;
                    long left = first.Due - Stopwatch.GetTimestamp();
                    if (left <= 0)
                    {
                        Pending.Remove(first);
                        due = first;
                    }
                    else
                    {
                        Monitor.Wait(Lock, (int)Math.Clamp(left * 1000 / Stopwatch.Frequency + 1, 1, int.MaxValue));
                    }
                }
            }
            due.Fire(); // outside the lock: cancellation runs the run's callbacks (the vCPU kick)
        }
    }

    private sealed class Entry(CancellationTokenSource source, long due, long id) : IDisposable
    {
        private volatile bool _disposed;

        public long Due { get; } = due;

        public long Id { get; } = id;

        public void Fire()
        {
            if (_disposed)
            {
                return;
            }
            try
            {
                source.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The run ended and disposed its source between the check and the cancel.
            }
        }

        public void Dispose()
        {
            _disposed = true;
            lock (Lock)
            {
                Pending.Remove(this);
            }
        }
    }

    private sealed class EntryComparer : IComparer<Entry>
    {
        public static readonly EntryComparer Instance = new();

        public int Compare(Entry? x, Entry? y) =>
            x!.Due != y!.Due ? x.Due.CompareTo(y.Due) : x.Id.CompareTo(y.Id);
    }
}
