using System.Text;
using Paravirt.Hypervisor.Devices.Rings;

namespace Paravirt.Hypervisor.Devices;

/// <summary>
/// A paravirtual device of one guest run: the built-in console, block and net devices, or a device of your own.
/// The application creates the instances for a run (<see cref="Running.GuestRunOptions.Devices"/>,
/// <c>ParavirtBuilder.AddDevice</c>, <see cref="Sandboxes.SandboxOptions.Devices"/>), owns them and disposes them after
/// the run.
/// </summary>
/// <remarks>
/// <para>
/// The contract, as virtio's: a device has an identity the guest discovers (<see cref="Kind"/> = its type id,
/// <see cref="Version"/>, <see cref="Name"/>, <see cref="Flags"/> and a configuration blob of
/// <see cref="ConfigSize"/> bytes), and owns <see cref="Queues"/>: rings or regions in guest memory that the guest
/// shares with <see cref="HypercallCode.DeviceAttach"/>, each with its own event port.
/// </para>
/// <para>
/// Lifecycle: <b>attach</b> (the guest shares the queues; the host validates every one: page aligned, order within
/// <see cref="DeviceQueue.MaxOrder"/>, inside guest memory, no overlap) → <b>activate</b> (<see cref="OnActivate"/>:
/// the device opens its rings from the <see cref="DeviceActivation"/>) → <b>notify</b> (the guest rang the doorbell of
/// a queue: <see cref="OnNotify"/>) and <b>pump</b> (host-side work queued by other threads: <see cref="OnPump"/>) →
/// <b>reset</b> (<see cref="HypercallCode.DeviceReset"/>, a snapshot restore to a detached state:
/// <see cref="OnReset"/> drops every reference to guest memory) → <b>stop</b> (the run ended: <see cref="OnStop"/>
/// delivers the last output) → <b>release</b> (<see cref="Dispose()"/>: host resources).
/// </para>
/// <para>
/// Threading: everything that touches guest memory (activate, notify, pump, stop, reset) runs on the vCPU thread, one
/// call at a time. Work that arrives on other threads (received frames, console input) is queued inside the device,
/// which then calls <see cref="RequestPump"/>. The guest is hostile: copy each request out of shared memory once
/// (<see cref="SharedRing{TRequest, TResponse}.TryTakeRequest"/> does), validate the copy, answer bad requests with an
/// error status; when the guest corrupts the shared state itself, call <see cref="MarkBroken"/>: the device stops,
/// every later call answers <see cref="HypercallStatus.Broken"/>, and the host keeps running. A device method never
/// throws for guest input.
/// </para>
/// <para>
/// Snapshots (<see cref="Sandboxes.Sandbox.Snapshot"/>): the host saves each device's attachment (queue addresses,
/// orders, ports) and broken state. A device that keeps more state about the guest (ring indices, a store) opts in with
/// <see cref="SupportsSnapshots"/> and <see cref="SaveState"/>/<see cref="LoadState"/>; an attached device that does not
/// makes <c>Snapshot</c> throw <see cref="DeviceSnapshotException"/>.
/// </para>
/// </remarks>
public abstract class VirtualDevice : IDisposable
{
    /// <summary>Longest device name (the ABI's 24-byte field keeps a NUL).</summary>
    public const int MaxNameLength = 23;

    private volatile bool _broken;
    private volatile GuestSession? _session;
    private DeviceActivation? _activation;

    /// <summary>Creates a device named <paramref name="name"/>.</summary>
    /// <param name="name">The name the guest finds it by (1 to <see cref="MaxNameLength"/> printable ASCII characters, no space, ',', ':' or '=').</param>
    /// <exception cref="ArgumentException">The name is empty, too long or has a forbidden character.</exception>
    protected VirtualDevice(string name)
    {
        ValidateName(name);
        Name = name;
    }

    /// <summary>
    /// The device type the guest discovers (<see cref="DeviceDescriptor.Type"/>): <see cref="DeviceKind.Console"/>,
    /// <see cref="DeviceKind.Block"/>, <see cref="DeviceKind.Net"/> for the built-in devices; a device of your own
    /// returns a type of at least <see cref="DeviceTypes.UserFirst"/>, e.g. <c>(DeviceKind)(DeviceTypes.UserFirst + 1)</c>.
    /// </summary>
    public abstract DeviceKind Kind { get; }

