namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>
/// The background threads that write <see cref="ConsoleOutputQueue"/>s to their streams. A queue with data is handed to
/// an idle thread, or to a new one when none is idle; the thread writes until the queue is empty and goes idle again,
/// and ends after <see cref="IdleLifetime"/> without work. A stream that stalls holds its own thread only (other
/// queues get other threads), as with a thread per queue, but a run no longer pays for starting and ending a thread.
/// </summary>
internal static class ConsoleWriterThreads
{
    /// <summary>How long an idle writer thread waits for another queue before it ends.</summary>
    internal static readonly TimeSpan IdleLifetime = TimeSpan.FromSeconds(10);

    private static readonly Lock s_lock = new();
    private static readonly List<Writer> s_idle = [];

    /// <summary>Idle writer threads now (for tests).</summary>
    internal static int IdleCount
    {
        get
        {
            lock (s_lock)
            {
                return s_idle.Count;
            }
        }
    }

    /// <summary>Runs <paramref name="queue"/>'s <see cref="ConsoleOutputQueue.Pump"/> on a writer thread.</summary>
    public static void Run(ConsoleOutputQueue queue)
    {
        lock (s_lock)
        {
            if (s_idle.Count > 0)
            {
                Writer idle = s_idle[^1];
                s_idle.RemoveAt(s_idle.Count - 1);
                idle.Hand(queue);
                return;
            }
        }
        var writer = new Writer();
        writer.Hand(queue);
        new Thread(writer.Loop) { IsBackground = true, Name = "paravirt console output" }.Start();
    }

    private sealed class Writer
    {
        private readonly SemaphoreSlim _handed = new(0);
        private ConsoleOutputQueue? _queue;

        public void Hand(ConsoleOutputQueue queue)
        {
            Volatile.Write(ref _queue, queue);
            _handed.Release();
        }

        public void Loop()
        {
            while (true)
            {
                if (!_handed.Wait(IdleLifetime))
                {
                    lock (s_lock)
                    {
                        if (s_idle.Remove(this))
                        {
                            _handed.Dispose();
                            return;
                        }
                    }
                    _handed.Wait(); // taken off the idle list just now: its queue is being handed over
                }
                ConsoleOutputQueue queue = Volatile.Read(ref _queue)!;
                _queue = null;
                queue.Pump();
                lock (s_lock)
                {
                    s_idle.Add(this);
                }
            }
        }
    }
}
