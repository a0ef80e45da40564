using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Paravirt.Emulator.Tests;

/// <summary>CPU features of the machine running the tests, from CPUID (what a differential test needs natively).</summary>
internal static class HostCpu
{
    /// <summary>True when the host has <paramref name="feature"/> (names as in /proc/cpuinfo: ssse3, sse4_1, sse4_2, popcnt, bmi1, bmi2, adx, movbe, rdtscp, lzcnt).</summary>
    public static bool Has(string feature)
    {
        if (!X86Base.IsSupported)
        {
            return false;
        }
        (int _, int _, int ecx1, int edx1) = X86Base.CpuId(1, 0);
        (int _, int ebx7, int _, int _) = X86Base.CpuId(7, 0);
        (int _, int _, int ecx81, int edx81) = X86Base.CpuId(unchecked((int)0x8000_0001), 0);
        static bool Bit(int reg, int bit) => (reg & (1 << bit)) != 0;
        return feature switch
        {
            "sse3" => Bit(ecx1, 0),
            "ssse3" => Bit(ecx1, 9),
            "sse4_1" => Bit(ecx1, 19),
            "sse4_2" => Bit(ecx1, 20),
            "movbe" => Bit(ecx1, 22),
            "popcnt" => Bit(ecx1, 23),
            "fpu" => Bit(edx1, 0),
            "bmi1" => Bit(ebx7, 3),
            "bmi2" => Bit(ebx7, 8),
            "adx" => Bit(ebx7, 19),
            "lzcnt" => Bit(ecx81, 5),
            "rdtscp" => Bit(edx81, 27),
            _ => throw new ArgumentException($"unknown feature {feature}", nameof(feature)),
        };
    }
}

/// <summary>A differential fact that needs x86-64 Linux and the named host CPU features; skipped with the reason otherwise.</summary>
public sealed class NativeX64WithFactAttribute : FactAttribute
{
    public NativeX64WithFactAttribute(params string[] features)
    {
        if (LinuxX64FactAttribute.Unavailable is { } reason)
        {
            Skip = reason;
            return;
        }
        string[] missing = [.. features.Where(f => !HostCpu.Has(f))];
        if (missing.Length > 0)
        {
            Skip = $"the host CPU lacks {string.Join(", ", missing)}: the instructions cannot be compared with it";
        }
    }
}
