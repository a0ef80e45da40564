namespace Paravirt.Hypervisor.Devices;

/// <summary>
/// One queue a device owns: what the guest shares for it with <see cref="HypercallCode.DeviceAttach"/> (one
/// <see cref="QueueDescriptor"/> each, in the order of <see cref="VirtualDevice.Queues"/>). A queue is either a
/// shared request/response ring of fixed-size slots (<see cref="Ring{TRequest, TResponse}"/>: block requests, net
/// frames, a user device's requests) or a fixed region (<see cref="Region"/>: the console page). Each queue gets its
/// own event port.
/// </summary>
public sealed class DeviceQueue
{
    private DeviceQueue(string name, uint slotSize, uint maxOrder, uint regionSize)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        SlotSize = slotSize;
        MaxOrder = Math.Min(maxOrder, RingConstants.MaxOrder);
        RegionSize = regionSize;
    }

    /// <summary>A name for messages (e.g. "tx", "requests").</summary>
    public string Name { get; }

    /// <summary>Bytes per ring slot (the larger of the request and response); 0 for a region.</summary>
    public uint SlotSize { get; }

    /// <summary>Largest ring order the host accepts (at most <see cref="RingConstants.MaxOrder"/>); 0 for a region.</summary>
    public uint MaxOrder { get; }

    /// <summary>Bytes of a region queue; 0 for a ring.</summary>
    public uint RegionSize { get; }

    /// <summary>True for a ring, false for a region.</summary>
    public bool IsRing => SlotSize != 0;

    /// <summary>
    /// A request/response ring: a <see cref="RingHeader"/> followed by <c>2^order</c> slots, each holding a
    /// <typeparamref name="TRequest"/> from the guest or the <typeparamref name="TResponse"/> the host writes over it.
    /// </summary>
    /// <param name="name">A name for messages.</param>
    /// <param name="maxOrder">Largest order the guest may choose (clamped to <see cref="RingConstants.MaxOrder"/>).</param>
    public static DeviceQueue Ring<TRequest, TResponse>(string name, uint maxOrder = RingConstants.MaxOrder)
        where TRequest : unmanaged
        where TResponse : unmanaged =>
        new(name, (uint)Math.Max(Unsafe.SizeOf<TRequest>(), Unsafe.SizeOf<TResponse>()), maxOrder, 0);

    /// <summary>A fixed region of <paramref name="size"/> bytes (the guest passes order 0).</summary>
    /// <param name="name">A name for messages.</param>
    /// <param name="size">Bytes, 1 to 64 KiB.</param>
    public static DeviceQueue Region(string name, uint size)
    {
        ArgumentOutOfRangeException.ThrowIfZero(size);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, 64u * 1024);
        return new(name, 0, 0, size);
    }

    /// <summary>Bytes the queue occupies in guest memory at <paramref name="order"/> (checked by the caller against <see cref="MaxOrder"/>).</summary>
    internal ulong ByteSize(uint order) => IsRing ? Rings.SharedRing.ByteSize(order, SlotSize) : RegionSize;
}
