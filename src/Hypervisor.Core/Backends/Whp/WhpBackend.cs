namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// The Windows Hypervisor Platform backend (<c>WinHvPlatform.dll</c>, Windows 10 1803 or later, x64), named
/// <c>whp</c>. One partition with one virtual processor per VM; guest memory is mapped with <c>WHvMapGpaRange</c>,
/// the vCPU starts in flat 64-bit long mode set up by <see cref="LongModeSetup"/>, and port writes arrive as I/O-port
/// exits whose RIP the backend advances itself.
/// </summary>
/// <remarks>
/// One WHP VM per process: a second concurrent <see cref="CreateVirtualMachine"/> throws
/// <see cref="BackendUnavailableException"/> (WHvMapGpaRange allows one partition's memory mapping per process).
/// On other operating systems the backend compiles and probes as unavailable.
/// </remarks>
public sealed class WhpBackend : IHypervisorBackend
{
    /// <summary>The backend's name on the command line.</summary>
    public const string BackendName = "whp";

    internal const string NeedsWindows = "WHP needs Windows";
    internal const string NeedsX64 = "the WHP backend supports x64 Windows only";
    internal const string NotEnabled =
        "the Windows Hypervisor Platform feature is not enabled: enable it (Windows Features > Windows Hypervisor Platform, " +
        "or Enable-WindowsOptionalFeature -Online -FeatureName HypervisorPlatform) and reboot";

    /// <inheritdoc/>
    public string Name => BackendName;

    /// <inheritdoc/>
    public BackendCapabilities Capabilities => BackendCapabilities.SupervisorMode | BackendCapabilities.PageTables;

    /// <summary>
    /// Unavailable off Windows ("WHP needs Windows") and on non-x64 hosts; on Windows asks
    /// <c>WHvGetCapability(WHvCapabilityCodeHypervisorPresent)</c> and reports the feature as not enabled when
    /// <c>WinHvPlatform.dll</c> is missing or the hypervisor is not present.
    /// </summary>
    public BackendAvailability Probe()
    {
        if (!OperatingSystem.IsWindows())
        {
            return BackendAvailability.Unavailable(NeedsWindows);
        }
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            return BackendAvailability.Unavailable(NeedsX64);
        }
        return ProbeWindows();
    }

    /// <inheritdoc/>
    public IVirtualMachine CreateVirtualMachine(GuestMemory memory, VirtualMachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(options);
        if (!OperatingSystem.IsWindows())
        {
            throw new BackendUnavailableException(NeedsWindows);
        }
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            throw new BackendUnavailableException(NeedsX64);
        }
        BackendAvailability availability = ProbeWindows();
        if (!availability.IsAvailable)
        {
            throw new BackendUnavailableException(availability.Reason);
        }
        return WhpVirtualMachine.Create(memory);
    }

    [SupportedOSPlatform("windows")]
    private static unsafe BackendAvailability ProbeWindows()
    {
        // WHV_CAPABILITY is a 24-byte union; HypervisorPresent is its first member, a 4-byte BOOL.
        byte* capability = stackalloc byte[WhpUnionSizes.WHV_CAPABILITY];
        new Span<byte>(capability, WhpUnionSizes.WHV_CAPABILITY).Clear();
        uint written = 0;
        int hr;
        try
        {
            // Safe: the buffer is WHV_CAPABILITY-sized stack memory and its size is passed with it.
            hr = WinHvPlatform.WHvGetCapability(WHV_CAPABILITY_CODE.WHvCapabilityCodeHypervisorPresent,
                capability, WhpUnionSizes.WHV_CAPABILITY, &written);
        }
        catch (DllNotFoundException)
        {
            return BackendAvailability.Unavailable(NotEnabled);
        }
        catch (EntryPointNotFoundException)
        {
            return BackendAvailability.Unavailable(NotEnabled);
        }
        if (!WhpResult.Succeeded(hr))
        {
            return BackendAvailability.Unavailable($"{NotEnabled} ({WhpResult.Format("WHvGetCapability", hr)})");
        }
        if (*(int*)capability == 0)
        {
            return BackendAvailability.Unavailable(NotEnabled);
        }
        return BackendAvailability.Available("the Windows Hypervisor Platform is enabled and the hypervisor is present");
    }
}
