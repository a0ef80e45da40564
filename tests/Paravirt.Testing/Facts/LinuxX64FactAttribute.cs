using System.Runtime.InteropServices;

namespace Paravirt.Testing;

/// <summary>A fact that runs x86-64 code natively (a guest on the host CPU, gcc's x86-64 output): skipped off Linux x86-64.</summary>
public sealed class LinuxX64FactAttribute : FactAttribute
{
    /// <summary>Null on Linux x86-64, else why a native x86-64 test cannot run here.</summary>
    public static string? Unavailable { get; } = OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64
        ? null
        : $"runs x86-64 code natively: needs Linux on x86-64 (this is {RuntimeInformation.OSDescription}, {RuntimeInformation.ProcessArchitecture})";

    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the host is not Linux x86-64.</summary>
    public LinuxX64FactAttribute() => Skip = Unavailable;
}
