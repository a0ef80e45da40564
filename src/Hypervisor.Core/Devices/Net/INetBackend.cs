namespace Paravirt.Hypervisor.Devices.Net;

/// <summary>
/// Receives a frame from a network backend. Called on the backend's thread; the frame is only valid during the
/// call (copy it). Returns false when the frame was dropped (the receiver's queue is full).
/// </summary>
public delegate bool NetFrameReceiver(ReadOnlySpan<byte> frame);

/// <summary>
/// Where a <see cref="NetDevice"/>'s frames go and come from: a port of an in-memory <see cref="NetSwitch"/>, or a
/// Linux <see cref="TapBackend"/>. One backend per device; the device owns and disposes it.
/// </summary>
public interface INetBackend : IDisposable
{
    /// <summary>
    /// Starts delivering received frames to <paramref name="receiver"/> (on any thread). Called once, when the
    /// device is created, with the MAC address the host assigned to the device: a backend that switches frames binds
    /// its port to it (a <see cref="NetSwitch"/> port accepts only frames from that source MAC and delivers to it
    /// only frames for it or for everyone).
    /// </summary>
    /// <exception cref="DeviceConfigurationException">The backend cannot take this MAC (another port has it).</exception>
    void Start(NetFrameReceiver receiver, System.Net.NetworkInformation.PhysicalAddress mac);

    /// <summary>
    /// Sends one Ethernet frame (header first). Called on the vCPU thread; must not block for long. Returns false
    /// when the frame was dropped.
    /// </summary>
    bool Send(ReadOnlySpan<byte> frame);
}
