namespace Paravirt.Hypervisor.Linux;

/// <summary>Names of Linux x86-64 system calls, for messages about the ones the Linux personality does not implement.</summary>
public static partial class LinuxSyscallNames
{
    /// <summary>The system call's name (<c>rseq</c>), or null for a number Linux does not define.</summary>
    public static string? Get(ulong number) => number < (ulong)s_names.Length ? s_names[number] : null;

    /// <summary>"334 (rseq)", or just the number.</summary>
    public static string Describe(ulong number) => Get(number) is string name ? $"{number} ({name})" : number.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
