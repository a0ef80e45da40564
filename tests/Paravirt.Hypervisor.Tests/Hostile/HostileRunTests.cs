using System.Diagnostics.Metrics;
using Paravirt.Hypervisor.Diagnostics;

namespace Paravirt.Hypervisor.Tests.Hostile;

/// <summary>
/// Hostile guests built from C source (Hostile/guests) try to keep the host past its timeout or to grow host memory;
/// each one is stopped within the stated bound and stays inside its caps (issue 13). Emulator backend.
/// </summary>
public sealed class HostileRunTests(Xunit.Abstractions.ITestOutputHelper log) : TestWithTempDirectory("hostile")
{
    /// <summary>
    /// How far past its timeout a run may return in these tests. The host's own reaction is milliseconds
    /// (docs/security.md); the rest is headroom for a loaded 2-core CI machine.
    /// </summary>
    private static readonly TimeSpan Slack = TimeSpan.FromMilliseconds(500);

    private static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(400);

    internal static GuestRunner Runner(ParavirtMetrics? metrics = null) =>
        new(new BackendSelector([new EmulatorBackend()]), new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]), metrics: metrics);

    /// <summary>
    /// Runs <paramref name="guest"/> on its own thread and waits at most 20 s for the run to return (a host that
    /// hangs fails the test instead of hanging it). Returns the result and the wall-clock time of the run.
    /// </summary>
    private static (RunResult Result, TimeSpan Elapsed) RunBounded(string guest, GuestRunOptions options, GuestRunner? runner = null)
    {
        GuestImage image = ElfLoader.LoadFile(HostileGuests.Path(guest), AbiVersion.Current);
        runner ??= Runner();
        RunResult? result = null;
        Exception? failure = null;
        TimeSpan elapsed = default;
        var thread = new Thread(() =>
        {
            var sw = Stopwatch.StartNew();
            try
            {
                result = runner.Run(image, options with { Backend = "emulator" });
            }
            catch (Exception ex)
            {
                failure = ex;
            }
            elapsed = sw.Elapsed;
        })
        { IsBackground = true, Name = "vcpu " + guest };
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(20)), $"{guest}: the run did not return within 20 s of a {options.Timeout} timeout: the host is held by the guest");
        Assert.Null(failure);
        return (result!, elapsed);
    }

    private void AssertStoppedInTime(string guest, RunResult r, TimeSpan elapsed)
    {
        log.WriteLine($"{guest}: returned {(elapsed - Timeout).TotalMilliseconds:F1} ms after its {Timeout.TotalMilliseconds} ms timeout");
        Assert.True(r.Outcome == RunOutcome.TimedOut, $"{guest}: {r.Outcome} {r.ExitStatus}: {r.Message}");
        Assert.True(elapsed - Timeout < Slack, $"{guest}: the run returned {(elapsed - Timeout).TotalMilliseconds:F0} ms after its {Timeout.TotalMilliseconds} ms timeout");
    }

    [Fact]
    public void A_guest_flooding_the_console_ring_to_a_stalled_reader_is_stopped_by_its_timeout()
    {
        using var stalled = new StalledStream();
        using var console = new ConsoleDevice("console0", stalled);
        (RunResult r, TimeSpan elapsed) = RunBounded("console_flood", new GuestRunOptions { Timeout = Timeout, Devices = [console] });
        AssertStoppedInTime("console_flood", r, elapsed);
        stalled.Release();
    }

    [Fact]
    public void A_guest_flooding_console_write_to_a_stalled_reader_is_stopped_by_its_timeout()
    {
        using var stalled = new StalledStream();
        (RunResult r, TimeSpan elapsed) = RunBounded("write_flood", new GuestRunOptions { Timeout = Timeout, ConsoleOutput = stalled });
        AssertStoppedInTime("write_flood", r, elapsed);
        stalled.Release();
    }

    [Fact]
    public void A_guest_polling_forever_is_stopped_by_its_timeout()
    {
        (RunResult r, TimeSpan elapsed) = RunBounded("poll_forever", new GuestRunOptions { Timeout = Timeout });
        AssertStoppedInTime("poll_forever", r, elapsed);
    }

    [Fact]
    public void A_guest_filling_the_block_ring_with_writes_and_flushes_is_stopped_by_its_timeout()
    {
        string path = Path.Combine(Dir, "storm.img");
        using (FileStream f = File.Create(path))
        {
            f.SetLength(8 << 20);
        }
        using var disk = new BlockDevice("disk0", path);
        (RunResult r, TimeSpan elapsed) = RunBounded("block_storm", new GuestRunOptions { Timeout = Timeout, Devices = [disk] });
        AssertStoppedInTime("block_storm", r, elapsed);
    }

    [Fact]
    public void Cycling_through_unknown_hypercall_codes_keeps_the_statistics_bounded()
    {
        const int Count = 100_000;
        (RunResult r, _) = RunBounded("hypercall_cycle", new GuestRunOptions { Timeout = TimeSpan.FromSeconds(60), CommandLine = $"first=131072 count={Count}" });
        Assert.True(r.Outcome == RunOutcome.Exited && r.ExitStatus == 0, $"{r.Outcome} {r.ExitStatus}: {r.Message}");
        // One entry per registered code the guest used (the runtime's own calls), never one per unknown code.
        Assert.True(r.Statistics.Hypercalls.Count < 16, $"{r.Statistics.Hypercalls.Count} statistics entries for {Count} distinct unknown codes");
        Assert.Equal(Count, r.Statistics.OtherHypercalls);
    }

    [Fact]
    public void Console_output_past_the_runs_limit_is_discarded_and_counted()
    {
        const long Limit = 256 << 10;
        var limits = GuestLimits.Default with { ConsoleOutputLimit = Limit };
        var options = new GuestRunOptions { Timeout = TimeSpan.FromSeconds(3), Limits = limits };
        using var output = new MemoryStream();
        (RunResult r, _) = RunBounded("write_flood", options with { ConsoleOutput = output });
        Assert.Equal(RunOutcome.TimedOut, r.Outcome);
        Assert.True(output.Length <= Limit, $"{output.Length} bytes written past a {Limit}-byte limit");
        Assert.True(r.Statistics.ConsoleBytesDiscarded > 0, "the guest wrote for 3 s without reaching the limit");

        using var ringOutput = new MemoryStream();
        using (var console = new ConsoleDevice("console0", ringOutput))
        {
            (r, _) = RunBounded("console_flood", options with { Devices = [console] });
        }
        Assert.Equal(RunOutcome.TimedOut, r.Outcome);
        Assert.True(ringOutput.Length <= Limit, $"{ringOutput.Length} bytes written past a {Limit}-byte limit");
        Assert.True(r.Statistics.ConsoleBytesDiscarded > 0, "the guest wrote for 3 s without reaching the limit");
    }
}
