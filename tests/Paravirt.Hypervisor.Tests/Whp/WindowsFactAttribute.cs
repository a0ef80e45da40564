using Paravirt.Hypervisor.Backends.Whp;

namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>A fact that runs only on Windows with the Windows Hypervisor Platform enabled, and is skipped with a visible reason elsewhere.</summary>
public sealed class WindowsFactAttribute : FactAttribute
{
    /// <summary>The skip reason everywhere else.</summary>
    public const string Reason = "needs Windows with the Windows Hypervisor Platform feature";

    /// <summary>Sets <see cref="FactAttribute.Skip"/> unless the WHP backend probes as available.</summary>
    public WindowsFactAttribute()
    {
        if (!OperatingSystem.IsWindows() || !new WhpBackend().Probe().IsAvailable)
        {
            Skip = Reason;
        }
    }
}
