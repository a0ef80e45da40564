using Paravirt.Hypervisor.Devices.Block;
using Paravirt.Hypervisor.Devices.Console;
using Paravirt.Hypervisor.Devices.Net;

namespace Paravirt.Hypervisor.Devices;

/// <summary>
/// The device hypercalls. The generic device model (ABI 1.1, <see cref="FeatureBits.DeviceModel"/>): discovery
/// (<see cref="HypercallCode.DeviceDescribe"/>, <see cref="HypercallCode.DeviceConfig"/>), one attach for every
/// device (<see cref="HypercallCode.DeviceAttach"/>: a queue descriptor per queue, an event port per queue) and
/// <see cref="HypercallCode.DeviceReset"/>. The ABI 1.0 calls stay for old guests and take the same path:
/// <see cref="HypercallCode.DeviceInfo"/>, and the per-kind attach calls, which bind every queue of the device to
/// one port, the device's index. The doorbell is <see cref="HypercallCode.EventSend"/>. The devices are the run's
/// (<see cref="GuestSession.Devices"/>).
/// </summary>
/// <remarks>
/// Event ports: queue 0 of device <c>i</c> is bound to port <c>i</c> (so the ABI 1.0 rule "a device's index is its
/// event port" still holds); a device's further queues get the lowest ports no device index and no attached queue
/// holds. A device releases its ports when it is reset.
/// </remarks>
internal sealed class DeviceHypercalls : IHypercallProvider
{
    public bool IsBuiltIn => true;

    public IEnumerable<HypercallRegistration> GetHypercalls() =>
    [
        new((uint)HypercallCode.DeviceInfo, "device_info", DeviceInfo),
        new((uint)HypercallCode.ConsoleAttach, "console_attach", ConsoleAttach),
        new((uint)HypercallCode.BlockAttach, "block_attach", BlockAttach),
        new((uint)HypercallCode.NetAttach, "net_attach", NetAttach),
        new((uint)HypercallCode.EventSend, "event_send", EventSend),
        new((uint)HypercallCode.DeviceDescribe, "device_describe", DeviceDescribe),
        new((uint)HypercallCode.DeviceConfig, "device_config", DeviceConfig),
        new((uint)HypercallCode.DeviceAttach, "device_attach", DeviceAttach),
        new((uint)HypercallCode.DeviceReset, "device_reset", DeviceReset),
    ];

    private static unsafe long DeviceInfo(in HypercallArgs args, GuestSession session)
    {
        if (args.A1 >= (ulong)session.Devices.Count)
        {
            return (long)HypercallStatus.NoDevice;
        }
        if (args.A3 < (ulong)sizeof(Abi.DeviceInfo))
        {
            return (long)HypercallStatus.Invalid;
        }
        Abi.DeviceInfo info = session.Devices[(int)args.A1].Describe();
        return session.Memory.TryWrite(new GuestAddress(args.A2), in info) ? sizeof(Abi.DeviceInfo) : (long)HypercallStatus.Fault;
    }

    private static unsafe long DeviceDescribe(in HypercallArgs args, GuestSession session)
    {
        if (args.A1 >= (ulong)session.Devices.Count)
        {
            return (long)HypercallStatus.NoDevice;
        }
        if (args.A3 < (ulong)sizeof(DeviceDescriptor))
        {
            return (long)HypercallStatus.Invalid;
        }
        DeviceDescriptor desc = session.Devices[(int)args.A1].Descriptor();
        return session.Memory.TryWrite(new GuestAddress(args.A2), in desc) ? sizeof(DeviceDescriptor) : (long)HypercallStatus.Fault;
    }

    private static long DeviceConfig(in HypercallArgs args, GuestSession session)
    {
        if (args.A1 >= (ulong)session.Devices.Count)
        {
            return (long)HypercallStatus.NoDevice;
        }
        VirtualDevice device = session.Devices[(int)args.A1];
        int size = device.ConfigBytes; // checked against MaxConfigSize when the run started
        if (args.A3 < (ulong)size)
        {
            return (long)HypercallStatus.Invalid;
        }
        Span<byte> config = stackalloc byte[(int)DeviceTypes.MaxConfigSize];
        device.ReadConfig(config[..size]);
        return session.Memory.TryWrite(new GuestAddress(args.A2), config[..size]) ? size : (long)HypercallStatus.Fault;
    }

    private static unsafe long DeviceAttach(in HypercallArgs args, GuestSession session)
    {
        if (args.A1 >= (ulong)session.Devices.Count)
        {
            return (long)HypercallStatus.NoDevice;
        }
        VirtualDevice device = session.Devices[(int)args.A1];
        if (args.A3 == 0 || args.A3 > DeviceTypes.MaxQueues || args.A3 != (ulong)device.Queues.Count)
        {
            return (long)HypercallStatus.Invalid;
        }
        int count = (int)args.A3;
        // The descriptors are copied out of guest memory once; the copy is validated and used.
        Span<QueueDescriptor> queues = stackalloc QueueDescriptor[count];
        var address = new GuestAddress(args.A2);
        if (!session.Memory.TryRead(address, MemoryMarshal.AsBytes(queues)))
        {
            return (long)HypercallStatus.Fault;
        }
        if (device.IsBroken)
        {
            return (long)HypercallStatus.Broken;
        }
        if (device.IsAttached)
        {
            return (long)HypercallStatus.Busy;
        }
        Span<int> ports = stackalloc int[count];
        if (!AllocatePorts(session, (int)args.A1, ports))
        {
            return (long)HypercallStatus.NoSpace;
        }
        long status = device.Attach(session, queues, ports);
        if (status < 0)
        {
            return status;
        }
        for (int i = 0; i < count; i++)
        {
            queues[i].Port = (uint)ports[i];
        }
        // The range was readable a moment ago and guest memory does not shrink: the write back cannot fail.
        session.Memory.Write(address, MemoryMarshal.AsBytes(queues));
        return 0;
    }

