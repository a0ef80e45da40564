namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// Runs guests on Linux KVM through <c>/dev/kvm</c>: guest memory registered as one memory slot, a vCPU started in
/// flat 64-bit long mode, port writes as <c>KVM_EXIT_IO</c> exits, registers read and written through the
/// <c>kvm_run</c> sync-register area (no extra ioctl per hypercall).
/// </summary>
/// <remarks>
/// Needs Linux on x86-64, read/write access to <c>/dev/kvm</c>, KVM API 12 with <c>KVM_CAP_USER_MEMORY</c>,
/// <c>KVM_CAP_SYNC_REGS</c> and <c>KVM_CAP_IMMEDIATE_EXIT</c> (Linux 4.17 or later). <see cref="Probe"/> says
/// what is missing. The vCPU runs on the thread that calls <see cref="IVcpu.Run"/>; <see cref="IVcpu.Interrupt"/>
/// kicks it with the real-time signal <c>SIGRTMIN + 6</c>, whose no-op handler the backend installs once.
/// </remarks>
public sealed class KvmBackend : IHypervisorBackend
{
    /// <summary>The backend's name: <c>kvm</c>.</summary>
    public const string BackendName = "kvm";

    /// <inheritdoc/>
    public string Name => BackendName;

    /// <inheritdoc/>
    /// <remarks>
    /// With hardware virtualization the guest owns the whole CPU (<see cref="BackendCapabilities.SupervisorMode"/>) and
    /// takes injected interrupts through its own IDT (the user-space irqchip protocol, <c>KVM_INTERRUPT</c>). Not under
    /// kvm_pvm: PVM runs the guest at hardware CPL 3 and delivers events only to PVM-aware guest kernels. Both flavours
    /// keep a dirty log (<c>KVM_GET_DIRTY_LOG</c>, <see cref="BackendCapabilities.DirtyPageTracking"/>), hardware paging
    /// (<see cref="BackendCapabilities.PageTables"/>) and guest debugging through <c>KVM_SET_GUEST_DEBUG</c> (in every x86
    /// KVM since Linux 2.6.29; under PVM breakpoints and steps go through the default exception handlers instead).
    /// </remarks>
    public BackendCapabilities Capabilities =>
        BackendCapabilities.DirtyPageTracking | BackendCapabilities.PageTables | BackendCapabilities.GuestDebug
        | (OperatingSystem.IsLinux() && KvmPvm.ServesDevKvm() ? BackendCapabilities.None : BackendCapabilities.SupervisorMode | BackendCapabilities.InterruptInjection);

    /// <summary>Opens <c>/dev/kvm</c> and checks the API version and the capabilities the backend needs.</summary>
    /// <returns>Available with a short description, or unavailable with why and what to do.</returns>
    public BackendAvailability Probe()
    {
        if (!OperatingSystem.IsLinux())
        {
            return BackendAvailability.Unavailable("KVM needs Linux");
        }
        return ProbeLinux();
    }

    [SupportedOSPlatform("linux")]
    private static BackendAvailability ProbeLinux()
    {
        using Kvm? kvm = Kvm.TryOpen(out string reason);
        return kvm is null ? BackendAvailability.Unavailable(reason) : BackendAvailability.Available(reason);
    }

    /// <inheritdoc/>
    public IVirtualMachine CreateVirtualMachine(GuestMemory memory, VirtualMachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(options);
        if (!OperatingSystem.IsLinux())
        {
            throw new BackendUnavailableException("KVM is not available: KVM needs Linux");
        }
        return KvmVm.Create(Kvm.Open(), memory, options);
    }
}
