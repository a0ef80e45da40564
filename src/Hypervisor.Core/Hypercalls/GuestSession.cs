using System.Diagnostics;

namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>
/// The state of one guest run that hypercall handlers and devices see: its memory, its console, its clocks,
/// negotiated features, pending events and whether it asked to exit. One per run (or per sandbox, over all its
/// calls), used from the vCPU thread (event signalling is thread-safe). Disposing it ends the run's console output
/// (what a stalled reader did not take is discarded).
/// </summary>
public sealed partial class GuestSession : IDisposable
{
    /// <summary>How long one <c>console_write</c> waits for a full output queue before it answers <c>TryAgain</c>.</summary>
    internal static readonly TimeSpan ConsoleWriteWait = TimeSpan.FromMilliseconds(50);

    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    /// <summary>Added to the time since <see cref="_startTimestamp"/>: a session loaded from a snapshot continues the snapshot's clock.</summary>
    private long _clockOffsetNs;
    private readonly object _eventLock = new();
    private CancellationToken _stopping;
    private CancellationTokenRegistration _stoppingRegistration;
    private ulong _pendingEvents;
    private bool _pumpRequested;
    /// <summary>The timer fired since a poll last returned for it: the next (or current) poll returns at once.</summary>
    private bool _timerWake;
    private readonly Lock _timerLock = new();
    private Timer? _timer;
    private long _timerGeneration;
    private bool _timerStopped;
    private IReadOnlyList<VirtualDevice> _devices = [];
    private ConsoleOutputQueue? _consoleQueue;
    private long _consoleBytes;
    private long _consoleBytesDiscarded;

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

    /// <summary>
    /// Where console and debug output go. The built-in <c>console_write</c> and <c>debug_write</c> reach it through a
    /// bounded queue written by a background thread (<see cref="GuestLimits.ConsoleBufferSize"/>; a plain
    /// <see cref="MemoryStream"/> is written on the vCPU thread, a copy that cannot stall); a handler of your
    /// own that writes here directly runs on the vCPU thread and blocks it while the stream does.
    /// </summary>
    public Stream ConsoleOutput { get; }

    /// <summary>The run's caps (<see cref="GuestRunOptions.Limits"/>).</summary>
    internal GuestLimits Limits { get; init; } = GuestLimits.Default;

    /// <summary>Console bytes discarded because the run reached <see cref="GuestLimits.ConsoleOutputLimit"/>.</summary>
    internal long ConsoleBytesDiscarded => _consoleBytesDiscarded;

    /// <summary>The bounded queue in front of <see cref="ConsoleOutput"/> (created on first use, vCPU thread).</summary>
    internal ConsoleOutputQueue ConsoleQueue => _consoleQueue ??= new ConsoleOutputQueue(ConsoleOutput, Limits.ConsoleBufferSize);

    /// <summary>
    /// Signalled when the run is being stopped (timeout, cancellation): blocking handlers must return. Set for each run
    /// of the vCPU (a sandbox's calls each have their own); a vCPU thread waiting in poll or in a full console queue
    /// wakes the moment it is signalled.
    /// </summary>
    public CancellationToken Stopping
    {
        get => _stopping;
        internal set
        {
            if (value == _stopping && _stoppingRegistration != default)
            {
                return;
            }
            _stoppingRegistration.Dispose();
            _stopping = value;
            _stoppingRegistration = value.UnsafeRegister(static s => ((GuestSession)s!).Wake(), this);
        }
    }

    /// <summary>
    /// What every guest is offered (the core hypercalls that need no device or backend capability); devices, the
    /// timer and sandboxes add their bits as the run is set up.
    /// </summary>
    internal const FeatureBits BaseFeatures = FeatureBits.Console | FeatureBits.WallClock | FeatureBits.Poll | FeatureBits.Entropy;

    /// <summary>Feature word 0 the host offers.</summary>
    public FeatureBits OfferedFeatures { get; set; } = BaseFeatures;

    /// <summary>Feature word 0 the guest accepted (<see cref="HypercallCode.AcceptFeatures"/>).</summary>
    public FeatureBits AcceptedFeatures { get; set; }

