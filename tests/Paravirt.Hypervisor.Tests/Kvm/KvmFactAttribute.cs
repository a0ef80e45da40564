namespace Paravirt.Hypervisor.Tests.Kvm;

/// <summary>A test that needs a working KVM; skipped, with the probe's reason, where there is none.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class KvmFactAttribute : FactAttribute
{
    private static readonly Lazy<BackendAvailability> s_probe = new(() => new KvmBackend().Probe());

    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the KVM probe fails.</summary>
    public KvmFactAttribute()
    {
        BackendAvailability a = s_probe.Value;
        if (!a.IsAvailable)
        {
            Skip = $"KVM not available here ({a.Reason}): these run for real through tests/nested-kvm/run.sh";
        }
    }
}

/// <summary>A test that compiles C against the installed <c>linux/kvm.h</c>; skipped where gcc or the header is missing.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class KvmHeaderFactAttribute : FactAttribute
{
    /// <summary>The header the test compiles against.</summary>
    public const string Header = "/usr/include/linux/kvm.h";

    /// <summary>Sets <see cref="FactAttribute.Skip"/> when gcc or the header is missing.</summary>
    public KvmHeaderFactAttribute()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists(Header))
        {
            Skip = $"{Header} is missing (apt-get install linux-libc-dev)";
        }
        else
        {
            Skip = ToolFactAttribute.MissingTool("gcc");
        }
    }
}
