using Paravirt.Hypervisor.Devices.Rings;

namespace Paravirt.Hypervisor.Devices;

/// <summary>
/// The queues a guest shared with a device, already validated by the host (page aligned, order within the queue's
/// <see cref="DeviceQueue.MaxOrder"/>, inside guest memory, no two overlapping), with the event port of each. Given to
/// <see cref="VirtualDevice.OnActivate"/>; valid until the device is reset or released.
/// </summary>
public sealed class DeviceActivation
{
    private readonly DeviceQueue[] _queues;
    private readonly QueueBinding[] _bindings;

    internal DeviceActivation(GuestSession session, DeviceQueue[] queues, QueueBinding[] bindings)
    {
        Session = session;
        _queues = queues;
        _bindings = bindings;
    }

    /// <summary>The session (guest run or sandbox) the device is attached to.</summary>
    public GuestSession Session { get; }

    /// <summary>The guest's memory.</summary>
    public GuestMemory Memory => Session.Memory;

    /// <summary>Number of queues (the device's <see cref="VirtualDevice.Queues"/> count).</summary>
    public int QueueCount => _bindings.Length;

    /// <summary>Guest-physical address of queue <paramref name="queue"/>.</summary>
    public GuestAddress Address(int queue) => new(_bindings[queue].Address);

    /// <summary>Ring order of queue <paramref name="queue"/> (0 for a region).</summary>
    public uint Order(int queue) => _bindings[queue].Order;

    /// <summary>The event port of queue <paramref name="queue"/>.</summary>
    public int Port(int queue) => _bindings[queue].Port;

    /// <summary>
    /// The host side of ring queue <paramref name="queue"/>. Its indices start from the guest's <c>rsp_prod</c>, and
    /// the host asks for a doorbell on the next request.
    /// </summary>
    /// <exception cref="ArgumentException">The queue is not a ring of <typeparamref name="TRequest"/>/<typeparamref name="TResponse"/> slots (a device bug, not a guest error).</exception>
    public SharedRing<TRequest, TResponse> OpenRing<TRequest, TResponse>(int queue)
        where TRequest : unmanaged
        where TResponse : unmanaged
    {
        DeviceQueue spec = _queues[queue];
        if (spec.SlotSize != DeviceQueue.Ring<TRequest, TResponse>("check").SlotSize)
        {
            throw new ArgumentException($"queue {queue} ('{spec.Name}') is not a ring of {typeof(TRequest).Name}/{typeof(TResponse).Name} slots", nameof(queue));
        }
        return SharedRing<TRequest, TResponse>.Open(Memory, _bindings[queue].Address, _bindings[queue].Order);
    }

    internal IReadOnlyList<QueueBinding> Bindings => _bindings;
}

/// <summary>Where one queue lies and the event port bound to it (part of a device's snapshot).</summary>
internal readonly record struct QueueBinding(ulong Address, uint Order, int Port);