    /// <summary>
    /// The run's paravirtual devices, in the order the guest enumerates them (<see cref="HypercallCode.DeviceInfo"/>);
    /// a device's index is also its event port, so at most <see cref="RingConstants.EventPorts"/>. Set before the run
    /// starts; setting a non-empty list offers <see cref="FeatureBits.Devices"/> and <see cref="FeatureBits.DeviceModel"/> (and, with a console,
    /// <see cref="FeatureBits.ConsoleEndOfInput"/>).
    /// </summary>
    /// <exception cref="ArgumentException">More than 64 devices, two with the same name, or a device that declares too many queues, too much configuration or a type in the project's reserved range.</exception>
    public IReadOnlyList<VirtualDevice> Devices
    {
        get => _devices;
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            ValidateDevices(value);
            _devices = value;
            if (value.Count > 0)
            {
                OfferedFeatures |= FeatureBits.Devices | FeatureBits.DeviceModel;
            }
            // Loops, not LINQ or a set, here and in ValidateDevices: every VM runs them (measured: ~20 us of a
            // process's second VM, most of it for a VM without devices).
            for (int i = 0; i < value.Count; i++)
            {
                if (value[i].Kind == DeviceKind.Console)
                {
                    OfferedFeatures |= FeatureBits.ConsoleEndOfInput;
                    break;
                }
            }
        }
    }

    /// <summary>Metrics for device traffic; null when none are recorded.</summary>
    internal ParavirtMetrics? Metrics { get; init; }

    /// <summary>Logger for device events (a device that broke).</summary>
    internal ILogger? Logger { get; init; }

    /// <summary>Linux system calls the Linux personality answered with -ENOSYS, by number (<see cref="HypercallCode.SyscallUnimplemented"/>).</summary>
    internal Dictionary<ulong, long> UnimplementedSyscalls { get; } = [];

    /// <summary>The signal that killed a Linux application (<see cref="HypercallCode.ExitSignal"/>), if one did.</summary>
    internal Linux.LinuxFatalSignal? FatalSignal { get; set; }

    /// <summary>True once the guest called <see cref="HypercallCode.Exit"/>.</summary>
    public bool ExitRequested { get; private set; }

    /// <summary>The status the guest passed to <see cref="HypercallCode.Exit"/>.</summary>
    public long ExitStatus { get; private set; }

    /// <summary>Nanoseconds since the run started (for a session loaded from a snapshot: since the snapshot's run started); never goes backwards.</summary>
    public long MonotonicNanoseconds => _clockOffsetNs + ((long)Stopwatch.GetElapsedTime(_startTimestamp).Ticks * 100);

    /// <summary>The sandbox this session serves calls for (the sandbox hypercalls answer <see cref="HypercallStatus.NotImplemented"/> without one).</summary>
    internal Sandboxes.ISandboxChannel? Sandbox { get; init; }

    /// <summary>A handler asked the vCPU loop to stop after the current hypercall without completing it (the sandbox's ready and return points); the host resumes the guest later with the hypercall's result.</summary>
    internal bool PauseRequested { get; set; }

    /// <summary>What a snapshot keeps of the session: pending events, negotiated features, the exit request, the monotonic clock and the armed timer.</summary>
    internal readonly record struct State(ulong PendingEvents, FeatureBits Accepted, bool ExitRequested, long ExitStatus, long ClockNanoseconds, long TimerDeadline, int TimerVector);

    /// <summary>The session's state for a snapshot (vCPU stopped).</summary>
    internal State SaveState()
    {
        long deadline = 0;
        int vector = 0;
        lock (_timerLock)
        {
            if (_pendingArm is { } arm)
            {
                (deadline, vector) = (arm.Deadline, arm.Vector);
            }
        }
        lock (_eventLock)
        {
            return new State(_pendingEvents, AcceptedFeatures, ExitRequested, ExitStatus, MonotonicNanoseconds, deadline, vector);
        }
    }

    /// <summary>
    /// Returns to what <see cref="SaveState"/> returned (of this session or of the session a snapshot came from): the
    /// monotonic clock continues from the snapshot's time if it is ahead (it never goes backwards), and the timer is
    /// armed as it was then, or disarmed.
    /// </summary>
    internal void LoadState(in State state)
    {
        long now = MonotonicNanoseconds;
        if (state.ClockNanoseconds > now)
        {
            _clockOffsetNs += state.ClockNanoseconds - now;
        }
        lock (_eventLock)
        {
            _pendingEvents = state.PendingEvents;
            _pumpRequested = false;
            _timerWake = false;
        }
        AcceptedFeatures = state.Accepted;
        ExitRequested = state.ExitRequested;
        ExitStatus = state.ExitStatus;
        PauseRequested = false;
        if (InterruptSink is not null)
        {
            _ = SetTimer(state.TimerDeadline is > 0 ? (ulong)state.TimerDeadline : 0, (ulong)state.TimerVector);
        }
    }

    /// <summary>
    /// Raises an external interrupt on the guest's vCPU (<see cref="Backends.IVcpu.RequestInterrupt"/>); set by the
    /// runner when the backend declares <see cref="Backends.BackendCapabilities.InterruptInjection"/>, null otherwise
    /// (then <see cref="HypercallCode.TimerSet"/> answers <see cref="HypercallStatus.NotImplemented"/>).
    /// </summary>
    internal Action<int>? InterruptSink { get; set; }

    /// <summary>
    /// <see cref="HypercallCode.TimerSet"/>: arms the one-shot timer for monotonic time <paramref name="deadlineNanoseconds"/>
    /// (0 cancels) to raise <paramref name="vector"/>. Returns a <see cref="HypercallStatus"/> (0 on success).
    /// </summary>
    internal long SetTimer(ulong deadlineNanoseconds, ulong vector)
    {
        if (InterruptSink is null)
        {
            return (long)HypercallStatus.NotImplemented;
        }
        lock (_timerLock)
        {
            if (_timerStopped)
            {
                return (long)HypercallStatus.Broken;
            }
            _timerGeneration++;
            if (deadlineNanoseconds == 0)
            {
                _timer?.Change(Timeout.Infinite, Timeout.Infinite);
                _pendingArm = null;
                return 0;
            }
            if (vector is < 32 or > 255)
            {
                return (long)HypercallStatus.Invalid;
            }
            long dueNs = deadlineNanoseconds > long.MaxValue ? long.MaxValue : (long)deadlineNanoseconds - MonotonicNanoseconds;
            // Host timers have millisecond granularity: round up, so the interrupt never comes before the deadline.
            long dueMs = dueNs <= 0 ? 0 : Math.Min((dueNs + 999_999) / 1_000_000, uint.MaxValue - 1L);
            _timer ??= new Timer(static s => ((GuestSession)s!).FireTimer(), this, Timeout.Infinite, Timeout.Infinite);
            _pendingArm = new TimerArm(_timerGeneration, (int)vector, deadlineNanoseconds > long.MaxValue ? long.MaxValue : (long)deadlineNanoseconds);
            _timer.Change(dueMs, Timeout.Infinite);
            return 0;
        }
    }

    private sealed record TimerArm(long Generation, int Vector, long Deadline);

    private TimerArm? _pendingArm;

    /// <summary>The timer's deadline passed (thread pool): raise the interrupt and wake a guest blocked in poll.</summary>
    private void FireTimer()
    {
        int vector;
        lock (_timerLock)
        {
            if (_timerStopped || _pendingArm is not { } arm || arm.Generation != _timerGeneration)
            {
                return; // cancelled or re-armed since
            }
            long earlyNs = arm.Deadline - MonotonicNanoseconds;
            if (earlyNs > 0)
            {
                // The host timer runs on a coarser clock than the monotonic one and can fire a little early (seen
                // under load): wait out the rest, so the interrupt never comes before the deadline.
                _timer?.Change(Math.Max(1, (earlyNs + 999_999) / 1_000_000), Timeout.Infinite);
                return;
            }
            _pendingArm = null;
            vector = arm.Vector;
        }
        try
        {
            InterruptSink?.Invoke(vector);
        }
#pragma warning disable CA1031 // a timer callback must never take the host process down
        catch (Exception e)
#pragma warning restore CA1031
        {
            if (Logger is { } logger)
            {
                LogTimerFailed(logger, vector, e.Message);
            }
        }
        lock (_eventLock)
        {
            _timerWake = true;
            Monitor.PulseAll(_eventLock);
        }
    }

    /// <summary>The run ended: the timer never fires again.</summary>
    internal void StopTimer()
    {
        lock (_timerLock)
        {
            _timerStopped = true;
            _pendingArm = null;
            _timer?.Dispose();
            _timer = null;
        }
    }

    /// <summary>Records the guest's exit; the vCPU loop stops after the current hypercall.</summary>
    public void RequestExit(long status)
    {
        ExitStatus = status;
        ExitRequested = true;
    }

    /// <summary>The guest's panic message once it called <see cref="HypercallCode.Panic"/>, else null: the vCPU loop ends the run as a crash after the current hypercall.</summary>
    internal string? PanicMessage { get; private set; }

    /// <summary>The registers the guest passed with its panic (validated copy), or null to use those at the call.</summary>
    internal PanicFrame? PanicFrame { get; private set; }

    /// <summary>Records the guest's panic.</summary>
    internal void RequestPanic(string message, PanicFrame? frame)
    {
        PanicMessage = message;
        PanicFrame = frame;
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
    /// Asks the vCPU thread to pump the devices (copy work queued by other threads into the guest's rings) the next
    /// time it polls; wakes a guest blocked in <see cref="HypercallCode.Poll"/>. Thread-safe.
    /// </summary>
    internal void RequestPump()
    {
        lock (_eventLock)
        {
            _pumpRequested = true;
            Monitor.PulseAll(_eventLock);
        }
    }

    /// <summary>
    /// Delivers the devices' queued host-side work into the guest's rings. Call on the vCPU thread only (poll and
    /// event_send do).
    /// </summary>
    internal void PumpDevices()
    {
        IReadOnlyList<VirtualDevice> devices = _devices;
        for (int i = 0; i < devices.Count; i++)
        {
            devices[i].Pump(this);
        }
    }

    /// <summary>
    /// Waits until one of <paramref name="mask"/>'s bits is pending, the monotonic clock reaches
    /// <paramref name="deadlineNanoseconds"/>, or the run is stopping. Returns and clears the pending bits in the mask
    /// (0 on timeout or stop). Pumps the devices first, and again whenever a device asks (<see cref="RequestPump"/>),
    /// on the calling (vCPU) thread; the deadline and <see cref="Stopping"/> are checked before every pump, so a device
    /// that keeps asking cannot hold the caller past either.
    /// </summary>
    public ulong WaitForEvents(ulong mask, long deadlineNanoseconds)
    {
        while (true)
        {
            if (Stopping.IsCancellationRequested)
            {
                return 0;
            }
            PumpDevices();
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
                    if (_timerWake)
                    {
                        _timerWake = false;
                        return 0; // the timer fired: its interrupt is taken when the guest runs with IF set
                    }
                    long remainingNs = deadlineNanoseconds - MonotonicNanoseconds;
                    if (remainingNs <= 0 || Stopping.IsCancellationRequested)
                    {
                        return 0;
                    }
                    if (_pumpRequested)
                    {
                        _pumpRequested = false;
                        break; // pump outside the lock, then look again
                    }
                    // Stopping pulses the lock (the registration in the constructor); the cap only bounds one wait.
                    int waitMs = (int)Math.Clamp((remainingNs + 999_999) / 1_000_000, 1, 1000);
                    Monitor.Wait(_eventLock, waitMs);
                }
            }
        }
    }

    /// <summary>
    /// Takes up to <paramref name="wanted"/> bytes of the run's console output allowance
    /// (<see cref="GuestLimits.ConsoleOutputLimit"/>) and returns how many were granted. vCPU thread.
    /// </summary>
    internal long TakeConsoleAllowance(long wanted)
    {
        long granted = Limits.ConsoleOutputLimit is long limit ? Math.Clamp(limit - _consoleBytes, 0, wanted) : wanted;
        _consoleBytes += granted;
        return granted;
    }

    /// <summary>Counts console bytes discarded because the run reached its output limit. vCPU thread.</summary>
    internal void CountConsoleDiscarded(long bytes) => _consoleBytesDiscarded += bytes;

    /// <summary>
    /// The end of the run: each device delivers what the guest produced last, and the console queue drains, waiting
    /// at most until <paramref name="drainDeadline"/> (a <see cref="Stopwatch"/> timestamp) for slow readers.
    /// vCPU thread, guest stopped.
    /// </summary>
    internal void Stop(long drainDeadline)
    {
        IReadOnlyList<VirtualDevice> devices = _devices;
        for (int i = 0; i < devices.Count; i++)
        {
            devices[i].Stop(this, drainDeadline);
        }
        _consoleQueue?.Drain(Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), drainDeadline));
    }

    private void Wake()
    {
        lock (_eventLock)
        {
            Monitor.PulseAll(_eventLock);
        }
        _consoleQueue?.Wake();
    }

    /// <summary>Ends the run's console output and the stop registration; devices are the caller's to dispose.</summary>
    public void Dispose()
    {
        _stoppingRegistration.Dispose();
        _consoleQueue?.Dispose();
    }

    /// <summary>Takes and clears a pending pump request (vCPU thread; the doorbell path pumps when one is pending).</summary>
    internal bool TakePumpRequest()
    {
        lock (_eventLock)
        {
            bool requested = _pumpRequested;
            _pumpRequested = false;
            return requested;
        }
    }

    /// <summary>Logs that a device broke (called once per device).</summary>
    internal void OnDeviceBroken(VirtualDevice device, string reason)
    {
        if (Logger is { } logger)
        {
            LogDeviceBroken(logger, device.Name, reason);
        }
    }

    private static void ValidateDevices(IReadOnlyList<VirtualDevice> devices)
    {
        if (devices.Count > RingConstants.EventPorts)
        {
            throw new ArgumentException($"a guest can have at most {RingConstants.EventPorts} devices (got {devices.Count})", nameof(devices));
        }
        if (devices.Count == 0)
        {
            return;
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (VirtualDevice d in devices)
        {
            ArgumentNullException.ThrowIfNull(d, nameof(devices));
            if (!names.Add(d.Name))
            {
                throw new ArgumentException($"two devices are named '{d.Name}'; device names must be unique", nameof(devices));
            }
            d.ValidateDeclaration();
        }
    }

    [LoggerMessage(EventId = 301, Level = LogLevel.Warning, Message = "the paravirtual timer could not raise vector {Vector}: {Reason}")]
    private static partial void LogTimerFailed(ILogger logger, int vector, string reason);

    [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "device {Device} stopped: {Reason}; it answers Broken from now on, the host keeps running")]
    private static partial void LogDeviceBroken(ILogger logger, string device, string reason);
}