    /// <summary>The version of the device type's protocol (<see cref="DeviceDescriptor.Version"/>); 1 unless overridden.</summary>
    public virtual uint Version => 1;

    /// <summary>The queues the device owns, in the order the guest passes them to <see cref="HypercallCode.DeviceAttach"/> (at most <see cref="DeviceTypes.MaxQueues"/>; a constant list).</summary>
    public abstract IReadOnlyList<DeviceQueue> Queues { get; }

    /// <summary>The device name the guest's manifest uses (e.g. "disk0").</summary>
    public string Name { get; }

    /// <summary>True once the guest corrupted the device's shared state; the device answers <see cref="HypercallStatus.Broken"/> from then on.</summary>
    public bool IsBroken => _broken;

    /// <summary>Why the device broke (null while it works).</summary>
    public string? BrokenReason { get; private set; }

    /// <summary>True once the guest attached its shared memory.</summary>
    public bool IsAttached => _session is not null;

    /// <summary>The event port of the device's first queue; valid once attached (-1 before).</summary>
    public int Port => _activation is { QueueCount: > 0 } a ? a.Port(0) : -1;

    /// <summary>True when the device can be snapshotted while attached (<see cref="SaveState"/>); false unless overridden.</summary>
    public virtual bool SupportsSnapshots => false;

    /// <summary>Describes the device for <see cref="HypercallCode.DeviceInfo"/> (the ABI 1.0 discovery call).</summary>
    public DeviceInfo Describe()
    {
        var info = new DeviceInfo { Kind = (uint)Kind, Flags = (uint)CurrentFlags, MaxRingOrder = (ushort)MaxRingOrder };
        unsafe
        {
            // Safe: the name was validated as at most MaxNameLength ASCII bytes; the field has MaxNameLength + 1.
            Encoding.ASCII.GetBytes(Name, new Span<byte>(info.Name, MaxNameLength + 1));
        }
        DescribeInto(ref info);
        return info;
    }

    /// <summary>Describes the device for <see cref="HypercallCode.DeviceDescribe"/>.</summary>
    public DeviceDescriptor Descriptor()
    {
        var desc = new DeviceDescriptor
        {
            Type = (uint)Kind,
            Version = Version,
            Flags = (uint)CurrentFlags,
            QueueCount = (ushort)Queues.Count,
            MaxRingOrder = (ushort)MaxRingOrder,
            ConfigSize = (uint)ConfigSize,
        };
        unsafe
        {
            // Safe: as in Describe.
            Encoding.ASCII.GetBytes(Name, new Span<byte>(desc.Name, MaxNameLength + 1));
        }
        return desc;
    }

    /// <summary>Flags the guest sees (without <see cref="DeviceFlags.Broken"/>, which the host adds when broken).</summary>
    protected virtual DeviceFlags Flags => DeviceFlags.None;

    /// <summary>Bytes of configuration the guest reads with <see cref="HypercallCode.DeviceConfig"/> (at most <see cref="DeviceTypes.MaxConfigSize"/>; 0 unless overridden).</summary>
    protected virtual int ConfigSize => 0;

    /// <summary>Writes the configuration into <paramref name="config"/> (exactly <see cref="ConfigSize"/> bytes, zeroed), e.g. with <c>MemoryMarshal.Write</c> of an unmanaged struct.</summary>
    protected virtual void WriteConfig(Span<byte> config)
    {
    }

    /// <summary>The session the device is attached to, or null.</summary>
    protected GuestSession? Session => _session;

    /// <summary>The device's queues as the guest shared them, or null while detached.</summary>
    protected DeviceActivation? Activation => _activation;

    /// <summary>
    /// Activate: the guest shared the queues (validated by the host, see <see cref="DeviceActivation"/>); open the
    /// rings (<see cref="DeviceActivation.OpenRing{TRequest, TResponse}"/>) and keep them. Return
    /// <see cref="HypercallStatus.Ok"/>, or an error status the guest gets from its attach call (the device then stays
    /// detached and <see cref="OnReset"/> is called). vCPU thread.
    /// </summary>
    protected abstract HypercallStatus OnActivate(DeviceActivation activation);

