namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>
/// A sandbox frozen between calls (<see cref="Sandbox.Snapshot"/>): its guest memory (a base shared copy-on-write by
/// every sandbox made from it, plus the pages that differ), the vCPU's complete state, the session's negotiated
/// features, pending events, monotonic clock and armed timer, the call buffer, and each device's state (attachment,
/// ring positions, the console's end-of-input flag). <see cref="Sandbox.Restore"/> brings a sandbox back to it
/// (copying only what changed since); <see cref="Sandbox.Create(SandboxSnapshot, SandboxOptions?)"/> makes new
/// sandboxes from it without running the guest's initialization again. Immutable and thread-safe; dispose it when
/// no sandbox needs to restore it any more (sandboxes made from it keep working).
/// </summary>
public sealed class SandboxSnapshot : IDisposable
{
    internal SandboxSnapshot(GuestImage image, ulong memorySize, MemorySnapshot memory, VcpuState vcpu,
        GuestSession.State session, ulong callBuffer, uint callBufferSize,
        IReadOnlyList<Devices.DeviceState> devices)
    {
        Devices = devices;
        Image = image;
        MemorySize = memorySize;
        Memory = memory;
        Vcpu = vcpu;
        Session = session;
        CallBuffer = callBuffer;
        CallBufferSize = callBufferSize;
    }

    /// <summary>The guest image.</summary>
    public GuestImage Image { get; }

    /// <summary>Guest memory size in bytes.</summary>
    public ulong MemorySize { get; }

    /// <summary>Host bytes this snapshot holds beyond the base it shares with its lineage (the changed pages).</summary>
    public long PrivateBytes => Memory.OverlayBytes;

    internal MemorySnapshot Memory { get; }
    internal VcpuState Vcpu { get; }
    internal GuestSession.State Session { get; }
    internal ulong CallBuffer { get; }
    internal uint CallBufferSize { get; }
    internal IReadOnlyList<Devices.DeviceState> Devices { get; }

    /// <summary>Releases the snapshot's memory (sandboxes made from it, or restored to it, keep what they use).</summary>
    public void Dispose() => Memory.Dispose();
}
