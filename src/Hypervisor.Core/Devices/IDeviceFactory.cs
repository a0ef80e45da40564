namespace Paravirt.Hypervisor.Devices;

/// <summary>
/// Creates a device for each guest run (registered with <c>ParavirtBuilder.AddDevice</c>). The runner disposes
/// what it creates when the run ends, so a device that owns a file or a TAP interface holds it only while a guest runs.
/// </summary>
public interface IDeviceFactory
{
    /// <summary>Creates a fresh device for one run.</summary>
    VirtualDevice Create();
}
