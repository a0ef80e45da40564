using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Paravirt.Abi;
using Paravirt.Hypervisor.Devices;
using Paravirt.Hypervisor.Diagnostics;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>
/// The state of one guest run that hypercall handlers and devices see: its memory, its console, its clocks,
/// negotiated features, pending events and whether it asked to exit. One per run, used from the vCPU thread
/// (event signalling is thread-safe).
/// </summary>
public sealed partial class GuestSession
{
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    private readonly object _eventLock = new();
    private ulong _pendingEvents;
    private bool _pumpRequested;
    private IReadOnlyList<VirtualDevice> _devices = [];

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

    /// <summary>
    /// The run's paravirtual devices, in the order the guest enumerates them (<see cref="HypercallCode.DeviceInfo"/>);
    /// a device's index is also its event port, so at most <see cref="RingConstants.EventPorts"/>. Set before the run
    /// starts; setting a non-empty list offers <see cref="FeatureBits.Devices"/>.
    /// </summary>
    /// <exception cref="ArgumentException">More than 64 devices, or two with the same name.</exception>
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
                OfferedFeatures |= FeatureBits.Devices;
            }
        }
    }

    /// <summary>Metrics for device traffic; null when none are recorded.</summary>
    internal ParavirtMetrics? Metrics { get; init; }

    /// <summary>Logger for device events (a device that broke).</summary>
    internal ILogger? Logger { get; init; }

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

    /// <summary>The run ended: each device delivers what the guest produced last. vCPU thread, guest stopped.</summary>
    internal void StopDevices()
    {
        IReadOnlyList<VirtualDevice> devices = _devices;
        for (int i = 0; i < devices.Count; i++)
        {
            devices[i].Stop(this);
        }
    }

    /// <summary>
    /// Waits until one of <paramref name="mask"/>'s bits is pending, the monotonic clock reaches
    /// <paramref name="deadlineNanoseconds"/>, or the run is stopping. Returns and clears the pending bits in the mask
    /// (0 on timeout). Pumps the devices first, and again whenever a device asks (<see cref="RequestPump"/>), on the
    /// calling (vCPU) thread.
    /// </summary>
    public ulong WaitForEvents(ulong mask, long deadlineNanoseconds)
    {
        while (true)
        {
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
                    if (_pumpRequested)
                    {
                        _pumpRequested = false;
                        break; // pump outside the lock, then look again
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
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (VirtualDevice d in devices)
        {
            ArgumentNullException.ThrowIfNull(d, nameof(devices));
            if (!names.Add(d.Name))
            {
                throw new ArgumentException($"two devices are named '{d.Name}'; device names must be unique", nameof(devices));
            }
        }
    }

    [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "device {Device} stopped: {Reason}; it answers Broken from now on, the host keeps running")]
    private static partial void LogDeviceBroken(ILogger logger, string device, string reason);
}