    private static long DeviceReset(in HypercallArgs args, GuestSession session) =>
        args.A1 >= (ulong)session.Devices.Count ? (long)HypercallStatus.NoDevice : session.Devices[(int)args.A1].Reset();

    /// <summary>Queue 0 gets the device's index; the others the lowest ports that no device index and no attached queue holds.</summary>
    private static bool AllocatePorts(GuestSession session, int index, Span<int> ports)
    {
        IReadOnlyList<VirtualDevice> devices = session.Devices;
        ulong used = devices.Count >= 64 ? ulong.MaxValue : (1UL << devices.Count) - 1;
        for (int i = 0; i < devices.Count; i++)
        {
            used |= devices[i].PortMask;
        }
        ports[0] = index;
        for (int q = 1; q < ports.Length; q++)
        {
            ulong free = ~used;
            if (free == 0)
            {
                return false;
            }
            int port = System.Numerics.BitOperations.TrailingZeroCount(free);
            ports[q] = port;
            used |= 1UL << port;
        }
        return true;
    }

    private static long ConsoleAttach(in HypercallArgs args, GuestSession session) =>
        Find<ConsoleDevice>(session, args.A1, out long status) is { } d ? AttachLegacy(session, d, (int)args.A1, [new QueueDescriptor { Address = args.A2 }]) : status;

    private static long BlockAttach(in HypercallArgs args, GuestSession session) =>
        Find<BlockDevice>(session, args.A1, out long status) is { } d
            ? AttachLegacy(session, d, (int)args.A1, [new QueueDescriptor { Address = args.A2, Order = Order(args.A3) }])
            : status;

    private static long NetAttach(in HypercallArgs args, GuestSession session) =>
        Find<NetDevice>(session, args.A1, out long status) is { } d
            ? AttachLegacy(session, d, (int)args.A1,
                [new QueueDescriptor { Address = args.A2, Order = Order(args.A4) }, new QueueDescriptor { Address = args.A3, Order = Order(args.A4) }])
            : status;

    /// <summary>A 64-bit order argument as the descriptor's u32 (a huge one stays too large, never wraps to a small one).</summary>
    private static uint Order(ulong order) => (uint)Math.Min(order, uint.MaxValue);

    /// <summary>The ABI 1.0 attach: every queue on the device's index as its one port; returns the port.</summary>
    private static long AttachLegacy(GuestSession session, VirtualDevice device, int index, ReadOnlySpan<QueueDescriptor> queues)
    {
        Span<int> ports = stackalloc int[queues.Length];
        ports.Fill(index);
        long status = device.Attach(session, queues, ports);
        return status < 0 ? status : index;
    }

    private static long EventSend(in HypercallArgs args, GuestSession session)
    {
        if (args.A1 >= RingConstants.EventPorts)
        {
            return (long)HypercallStatus.Invalid;
        }
        int port = (int)args.A1;
        IReadOnlyList<VirtualDevice> devices = session.Devices;
        VirtualDevice? device = null;
        if (port < devices.Count)
        {
            // Port i belongs to device i's first queue (the common case, and every ABI 1.0 guest's).
            device = devices[port];
            if (device.IsBroken)
            {
                return (long)HypercallStatus.Broken;
            }
            if (!device.IsAttached)
            {
                return (long)HypercallStatus.BadHandle;
            }
        }
        else
        {
            for (int i = 0; i < devices.Count && device is null; i++)
            {
                if (devices[i].UsesPort(port))
                {
                    device = devices[i];
                }
            }
            if (device is null)
            {
                return (long)HypercallStatus.BadHandle;
            }
            if (device.IsBroken)
            {
                return (long)HypercallStatus.Broken;
            }
        }
        long result = device.Doorbell(session, port);
        if (session.TakePumpRequest())
        {
            session.PumpDevices();
        }
        return result;
    }

    /// <summary>Finds device <paramref name="index"/> of kind <typeparamref name="T"/>, or returns null with the status to answer.</summary>
    private static T? Find<T>(GuestSession session, ulong index, out long status)
        where T : VirtualDevice
    {
        status = 0;
        if (index >= (ulong)session.Devices.Count)
        {
            status = (long)HypercallStatus.NoDevice;
            return null;
        }
        VirtualDevice d = session.Devices[(int)index];
        if (d is not T typed)
        {
            status = (long)HypercallStatus.Invalid;
            return null;
        }
        if (d.IsBroken)
        {
            status = (long)HypercallStatus.Broken;
            return null;
        }
        return typed;
    }
}
