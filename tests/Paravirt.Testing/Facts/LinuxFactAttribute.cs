namespace Paravirt.Testing;

/// <summary>A fact that needs Linux (POSIX signals, kill(1), /proc): skipped elsewhere with the reason.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> off Linux.</summary>
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux())
        {
            Skip = "needs Linux (POSIX signals, kill(1), /proc)";
        }
    }
}