    /// <summary>
    /// The guest rang the doorbell of <paramref name="queue"/> (<see cref="HypercallCode.EventSend"/> on its port):
    /// process its requests. When several queues share one port (the ABI 1.0 attach calls), each is notified. vCPU
    /// thread, attached, not broken.
    /// </summary>
    protected abstract void OnNotify(GuestSession session, int queue);

    /// <summary>Delivers host-side work queued by other threads (after <see cref="RequestPump"/>; also at every poll). vCPU thread, attached, not broken; cheap when idle.</summary>
    protected virtual void OnPump(GuestSession session)
    {
    }

    /// <summary>
    /// The run ended (the guest exited, crashed or was stopped): deliver what the guest produced last. Wait for slow
    /// consumers at most until <paramref name="drainDeadline"/> (a <see cref="System.Diagnostics.Stopwatch"/>
    /// timestamp). vCPU thread, guest stopped, attached, not broken; by default one more <see cref="OnPump"/>.
    /// </summary>
    protected virtual void OnStop(GuestSession session, long drainDeadline) => OnPump(session);

    /// <summary>
    /// Reset: drop every reference to guest memory (rings, pages); the guest may attach again. Called for
    /// <see cref="HypercallCode.DeviceReset"/>, when <see cref="OnActivate"/> failed, and when a snapshot restore
    /// returns the device to a detached state. Host-side queues (received frames, input) may be kept. vCPU thread.
    /// </summary>
    protected virtual void OnReset()
    {
    }

    /// <summary>
    /// The device's own state for a snapshot (called only when <see cref="SupportsSnapshots"/>; vCPU thread, guest
    /// stopped): what it keeps about the guest's shared memory (ring positions: <see cref="SharedRing{TRequest, TResponse}"/>
    /// indices start from the guest's <c>rsp_prod</c>, so a device that answers every request at once may re-open its
    /// rings in <see cref="LoadState"/> instead) and its host-side state. Return an immutable value or a copy:
    /// one snapshot may be loaded many times.
    /// </summary>
    protected virtual object? SaveState() => null;

    /// <summary>
    /// Returns the device to a state <see cref="SaveState"/> took (of this device, or of the same-named device of the
    /// sandbox the snapshot came from). <paramref name="activation"/> is the queues as they were shared then (the
    /// guest memory already holds the snapshot's contents), or null when the device was detached (after
    /// <see cref="OnReset"/>). vCPU thread, guest stopped.
    /// </summary>
    protected virtual void LoadState(object? state, DeviceActivation? activation)
    {
    }

    /// <summary>Asks the vCPU thread to call <see cref="OnPump"/> soon (thread-safe; no-op before attach).</summary>
    protected void RequestPump() => _session?.RequestPump();

    /// <summary>Signals the event port of <paramref name="queue"/> to the guest (vCPU thread, attached).</summary>
    protected void Notify(GuestSession session, int queue)
    {
        ArgumentNullException.ThrowIfNull(session);
        if (_activation is { } a && (uint)queue < (uint)a.QueueCount)
        {
            session.SignalEvents(1UL << a.Port(queue));
        }
    }

    /// <summary>Marks the device broken: the guest corrupted shared state. The device stops; the host keeps running.</summary>
    protected void MarkBroken(string reason)
    {
        if (!_broken)
        {
            BrokenReason = reason;
            _broken = true;
            _session?.OnDeviceBroken(this, reason);
        }
    }

    /// <summary>Fills the ABI 1.0 <see cref="DeviceInfo"/>'s kind-specific fields.</summary>
    private protected virtual void DescribeInto(ref DeviceInfo info)
    {
    }

    private DeviceFlags CurrentFlags => _broken ? Flags | DeviceFlags.Broken : Flags;

    private uint MaxRingOrder
    {
        get
        {
            uint max = 0;
            foreach (DeviceQueue q in Queues)
            {
                max = Math.Max(max, q.MaxOrder);
            }
            return max;
        }
    }

    /// <summary>Writes the configuration (<see cref="HypercallCode.DeviceConfig"/>) into <paramref name="destination"/>, which is <see cref="ConfigSize"/> bytes.</summary>
    internal void ReadConfig(Span<byte> destination)
    {
        destination.Clear();
        WriteConfig(destination);
    }

    /// <summary>The configuration size as the host checked it at the start of the run.</summary>
    internal int ConfigBytes => ConfigSize;

