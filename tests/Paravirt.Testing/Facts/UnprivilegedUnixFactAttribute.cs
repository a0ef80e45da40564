namespace Paravirt.Testing;

/// <summary>A fact that needs file permissions to deny access: skipped, visibly, for root (who reads any file) and off Unix.</summary>
public sealed class UnprivilegedUnixFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> on Windows and for a privileged process.</summary>
    public UnprivilegedUnixFactAttribute()
    {
        if (OperatingSystem.IsWindows())
        {
            Skip = "needs Unix file modes";
        }
        else if (Environment.IsPrivilegedProcess)
        {
            Skip = "running as root: file permissions do not deny root, so 'permission denied' cannot be produced";
        }
    }
}
