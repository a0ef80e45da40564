using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Paravirt.Hypervisor.Hypercalls;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// A guest played by the fuzzer: guest memory, a real session with the given devices and the real dispatcher
/// (built-in and device hypercalls). A handler exception that the dispatcher would turn into <c>IoError</c> is a
/// finding here: <see cref="ThrowingLogger"/> rethrows it.
/// </summary>
internal sealed class FuzzGuest : IDisposable
{
    public const ulong MemorySize = 4UL << 20;

    private static readonly GuestImage Image = new([], 0x100000, [], AbiVersion.Current, []);
    private readonly CancellationTokenSource _stop = new();

    public FuzzGuest(GuestMemory memory, HypercallDispatcher dispatcher, params VirtualDevice[] devices)
    {
        Memory = memory;
        Dispatcher = dispatcher;
        Session = new GuestSession(memory, Image, Stream.Null, _stop.Token) { Devices = devices };
    }

    public GuestMemory Memory { get; }
    public GuestSession Session { get; }
    public HypercallDispatcher Dispatcher { get; }

    public static HypercallDispatcher NewDispatcher() =>
        new([new CoreHypercalls(), new DeviceHypercalls()], new ThrowingLogger());

    public long Call(HypercallCode code, ulong a1 = 0, ulong a2 = 0, ulong a3 = 0, ulong a4 = 0, ulong a5 = 0) =>
        Call((ulong)code, a1, a2, a3, a4, a5);

    public long Call(ulong code, ulong a1, ulong a2, ulong a3, ulong a4, ulong a5)
    {
        if (code == (ulong)HypercallCode.Poll)
        {
            // A poll that waits costs a whole millisecond (Monitor.Wait's resolution) and made the net harness spend 98% of
            // its time asleep (~250 runs/s); one poll in 64 still waits, up to 0.2 ms, the rest only pump and look.
            a1 = (ulong)Session.MonotonicNanoseconds + ((a1 & 63) == 0 ? a1 % 200_000 : 0);
        }
        long result = Dispatcher.Dispatch(new HypercallArgs(code, a1, a2, a3, a4, a5), Session);
        if (result < -4095)
        {
            throw new FuzzFindingException($"hypercall 0x{code:x} answered {result}, which is neither a value nor a status");
        }
        return result;
    }

    /// <summary>The end of a run, bounded.</summary>
    public void Stop() => Session.Stop(Stopwatch.GetTimestamp() + Stopwatch.Frequency / 10);

    public void Dispose()
    {
        Session.Dispose();
        foreach (VirtualDevice d in Session.Devices)
        {
            d.Dispose();
        }
        _stop.Dispose();
    }

    /// <summary>Turns the dispatcher's "handler threw" error log into a finding.</summary>
    internal sealed class ThrowingLogger : ILogger<HypercallDispatcher>
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Error)
            {
                throw new FuzzFindingException(formatter(state, exception) + (exception is null ? "" : ": " + exception));
            }
        }
    }
}
