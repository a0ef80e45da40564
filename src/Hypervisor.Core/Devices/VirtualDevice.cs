using System.Text;
using Paravirt.Abi;
using Paravirt.Hypervisor.Hypercalls;

namespace Paravirt.Hypervisor.Devices;

/// <summary>
/// A paravirtual device of one guest run: a console, block or net device. The application creates the instances
/// for a run (<see cref="Vcpu.GuestRunOptions.Devices"/>), owns them and disposes them after the run; the guest finds
/// them by index with <see cref="HypercallCode.DeviceInfo"/>, attaches its shared rings and rings the doorbell with
/// <see cref="HypercallCode.EventSend"/>.
/// </summary>
/// <remarks>
/// Threading: everything that touches guest memory (attach, doorbell, pump) runs on the vCPU thread. Work that
/// arrives on other threads (received frames, console input) is queued inside the device, and the device asks the
/// session to pump (<see cref="GuestSession.RequestPump"/>); the vCPU thread then copies it into the rings. A device
/// that finds the guest corrupted its shared state becomes <see cref="IsBroken"/>: it stops, every later call
/// answers <see cref="HypercallStatus.Broken"/>, and the host keeps running.
/// </remarks>
public abstract class VirtualDevice : IDisposable
{
    /// <summary>Longest device name (the ABI's 24-byte field keeps a NUL).</summary>
    public const int MaxNameLength = 23;

    private volatile bool _broken;
    private volatile GuestSession? _session;

    private protected VirtualDevice(string name)
    {
        ValidateName(name);
        Name = name;
    }

    /// <summary>The device kind.</summary>
    public abstract DeviceKind Kind { get; }

    /// <summary>The device name the guest's manifest uses (e.g. "disk0").</summary>
    public string Name { get; }

    /// <summary>True once the guest corrupted the device's shared state; the device answers <see cref="HypercallStatus.Broken"/> from then on.</summary>
    public bool IsBroken => _broken;

    /// <summary>Why the device broke (null while it works).</summary>
    public string? BrokenReason { get; private set; }

    /// <summary>True once the guest attached its shared memory.</summary>
    public bool IsAttached => _session is not null;

    /// <summary>The event port the device signals (its index in the run's device list); valid once attached.</summary>
    public int Port { get; private set; } = -1;

    /// <summary>The session the device is attached to, or null.</summary>
    private protected GuestSession? Session => _session;

    /// <summary>Describes the device for <see cref="HypercallCode.DeviceInfo"/>.</summary>
    public DeviceInfo Describe()
    {
        var info = new DeviceInfo { Kind = (uint)Kind, Flags = (uint)Flags, MaxRingOrder = (ushort)MaxRingOrder };
        unsafe
        {
            // Safe: the name was validated as at most MaxNameLength ASCII bytes; the field has 24.
            Span<byte> name = new(info.Name, 24);
            Encoding.ASCII.GetBytes(Name, name);
        }
        DescribeInto(ref info);
        if (_broken)
        {
            info.Flags |= (uint)DeviceFlags.Broken;
        }
        return info;
    }

    /// <summary>Flags for <see cref="DeviceInfo.Flags"/> (without <see cref="DeviceFlags.Broken"/>, added when broken).</summary>
    private protected virtual DeviceFlags Flags => DeviceFlags.None;

    /// <summary>Largest ring order the device accepts (0 for devices without rings).</summary>
    private protected virtual uint MaxRingOrder => 0;

    /// <summary>Fills the kind-specific fields of <paramref name="info"/>.</summary>
    private protected virtual void DescribeInto(ref DeviceInfo info)
    {
    }

    /// <summary>Records the attachment (called by the attach handlers after the device validated the guest's memory).</summary>
    private protected long CompleteAttach(GuestSession session, int port)
    {
        _session = session;
        Port = port;
        Pump(session);
        return _broken ? (long)HypercallStatus.Broken : port;
    }

    /// <summary>True when the device may be attached now; otherwise <paramref name="status"/> says why not.</summary>
    private protected bool CanAttach(GuestSession session, out long status)
    {
        if (_broken)
        {
            status = (long)HypercallStatus.Broken;
            return false;
        }
        if (_session is not null)
        {
            status = (long)HypercallStatus.Busy;
            return false;
        }
        status = 0;
        return true;
    }

    /// <summary>
    /// The guest rang the doorbell (<see cref="HypercallCode.EventSend"/> on the device's port): process its
    /// requests. Runs on the vCPU thread. Returns 0 or <see cref="HypercallStatus.Broken"/>.
    /// </summary>
    internal long Doorbell(GuestSession session)
    {
        if (_broken)
        {
            return (long)HypercallStatus.Broken;
        }
        OnDoorbell(session);
        return _broken ? (long)HypercallStatus.Broken : 0;
    }

