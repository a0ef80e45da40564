using System.Runtime.InteropServices;

namespace Paravirt.Abi.Tests;

/// <summary>A fact that runs guest code natively on the host CPU: it needs Linux on x86-64, and is skipped elsewhere.</summary>
public sealed class LinuxX64FactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the host is not Linux x86-64.</summary>
    public LinuxX64FactAttribute()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Skip = $"runs guest code natively: needs Linux x86-64 (this is {RuntimeInformation.OSDescription}, {RuntimeInformation.ProcessArchitecture})";
        }
    }
}
