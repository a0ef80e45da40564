namespace Paravirt.Testing;

/// <summary>A fact that needs /bin/sh to be a dynamically linked ELF (any glibc Linux); skipped with the reason elsewhere.</summary>
public sealed class DynamicShellFactAttribute : FactAttribute
{
    /// <summary>The dynamically linked executable the test hands to the CLI.</summary>
    public const string Shell = "/bin/sh";

    /// <summary>Sets <see cref="FactAttribute.Skip"/> when <see cref="Shell"/> is missing or not dynamically linked.</summary>
    public DynamicShellFactAttribute()
    {
        if (!File.Exists(Shell) || File.ReadAllBytes(Shell).AsSpan().IndexOf("ld-linux"u8) < 0)
        {
            Skip = $"{Shell} is not a dynamically linked ELF executable on this machine";
        }
    }
}
