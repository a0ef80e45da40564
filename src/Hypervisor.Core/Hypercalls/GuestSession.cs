using System.Diagnostics;
using Paravirt.Abi;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>
/// The state of one guest run that hypercall handlers and devices see: its memory, its console, its clocks,
/// negotiated features, pending events and whether it asked to exit. One per run, used from the vCPU thread
/// (event signalling is thread-safe).
/// </summary>
public sealed class GuestSession
{
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    private readonly object _eventLock = new();
    private ulong _pendingEvents;

    /// <summary>Creates a session.</summary>
    public GuestSession(GuestMemory memory, GuestImage image, Stream consoleOutput, CancellationToken stopping)
    {
        Memory = memory ?? throw new ArgumentNullException(nameof(memory));
        Image = image ?? throw new ArgumentNullException(nameof(image));
        ConsoleOutput = consoleOutput ?? throw new ArgumentNullException(nameof(consoleOutput));
        Stopping = stopping;
    }

    /// <summary>Guest memory: the one checked access path for every guest-supplied address.</summary>
    public GuestMemory Memory { get; }

    /// <summary>The running image.</summary>
    public GuestImage Image { get; }

    /// <summary>Where console and debug output go.</summary>
    public Stream ConsoleOutput { get; }

    /// <summary>Signalled when the run is being stopped (timeout, cancellation): blocking handlers must return.</summary>
    public CancellationToken Stopping { get; }

    /// <summary>Feature word 0 the host offers.</summary>
    public FeatureBits OfferedFeatures { get; set; } = FeatureBits.Console | FeatureBits.WallClock | FeatureBits.Poll;

    /// <summary>Feature word 0 the guest accepted (<see cref="HypercallCode.AcceptFeatures"/>).</summary>
    public FeatureBits AcceptedFeatures { get; set; }

    /// <summary>True once the guest called <see cref="HypercallCode.Exit"/>.</summary>
    public bool ExitRequested { get; private set; }

    /// <summary>The status the guest passed to <see cref="HypercallCode.Exit"/>.</summary>
    public long ExitStatus { get; private set; }

    /// <summary>Nanoseconds since the run started; never goes backwards.</summary>
    public long MonotonicNanoseconds => (long)Stopwatch.GetElapsedTime(_startTimestamp).Ticks * 100;

    /// <summary>Records the guest's exit; the vCPU loop stops after the current hypercall.</summary>
    public void RequestExit(long status)
    {
        ExitStatus = status;
        ExitRequested = true;
    }

    /// <summary>Marks event bits pending and wakes a guest blocked in <see cref="HypercallCode.Poll"/>. Thread-safe.</summary>
    public void SignalEvents(ulong bits)
    {
        lock (_eventLock)
        {
            _pendingEvents |= bits;
            Monitor.PulseAll(_eventLock);
        }
    }

    /// <summary>
    /// Waits until one of <paramref name="mask"/>'s bits is pending, the monotonic clock reaches
    /// <paramref name="deadlineNanoseconds"/>, or the run is stopping. Returns and clears the pending bits in the mask
    /// (0 on timeout).
    /// </summary>
    public ulong WaitForEvents(ulong mask, long deadlineNanoseconds)
    {
        lock (_eventLock)
        {
            while (true)
            {
                ulong hit = _pendingEvents & mask;
                if (hit != 0)
                {
                    _pendingEvents &= ~hit;
                    return hit;
                }
                long remainingNs = deadlineNanoseconds - MonotonicNanoseconds;
                if (remainingNs <= 0 || Stopping.IsCancellationRequested)
                {
                    return 0;
                }
                // Wake at least every 50 ms to notice Stopping without registering a callback per wait.
                int waitMs = (int)Math.Clamp((remainingNs + 999_999) / 1_000_000, 1, 50);
                Monitor.Wait(_eventLock, waitMs);
            }
        }
    }
}
