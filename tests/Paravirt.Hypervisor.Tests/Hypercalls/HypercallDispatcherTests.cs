using Microsoft.Extensions.Logging;

namespace Paravirt.Hypervisor.Tests.Hypercalls;

internal sealed class TestProvider(bool builtIn, params HypercallRegistration[] registrations) : IHypercallProvider
{
    public bool IsBuiltIn => builtIn;
    public IEnumerable<HypercallRegistration> GetHypercalls() => registrations;
}

internal sealed class ListLogger<T> : ILogger<T>
{
    public List<(LogLevel Level, string Message, Exception? Exception)> Entries { get; } = [];
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Add((logLevel, formatter(state, exception), exception));
}

public sealed class HypercallDispatcherTests : IDisposable
{
    private readonly GuestMemory _memory = new(GuestMemory.MinSize);
    private readonly MemoryStream _console = new();

    public void Dispose() => _memory.Dispose();

    internal static GuestImage EmptyImage() =>
        new([], EntryConvention.ImageMinAddress, [new ImageSegment(EntryConvention.ImageMinAddress, 0, 0, 0x1000, 5)], AbiVersion.Current, []);

    private GuestSession Session(CancellationToken stopping = default) => new(_memory, EmptyImage(), _console, stopping);

    /// <summary>Waits until the session's console queue reached the stream (the end of a run does the same).</summary>
    private static void Drain(GuestSession session) => session.Stop(Stopwatch.GetTimestamp() + Stopwatch.Frequency * 10);

    private static HypercallArgs Call(HypercallCode code, ulong a1 = 0, ulong a2 = 0) => new((ulong)code, a1, a2, 0, 0, 0);

    // The built-in set: the core calls, the device calls (DeviceInfo, the attach calls, EventSend) and the guest calls.
    private static HypercallDispatcher Core(params IHypercallProvider[] more) => new([new CoreHypercalls(), new Paravirt.Hypervisor.Devices.DeviceHypercalls(), new Paravirt.Hypervisor.Sandboxes.SandboxHypercalls(), .. more]);

    private static HypercallRegistration Reg(uint code, string name, long result = 0) => new(code, name, (in HypercallArgs _, GuestSession _) => result);

    // ---- table validation -----------------------------------------------------------------------------------

    [Fact]
    public void GuestCallsAnswerNotImplementedOutsideASandbox()
    {
        HypercallDispatcher d = Core();
        GuestSession s = Session();
        Assert.False(s.OfferedFeatures.HasFlag(FeatureBits.Sandbox));
        foreach (HypercallCode code in new[] { HypercallCode.SandboxReady, HypercallCode.SandboxReturn, HypercallCode.HostCall })
        {
            Assert.Equal((long)HypercallStatus.NotImplemented, d.Dispatch(Call(code, 0x20_0000, 0x1000), s));
        }
    }

    [Fact]
    public void CoreRegistersEveryBuiltInCodeWithAName()
    {
        HypercallDispatcher d = Core();
        foreach (HypercallCode code in Enum.GetValues<HypercallCode>())
        {
            Assert.False(string.IsNullOrEmpty(d.GetName((ulong)code)), $"{code} has no handler");
        }
        Assert.Equal("console_write", d.GetName((ulong)HypercallCode.ConsoleWrite));
        Assert.Equal("host_call", d.GetName((ulong)HypercallCode.HostCall));
        Assert.Null(d.GetName(0x0999));
        Assert.Null(d.GetName(1UL << 32)); // must not truncate to code 0
        Assert.Equal(Enum.GetValues<HypercallCode>().Length, d.Registrations.Count);
    }

