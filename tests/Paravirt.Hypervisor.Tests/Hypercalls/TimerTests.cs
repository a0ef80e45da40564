namespace Paravirt.Hypervisor.Tests.Hypercalls;

/// <summary>The paravirtual timer's host side (<see cref="GuestSession.SetTimer"/>, the <c>timer_set</c> hypercall).</summary>
public sealed class TimerTests : IDisposable
{
    private readonly GuestMemory _memory = new(GuestMemory.MinSize);
    private readonly GuestSession _session;
    private readonly List<int> _raised = [];
    private readonly SemaphoreSlim _fired = new(0);

    public TimerTests()
    {
        _session = new GuestSession(_memory, new GuestImage([], 0x100000, [], AbiVersion.Current, []), Stream.Null, default);
    }

    private void Attach() => _session.InterruptSink = v =>
    {
        lock (_raised)
        {
            _raised.Add(v);
        }
        _fired.Release();
    };

    public void Dispose()
    {
        _session.StopTimer();
        _memory.Dispose();
        _fired.Dispose();
    }

    [Fact]
    public void Without_an_interrupt_sink_the_timer_is_not_implemented()
    {
        Assert.Equal((long)HypercallStatus.NotImplemented, _session.SetTimer(1, 32));
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(31UL)]
    [InlineData(256UL)]
    [InlineData(ulong.MaxValue)]
    public void Vectors_outside_32_to_255_are_invalid(ulong vector)
    {
        Attach();
        Assert.Equal((long)HypercallStatus.Invalid, _session.SetTimer((ulong)_session.MonotonicNanoseconds + 1_000_000, vector));
    }

    [Fact]
    public void A_deadline_raises_its_vector_once_and_wakes_a_poll()
    {
        Attach();
        long start = _session.MonotonicNanoseconds;
        Assert.Equal(0L, _session.SetTimer((ulong)(start + 20_000_000), 200));
        ulong events = _session.WaitForEvents(ulong.MaxValue, start + 10_000_000_000); // would wait 10 s
        long waited = _session.MonotonicNanoseconds - start;
        Assert.Equal(0UL, events);
        Assert.InRange(waited, 20_000_000, 5_000_000_000);
        Assert.True(_fired.Wait(TimeSpan.FromSeconds(5)));
        Assert.False(_fired.Wait(TimeSpan.FromMilliseconds(100)), "a one-shot timer fired twice");
        Assert.Equal([200], _raised);
    }

    [Fact]
    public void A_deadline_in_the_past_fires_at_once_and_rearming_replaces_the_deadline()
    {
        Attach();
        Assert.Equal(0L, _session.SetTimer((ulong)_session.MonotonicNanoseconds + 60_000_000_000, 40)); // a minute away
        Assert.Equal(0L, _session.SetTimer(1, 41));                                                    // replaced: now
        Assert.True(_fired.Wait(TimeSpan.FromSeconds(5)));
        Assert.False(_fired.Wait(TimeSpan.FromMilliseconds(100)));
        Assert.Equal([41], _raised);
    }

    [Fact]
    public void Deadline_zero_cancels_and_a_stopped_run_never_fires()
    {
        Attach();
        Assert.Equal(0L, _session.SetTimer((ulong)_session.MonotonicNanoseconds + 30_000_000, 50));
        Assert.Equal(0L, _session.SetTimer(0, 0));
        Assert.Equal(0L, _session.SetTimer((ulong)_session.MonotonicNanoseconds + 30_000_000, 51));
        _session.StopTimer();
        Assert.False(_fired.Wait(TimeSpan.FromMilliseconds(200)));
        Assert.Empty(_raised);
        Assert.Equal((long)HypercallStatus.Broken, _session.SetTimer(1, 52));
    }

    [Fact]
    public void A_snapshot_keeps_the_armed_timer_and_a_session_loaded_from_it_fires_it_and_continues_the_clock()
    {
        Attach();
        Thread.Sleep(30); // the snapshot's clock is ahead of a session started just now
        long deadline = _session.MonotonicNanoseconds + 50_000_000;
        Assert.Equal(0L, _session.SetTimer((ulong)deadline, 77));
        GuestSession.State state = _session.SaveState();
        Assert.Equal(0L, _session.SetTimer(0, 0)); // the original no longer fires
        Assert.Equal((deadline, 77), (state.TimerDeadline, state.TimerVector));

        using var memory = new GuestMemory(GuestMemory.MinSize);
        using var fork = new GuestSession(memory, new GuestImage([], 0x100000, [], AbiVersion.Current, []), Stream.Null, default);
        var raised = new List<int>();
        using var fired = new SemaphoreSlim(0);
        fork.InterruptSink = v =>
        {
            lock (raised)
            {
                raised.Add(v);
            }
            fired.Release();
        };
        try
        {
            fork.LoadState(state);
            Assert.True(fork.MonotonicNanoseconds >= state.ClockNanoseconds, "a session loaded from a snapshot went back in time");
            Assert.True(fired.Wait(TimeSpan.FromSeconds(5)), "the re-armed timer did not fire");
            Assert.True(fork.MonotonicNanoseconds >= deadline);
            Assert.Equal([77], raised);
        }
        finally
        {
            fork.StopTimer();
        }
        Assert.False(_fired.Wait(TimeSpan.FromMilliseconds(100)));
    }

    [Fact]
    public void Loading_a_snapshot_taken_without_an_armed_timer_disarms_the_timer()
    {
        Attach();
        GuestSession.State idle = _session.SaveState();
        Assert.Equal(0L, _session.SetTimer((ulong)_session.MonotonicNanoseconds + 30_000_000, 60));
        long before = _session.MonotonicNanoseconds;
        _session.LoadState(idle);
        Assert.True(_session.MonotonicNanoseconds >= before, "the clock went backwards on a restore");
        Assert.False(_fired.Wait(TimeSpan.FromMilliseconds(200)));
        Assert.Empty(_raised);
    }
}