    /// <summary>
    /// Attaches the guest's queues: validates each (a pass for alignment and order, one for memory, one for overlap,
    /// so a guest sees the same status whichever queue is wrong), binds <paramref name="ports"/> and activates the
    /// device. Returns 0 or a negative status. vCPU thread.
    /// </summary>
    internal long Attach(GuestSession session, ReadOnlySpan<QueueDescriptor> queues, ReadOnlySpan<int> ports)
    {
        if (_broken)
        {
            return (long)HypercallStatus.Broken;
        }
        if (_session is not null)
        {
            return (long)HypercallStatus.Busy;
        }
        IReadOnlyList<DeviceQueue> specs = Queues;
        if (queues.Length != specs.Count || ports.Length != specs.Count)
        {
            return (long)HypercallStatus.Invalid;
        }
        for (int i = 0; i < queues.Length; i++)
        {
            DeviceQueue spec = specs[i];
            if (queues[i].Address % EntryConvention.PageSize != 0 || queues[i].Order > spec.MaxOrder)
            {
                return (long)HypercallStatus.Invalid;
            }
        }
        for (int i = 0; i < queues.Length; i++)
        {
            if (!session.Memory.Contains(new GuestAddress(queues[i].Address), specs[i].ByteSize(queues[i].Order)))
            {
                return (long)HypercallStatus.Fault;
            }
        }
        for (int i = 0; i < queues.Length; i++)
        {
            for (int j = i + 1; j < queues.Length; j++)
            {
                // Both ranges lie inside guest memory (checked above), so the sums cannot overflow.
                ulong a = queues[i].Address, aEnd = a + specs[i].ByteSize(queues[i].Order);
                ulong b = queues[j].Address, bEnd = b + specs[j].ByteSize(queues[j].Order);
                if (a < bEnd && b < aEnd)
                {
                    return (long)HypercallStatus.Invalid;
                }
            }
        }
        var bindings = new QueueBinding[queues.Length];
        for (int i = 0; i < bindings.Length; i++)
        {
            bindings[i] = new QueueBinding(queues[i].Address, queues[i].Order, ports[i]);
        }
        var activation = new DeviceActivation(session, [.. specs], bindings);
        _session = session; // OnActivate may use Session and RequestPump
        HypercallStatus status = OnActivate(activation);
        if (status != HypercallStatus.Ok)
        {
            _session = null;
            OnReset();
            return status < 0 ? (long)status : (long)HypercallStatus.Invalid;
        }
        _activation = activation;
        Pump(session);
        return _broken ? (long)HypercallStatus.Broken : 0;
    }

    /// <summary>Detaches (<see cref="HypercallCode.DeviceReset"/>). vCPU thread.</summary>
    internal long Reset()
    {
        if (_broken)
        {
            return (long)HypercallStatus.Broken;
        }
        if (_session is not null)
        {
            _session = null;
            _activation = null;
            OnReset();
        }
        return 0;
    }