    [Fact]
    public void DuplicateRegistrationIsRefusedNamingTheCodeAndBothHandlers()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Core(new TestProvider(true, Reg(0x0100, "my_console"))));
        Assert.Contains("0x0100", ex.Message, StringComparison.Ordinal);
        Assert.Contains("console_write", ex.Message, StringComparison.Ordinal);
        Assert.Contains("my_console", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WithBuiltIns_has_the_core_device_and_sandbox_hypercalls_and_the_users()
    {
        // What AddParavirt registers, for a host (the benchmarks) that builds its runner by hand.
        HypercallDispatcher d = HypercallDispatcher.WithBuiltIns([new TestProvider(false, Reg(0x1234, "mine"))]);
        Assert.Equal("console_write", d.GetName((uint)HypercallCode.ConsoleWrite));
        Assert.NotNull(d.GetName((uint)HypercallCode.BlockAttach));
        Assert.NotNull(d.GetName((uint)HypercallCode.SandboxReady));
        Assert.Equal("mine", d.GetName(0x1234));
    }

    [Fact]
    public void DuplicateUserRegistrationIsRefused()
    {
        var ex = Assert.Throws<InvalidOperationException>(() =>
            new HypercallDispatcher([new TestProvider(false, Reg(0x1234, "a")), new TestProvider(false, Reg(0x1234, "b"))]));
        Assert.Contains("0x1234", ex.Message, StringComparison.Ordinal);
        Assert.Contains("twice", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x0FFFu)]
    [InlineData(0x2000u)]
    [InlineData(0x0200u)]
    [InlineData(0u)]
    [InlineData(uint.MaxValue)]
    public void UserHypercallOutsideTheUserRangeIsRefused(uint code)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Core(new TestProvider(false, Reg(code, "mine"))));
        Assert.Contains($"0x{code:x4}", ex.Message, StringComparison.Ordinal);
        Assert.Contains("user-defined", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'mine'", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x1000u)]
    [InlineData(0x1FFFu)]
    public void BuiltInHypercallInsideTheUserRangeIsRefused(uint code)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Core(new TestProvider(true, Reg(code, "device_thing"))));
        Assert.Contains($"0x{code:x4}", ex.Message, StringComparison.Ordinal);
        Assert.Contains("built-in", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UserHypercallsAtTheEdgesOfTheRangeAreDispatched()
    {
        HypercallDispatcher d = Core(new TestProvider(false, Reg(0x1000, "first", 11), Reg(0x1FFF, "last", 22)));
        Assert.Equal(11, d.Dispatch(new HypercallArgs(0x1000, 0, 0, 0, 0, 0), Session()));
        Assert.Equal(22, d.Dispatch(new HypercallArgs(0x1FFF, 0, 0, 0, 0, 0), Session()));
    }

    [Fact]
    public void HandlersSeeAllFiveArguments()
    {
        HypercallArgs seen = default;
        var d = new HypercallDispatcher([new TestProvider(false, new HypercallRegistration(0x1001, "args", (in HypercallArgs a, GuestSession _) => { seen = a; return 0; }))]);
        d.Dispatch(new HypercallArgs(0x1001, 1, 2, 3, 4, 5), Session());
        Assert.Equal(new HypercallArgs(0x1001, 1, 2, 3, 4, 5), seen);
    }

    // ---- dispatch ---------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(0x0999UL)]
    [InlineData(0x1000UL)]                 // user range, nothing registered
    [InlineData(0xFFFF_FFFFUL)]
    [InlineData(0x1_0000_0000UL)]          // truncated it would be 0 = version
    [InlineData(0x1_0000_0100UL)]          // truncated it would be console_write
    [InlineData(ulong.MaxValue)]
    public void UnknownCodesAnswerNotImplemented(ulong code)
    {
        Assert.Equal((long)HypercallStatus.NotImplemented, Core().Dispatch(new HypercallArgs(code, 0, 0, 0, 0, 0), Session()));
        Assert.Equal(-38, (long)HypercallStatus.NotImplemented);
    }

    [Fact]
    public void ThrowingHandlerAnswersIoErrorAndIsLogged()
    {
        var logger = new ListLogger<HypercallDispatcher>();
        var d = new HypercallDispatcher(
            [new TestProvider(false, new HypercallRegistration(0x1002, "broken", (in HypercallArgs _, GuestSession _) => throw new InvalidOperationException("bug")))],
            logger);

        long result = d.Dispatch(new HypercallArgs(0x1002, 0, 0, 0, 0, 0), Session());

        Assert.Equal((long)HypercallStatus.IoError, result);
        (LogLevel level, string message, Exception? exception) = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Error, level);
        Assert.Contains("broken", message, StringComparison.Ordinal);
        Assert.IsType<InvalidOperationException>(exception);
    }

    [Fact]
    public void HandlerThrowingGuestMemoryExceptionDoesNotEscape()
    {
        var d = new HypercallDispatcher([new TestProvider(false, new HypercallRegistration(0x1003, "sloppy",
            (in HypercallArgs a, GuestSession s) => s.Memory.Read<ulong>(new GuestAddress(a.A1)) == 0 ? 0 : 1))]);
        Assert.Equal((long)HypercallStatus.IoError, d.Dispatch(new HypercallArgs(0x1003, ulong.MaxValue, 0, 0, 0, 0), Session()));
    }

    // ---- core hypercalls --------------------------------------------------------------------------------------

    [Fact]
    public void VersionReturnsThePackedCurrentVersion() =>
        Assert.Equal((long)AbiVersion.Current.Packed, Core().Dispatch(Call(HypercallCode.Version), Session()));

    [Theory]
    [InlineData(HypercallCode.ConsoleWrite)]
    [InlineData(HypercallCode.DebugWrite)]
    public void WriteOfAGoodBufferWritesTheBytesAndReturnsTheLength(HypercallCode code)
    {
        byte[] text = Encoding.ASCII.GetBytes("hello, host\n");
        _memory.Write(new GuestAddress(0x10_0000), text);

        using GuestSession session = Session();
        long result = Core().Dispatch(Call(code, 0x10_0000, (ulong)text.Length), session);
        Drain(session);

        Assert.Equal(text.Length, result);
        Assert.Equal(text, _console.ToArray());
    }

    [Theory]
    [InlineData(HypercallCode.ConsoleWrite, GuestMemory.MinSize - 4, 8UL)]            // runs past the end
    [InlineData(HypercallCode.DebugWrite, GuestMemory.MinSize - 4, 8UL)]
    [InlineData(HypercallCode.ConsoleWrite, GuestMemory.MinSize, 1UL)]                // starts at the end
    [InlineData(HypercallCode.ConsoleWrite, 0xFFFF_FFFF_FFFF_FFF0UL, 0x20UL)]         // address + length overflows
    [InlineData(HypercallCode.DebugWrite, 0xFFFF_FFFF_FFFF_FFF0UL, 0x20UL)]
    public void WriteOfABadBufferAnswersFaultAndWritesNothing(HypercallCode code, ulong address, ulong length)
    {
        long result = Core().Dispatch(Call(code, address, length), Session());
        Assert.Equal((long)HypercallStatus.Fault, result);
        Assert.Equal(-14, result);
        Assert.Equal(0, _console.Length);
    }

    /// <summary>
    /// A long write is cut to the chunk limit (1 MiB) and then to the free space of the run's console queue; a huge
    /// length is capped to MaxWriteChunk before the range check, so 0x10 + ulong.MaxValue never wraps.
    /// </summary>
    [Theory]
    [InlineData(HypercallCode.ConsoleWrite, 0UL, GuestMemory.MinSize)]
    [InlineData(HypercallCode.DebugWrite, 0x10UL, ulong.MaxValue)]
    public void LongOrHugeWriteIsAShortWriteOfWhatTheConsoleQueueHolds(HypercallCode code, ulong address, ulong length)
    {
        using GuestSession session = Session();
        long result = Core().Dispatch(Call(code, address, length), session);
        Drain(session);
        Assert.Equal(Math.Min(CoreHypercalls.MaxWriteChunk, Paravirt.Hypervisor.Running.GuestLimits.DefaultConsoleBufferSize), result);
        Assert.Equal(result, _console.Length);
    }

    [Fact]
    public void EmptyWriteReturnsZero()
    {
        Assert.Equal(0, Core().Dispatch(Call(HypercallCode.ConsoleWrite, GuestMemory.MinSize, 0), Session()));
        Assert.Equal(0, _console.Length);
    }

    private sealed class FailingStream : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => 0;
        public override long Position { get => 0; set { } }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new IOException("disk full");
        public override void Write(ReadOnlySpan<byte> buffer) => throw new IOException("disk full");
    }

    [Fact]
    public void WriteToAFailingConsoleAnswersIoError()
    {
        // The first write is queued; the background writer finds the stream broken; later writes answer IoError.
        using var session = new GuestSession(_memory, EmptyImage(), new FailingStream(), default);
        Assert.Equal(4, Core().Dispatch(Call(HypercallCode.ConsoleWrite, 0x10_0000, 4), session));
        Drain(session);
        Assert.Equal((long)HypercallStatus.IoError, Core().Dispatch(Call(HypercallCode.ConsoleWrite, 0x10_0000, 4), session));
    }

    [Fact]
    public void FeaturesOffersWordZeroAndNothingInUnknownWords()
    {
        GuestSession s = Session();
        HypercallDispatcher d = Core();
        Assert.Equal((long)s.OfferedFeatures, d.Dispatch(Call(HypercallCode.Features, 0), s));
        Assert.Equal((long)(FeatureBits.Console | FeatureBits.WallClock | FeatureBits.Poll | FeatureBits.Entropy), d.Dispatch(Call(HypercallCode.Features, 0), s));
        Assert.Equal(0, d.Dispatch(Call(HypercallCode.Features, 1), s));
        Assert.Equal(0, d.Dispatch(Call(HypercallCode.Features, ulong.MaxValue), s));
    }

    [Fact]
    public void AcceptFeaturesKeepsOnlyOfferedBits()
    {
        GuestSession s = Session();
        s.OfferedFeatures = FeatureBits.Console | FeatureBits.Poll;
        HypercallDispatcher d = Core();

        long accepted = d.Dispatch(Call(HypercallCode.AcceptFeatures, 0, (ulong)(FeatureBits.Console | FeatureBits.WallClock) | (1UL << 40)), s);

        Assert.Equal((long)FeatureBits.Console, accepted);
        Assert.Equal(FeatureBits.Console, s.AcceptedFeatures);
        Assert.Equal((long)(FeatureBits.Console | FeatureBits.Poll), d.Dispatch(Call(HypercallCode.AcceptFeatures, 0, ulong.MaxValue), s));
    }

    [Fact]
    public void AcceptFeaturesOfAnUnknownWordAcceptsNothingAndChangesNothing()
    {
        GuestSession s = Session();
        HypercallDispatcher d = Core();
        d.Dispatch(Call(HypercallCode.AcceptFeatures, 0, (ulong)FeatureBits.Poll), s);

        Assert.Equal(0, d.Dispatch(Call(HypercallCode.AcceptFeatures, 1, ulong.MaxValue), s));
        Assert.Equal(FeatureBits.Poll, s.AcceptedFeatures);
    }

    [Theory]
    [InlineData(0UL, 0L)]
    [InlineData(3UL, 3L)]
    [InlineData(ulong.MaxValue, -1L)]
    public void ExitRecordsTheStatus(ulong status, long expected)
    {
        GuestSession s = Session();
        Assert.False(s.ExitRequested);
        Assert.Equal(0, Core().Dispatch(Call(HypercallCode.Exit, status), s));
        Assert.True(s.ExitRequested);
        Assert.Equal(expected, s.ExitStatus);
    }

    [Fact]
    public void ClocksAndYield()
    {
        GuestSession s = Session();
        HypercallDispatcher d = Core();
        long t1 = d.Dispatch(Call(HypercallCode.ClockMonotonic), s);
        long t2 = d.Dispatch(Call(HypercallCode.ClockMonotonic), s);
        Assert.True(t1 >= 0 && t2 >= t1);
        long wall = d.Dispatch(Call(HypercallCode.ClockWall), s);
        long now = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
        Assert.True(Math.Abs(now - wall) < 60_000_000_000L, "wall clock within a minute of the host's");
        Assert.Equal(0, d.Dispatch(Call(HypercallCode.Yield), s));
    }

    // ---- poll -------------------------------------------------------------------------------------------------

    [Fact]
    public void PollWithAPastDeadlineReturnsZeroPromptly()
    {
        var sw = Stopwatch.StartNew();
        Assert.Equal(0, Core().Dispatch(Call(HypercallCode.Poll, 0, ulong.MaxValue), Session()));
        Assert.True(sw.ElapsedMilliseconds < 1000, $"took {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void PollWaitsUntilTheDeadline()
    {
        GuestSession s = Session();
        ulong deadline = (ulong)(s.MonotonicNanoseconds + 30_000_000); // 30 ms
        Assert.Equal(0, Core().Dispatch(Call(HypercallCode.Poll, deadline, 1), s));
        Assert.True(s.MonotonicNanoseconds >= (long)deadline);
    }

    [Fact]
    public void PollReturnsAndClearsPendingEventsInTheMask()
    {
        GuestSession s = Session();
        HypercallDispatcher d = Core();
        s.SignalEvents(0b1010);

        Assert.Equal(0b0010, d.Dispatch(Call(HypercallCode.Poll, ulong.MaxValue, 0b0011), s));
        Assert.Equal(0, d.Dispatch(Call(HypercallCode.Poll, 0, 0b0011), s)); // cleared
        Assert.Equal(0b1000, d.Dispatch(Call(HypercallCode.Poll, 0, ulong.MaxValue), s)); // the other bit stayed pending
    }

    [Fact]
    public void PollWakesWhenAnotherThreadSignals()
    {
        GuestSession s = Session();
        var sw = Stopwatch.StartNew();
        using var signaller = new Timer(_ => s.SignalEvents(0b100), null, 50, Timeout.Infinite);

        long result = Core().Dispatch(Call(HypercallCode.Poll, ulong.MaxValue, 0b110), s); // no deadline at all

        Assert.Equal(0b100, result);
        Assert.True(sw.ElapsedMilliseconds < 5000, $"took {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void PollReturnsWhenTheRunIsStopping()
    {
        using var stopping = new CancellationTokenSource();
        GuestSession s = Session(stopping.Token);
        var sw = Stopwatch.StartNew();
        stopping.CancelAfter(50);

        long result = Core().Dispatch(Call(HypercallCode.Poll, ulong.MaxValue, 1), s);

        Assert.Equal(0, result);
        Assert.True(sw.ElapsedMilliseconds < 5000, $"took {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void PollOnAnAlreadyStoppedRunReturnsImmediately()
    {
        GuestSession s = Session(new CancellationToken(canceled: true));
        var sw = Stopwatch.StartNew();
        Assert.Equal(0, Core().Dispatch(Call(HypercallCode.Poll, ulong.MaxValue, 1), s));
        Assert.True(sw.ElapsedMilliseconds < 1000);
    }
}