    /// <summary>Delivers queued host-side work into the guest's rings. Runs on the vCPU thread; cheap when idle.</summary>
    internal void Pump(GuestSession session)
    {
        if (!_broken && ReferenceEquals(session, _session))
        {
            OnPump(session);
        }
    }

    /// <summary>
    /// The run ended (the guest exited, crashed or was stopped): delivers what the guest produced last, e.g. console
    /// output written just before the exit hypercall without a doorbell. Waits for slow readers at most until
    /// <paramref name="drainDeadline"/> (a <see cref="System.Diagnostics.Stopwatch"/> timestamp). Runs on the vCPU
    /// thread, guest stopped.
    /// </summary>
    internal void Stop(GuestSession session, long drainDeadline)
    {
        if (!_broken && ReferenceEquals(session, _session))
        {
            OnStop(session, drainDeadline);
        }
    }

    /// <summary>Final delivery at the end of a run (vCPU thread, attached, not broken); by default one more pump.</summary>
    private protected virtual void OnStop(GuestSession session, long drainDeadline) => OnPump(session);

    /// <summary>Processes guest requests after a doorbell (vCPU thread, attached, not broken).</summary>
    private protected abstract void OnDoorbell(GuestSession session);

    /// <summary>Delivers queued host-side work (vCPU thread, attached, not broken).</summary>
    private protected virtual void OnPump(GuestSession session)
    {
    }

    /// <summary>Asks the vCPU thread to pump this device soon (thread-safe; no-op before attach).</summary>
    private protected void RequestPump() => _session?.RequestPump();

    /// <summary>Signals the device's event port to the guest.</summary>
    private protected void Notify(GuestSession session) => session.SignalEvents(1UL << Port);

    /// <summary>Marks the device broken: the guest corrupted shared state. The device stops; the host keeps running.</summary>
    private protected void MarkBroken(string reason)
    {
        if (!_broken)
        {
            BrokenReason = reason;
            _broken = true;
            _session?.OnDeviceBroken(this, reason);
        }
    }

    /// <summary>
    /// The device's state as a snapshot needs it: attachment, port, broken state, and what the kind keeps about the
    /// guest's shared memory (ring positions, the console page). vCPU thread, guest stopped.
    /// </summary>
    internal DeviceState SaveState() => new(Kind, Name, _session is not null, Port, _broken, BrokenReason, SaveKindState());

    /// <summary>
    /// Returns the device to <paramref name="state"/> (taken from this device or one of the same kind and name, e.g. of
    /// the sandbox a snapshot came from) in <paramref name="session"/>, whose memory already holds the snapshot's
    /// contents. Work queued on the host side (received frames, console input not yet delivered) is kept.
    /// </summary>
    internal void LoadState(DeviceState state, GuestSession session)
    {
        if (state.Kind != Kind || state.Name != Name)
        {
            throw new ArgumentException($"a snapshot of device {state.Kind} '{state.Name}' cannot be loaded into {Kind} '{Name}'", nameof(state));
        }
        _session = state.Attached ? session : null;
        Port = state.Port;
        _broken = state.Broken;
        BrokenReason = state.BrokenReason;
        LoadKindState(state.KindState, session);
    }

    /// <summary>What the kind keeps about the guest's shared memory (null when not attached).</summary>
    private protected virtual object? SaveKindState() => null;

    /// <summary>Restores what <see cref="SaveKindState"/> returned (null: detached).</summary>
    private protected virtual void LoadKindState(object? state, GuestSession session)
    {
    }

    /// <summary>Releases the device's host resources (files, backends, input readers).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    private static void ValidateName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length is 0 or > MaxNameLength)
        {
            throw new ArgumentException($"device name '{name}' must be 1 to {MaxNameLength} characters", nameof(name));
        }
        foreach (char c in name)
        {
            if (c is <= ' ' or > '~' or ',' or ':' or '=')
            {
                throw new ArgumentException($"device name '{name}' may contain only printable ASCII without spaces, ',', ':' or '='", nameof(name));
            }
        }
    }
}

/// <summary>A device's state in a snapshot (<see cref="VirtualDevice.SaveState"/>).</summary>
internal sealed record DeviceState(DeviceKind Kind, string Name, bool Attached, int Port, bool Broken, string? BrokenReason, object? KindState);

/// <summary>
/// A device cannot be created from its configuration: a missing or unreadable disk image, a disk whose size is not a
/// multiple of 512 bytes, a TAP device the host may not open. The message is one clear line for the user.
/// </summary>
public sealed class DeviceConfigurationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DeviceConfigurationException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public DeviceConfigurationException() { }
    /// <summary>Creates the exception.</summary>
    public DeviceConfigurationException(string message, Exception inner) : base(message, inner) { }
}