    /// <summary>True when one of the device's queues is bound to event port <paramref name="port"/>.</summary>
    internal bool UsesPort(int port)
    {
        if (_activation is { } a)
        {
            for (int q = 0; q < a.QueueCount; q++)
            {
                if (a.Port(q) == port)
                {
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>The event ports the device's queues hold (empty while detached).</summary>
    internal ulong PortMask
    {
        get
        {
            ulong mask = 0;
            if (_activation is { } a)
            {
                for (int q = 0; q < a.QueueCount; q++)
                {
                    mask |= 1UL << a.Port(q);
                }
            }
            return mask;
        }
    }

    /// <summary>
    /// The guest rang the doorbell on <paramref name="port"/>: notifies every queue bound to it. Runs on the vCPU
    /// thread. Returns 0 or <see cref="HypercallStatus.Broken"/>.
    /// </summary>
    internal long Doorbell(GuestSession session, int port)
    {
        DeviceActivation? activation = _activation;
        for (int q = 0; activation is not null && q < activation.QueueCount && !_broken; q++)
        {
            if (activation.Port(q) == port && ReferenceEquals(session, _session))
            {
                OnNotify(session, q);
            }
        }
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

    /// <summary>The run ended: see <see cref="OnStop"/>.</summary>
    internal void Stop(GuestSession session, long drainDeadline)
    {
        if (!_broken && ReferenceEquals(session, _session))
        {
            OnStop(session, drainDeadline);
        }
    }

    /// <summary>
    /// The device's state as a snapshot needs it: attachment (queues and ports), broken state, and the device's own
    /// (<see cref="SaveState"/>). vCPU thread, guest stopped.
    /// </summary>
    /// <exception cref="DeviceSnapshotException">The device is attached and does not support snapshots.</exception>
    internal DeviceState Save()
    {
        bool attached = _session is not null && _activation is not null;
        if (attached && !SupportsSnapshots)
        {
            throw new DeviceSnapshotException(Name, $"device '{Name}' ({GetType().Name}) is attached and does not support snapshots (it does not override SupportsSnapshots/SaveState)");
        }
        return new DeviceState(Kind, Name, attached ? [.. _activation!.Bindings] : null, _broken, BrokenReason, SupportsSnapshots ? SaveState() : null);
    }

    /// <summary>
    /// Returns the device to <paramref name="state"/> (taken from this device or one of the same kind and name, e.g. of
    /// the sandbox a snapshot came from) in <paramref name="session"/>, whose memory already holds the snapshot's
    /// contents. Work queued on the host side (received frames, console input not yet delivered) is kept.
    /// </summary>
    internal void Load(DeviceState state, GuestSession session)
    {
        if (state.Kind != Kind || state.Name != Name)
        {
            throw new ArgumentException($"a snapshot of device {state.Kind} '{state.Name}' cannot be loaded into {Kind} '{Name}'", nameof(state));
        }
        if (_session is not null)
        {
            _session = null;
            _activation = null;
            OnReset();
        }
        _broken = state.Broken;
        BrokenReason = state.BrokenReason;
        DeviceActivation? activation = state.Queues is { } queues ? new DeviceActivation(session, [.. Queues], [.. queues]) : null;
        if (activation is not null)
        {
            _session = session;
            _activation = activation;
        }
        if (SupportsSnapshots)
        {
            LoadState(state.DeviceOwnState, activation);
        }
    }

    /// <summary>Releases the device's host resources (files, backends, input readers): the end of its lifecycle.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    /// <summary>Checks what the host declares about a device before a run (a bug in the device, not the guest).</summary>
    internal void ValidateDeclaration()
    {
        if (Queues is not { } queues || queues.Count > DeviceTypes.MaxQueues)
        {
            throw new ArgumentException($"device '{Name}' declares {Queues?.Count} queues; a device has at most {DeviceTypes.MaxQueues}");
        }
        if (ConfigSize is < 0 or > (int)DeviceTypes.MaxConfigSize)
        {
            throw new ArgumentException($"device '{Name}' declares {ConfigSize} configuration bytes; at most {DeviceTypes.MaxConfigSize}");
        }
        if ((uint)Kind is (> (uint)DeviceKind.Net and < DeviceTypes.UserFirst) or 0)
        {
            throw new ArgumentException($"device '{Name}' has type 0x{(uint)Kind:x}; a user-defined device type is at least 0x{DeviceTypes.UserFirst:x} (DeviceTypes.UserFirst)");
        }
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

/// <summary>A device's state in a snapshot (<see cref="VirtualDevice.Save"/>): null queues when detached.</summary>
internal sealed record DeviceState(DeviceKind Kind, string Name, QueueBinding[]? Queues, bool Broken, string? BrokenReason, object? DeviceOwnState);

/// <summary>
/// A snapshot cannot include a device: it is attached and does not support snapshots
/// (<see cref="VirtualDevice.SupportsSnapshots"/>). The sandbox is unchanged; detach the device first
/// (<see cref="HypercallCode.DeviceReset"/>) or implement <c>SaveState</c>/<c>LoadState</c>.
/// </summary>
public sealed class DeviceSnapshotException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public DeviceSnapshotException(string deviceName, string message) : base(message) => DeviceName = deviceName;
    /// <summary>Creates the exception.</summary>
    public DeviceSnapshotException() { }
    /// <summary>Creates the exception.</summary>
    public DeviceSnapshotException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public DeviceSnapshotException(string message, Exception inner) : base(message, inner) { }

    /// <summary>The device that refused.</summary>
    public string? DeviceName { get; }
}

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
