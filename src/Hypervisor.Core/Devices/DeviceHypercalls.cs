using Paravirt.Abi;
using Paravirt.Hypervisor.Devices.Block;
using Paravirt.Hypervisor.Devices.Console;
using Paravirt.Hypervisor.Devices.Net;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Devices;

/// <summary>
/// The device hypercalls: discovery (<see cref="HypercallCode.DeviceInfo"/>), the attach calls that share a
/// console page or rings, and the doorbell (<see cref="HypercallCode.EventSend"/>). The devices are the run's
/// (<see cref="GuestSession.Devices"/>); a device's index is its event port.
/// </summary>
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

    private static long ConsoleAttach(in HypercallArgs args, GuestSession session) =>
        Find(session, args.A1, out ConsoleDevice? d, out long status) ? d!.Attach(session, args.A2, (int)args.A1) : status;

    private static long BlockAttach(in HypercallArgs args, GuestSession session) =>
        Find(session, args.A1, out BlockDevice? d, out long status) ? d!.Attach(session, args.A2, args.A3, (int)args.A1) : status;

    private static long NetAttach(in HypercallArgs args, GuestSession session) =>
        Find(session, args.A1, out NetDevice? d, out long status) ? d!.Attach(session, args.A2, args.A3, args.A4, (int)args.A1) : status;

    private static long EventSend(in HypercallArgs args, GuestSession session)
    {
        if (args.A1 >= RingConstants.EventPorts)
        {
            return (long)HypercallStatus.Invalid;
        }
        if (args.A1 >= (ulong)session.Devices.Count)
        {
            return (long)HypercallStatus.BadHandle;
        }
        VirtualDevice device = session.Devices[(int)args.A1];
        if (device.IsBroken)
        {
            return (long)HypercallStatus.Broken;
        }
        if (!device.IsAttached)
        {
            return (long)HypercallStatus.BadHandle;
        }
        long result = device.Doorbell(session);
        if (session.TakePumpRequest())
        {
            session.PumpDevices();
        }
        return result;
    }

    /// <summary>Finds device <paramref name="index"/> of kind <typeparamref name="T"/>.</summary>
    private static bool Find<T>(GuestSession session, ulong index, out T? device, out long status)
        where T : VirtualDevice
    {
        device = null;
        if (index >= (ulong)session.Devices.Count)
        {
            status = (long)HypercallStatus.NoDevice;
            return false;
        }
        VirtualDevice d = session.Devices[(int)index];
        if (d is not T typed)
        {
            status = (long)HypercallStatus.Invalid;
            return false;
        }
        if (d.IsBroken)
        {
            status = (long)HypercallStatus.Broken;
            return false;
        }
        device = typed;
        status = 0;
        return true;
    }
}
