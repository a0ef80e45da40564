namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The emulator's CPUID: exactly the features it implements, so that glibc's and .NET's dispatchers (ifunc
/// resolvers, cpu_features, minipal) only pick code paths that exist. x86-64-v2 is complete (SSE3, SSSE3, SSE4.1,
/// SSE4.2, POPCNT, CX16, LAHF/SAHF), plus BMI1, BMI2, ADX, LZCNT, MOVBE and RDTSCP. Not advertised, and #UD when
/// executed: XSAVE/OSXSAVE (so XGETBV and the XSAVE family; glibc then saves state with FXSAVE, .NET skips AVX),
/// AVX and later, RDRAND/RDSEED (host entropy would break the emulator's determinism), AES, PCLMULQDQ, SHA.
/// MMX (part of x86-64, not emulated) is not advertised either.
/// </summary>
internal static class CpuidModel
{
    /// <summary>Vendor string of leaf 0: "ParavirtEmu!" (ebx, edx, ecx).</summary>
    public const uint VendorEbx = 0x61726150, VendorEdx = 0x74726976, VendorEcx = 0x21756D45;

    // Leaf 1 EDX
    public const uint Fpu = 1u << 0, Tsc = 1u << 4, Cx8 = 1u << 8, Cmov = 1u << 15, Fxsr = 1u << 24, Sse = 1u << 25, Sse2 = 1u << 26;
    // Leaf 1 ECX
    public const uint Sse3 = 1u << 0, Ssse3 = 1u << 9, Cx16 = 1u << 13, Sse41 = 1u << 19, Sse42 = 1u << 20, Movbe = 1u << 22, Popcnt = 1u << 23;
    // Leaf 7 subleaf 0 EBX
    public const uint Bmi1 = 1u << 3, Bmi2 = 1u << 8, Adx = 1u << 19;
    // Leaf 0x80000001 ECX / EDX
    public const uint LahfLm = 1u << 0, Abm = 1u << 5;
    public const uint Rdtscp = 1u << 27, LongMode = 1u << 29;

    public const uint Leaf1Edx = Fpu | Tsc | Cx8 | Cmov | Fxsr | Sse | Sse2;
    public const uint Leaf1Ecx = Sse3 | Ssse3 | Cx16 | Sse41 | Sse42 | Movbe | Popcnt;
    public const uint Leaf7Ebx = Bmi1 | Bmi2 | Adx;

    /// <summary>The registers CPUID returns for <paramref name="leaf"/>/<paramref name="subleaf"/> (zero for leaves beyond the maximum).</summary>
    public static (uint Eax, uint Ebx, uint Ecx, uint Edx) Query(uint leaf, uint subleaf) => leaf switch
    {
        0 => (7, VendorEbx, VendorEcx, VendorEdx),
        1 => (0x0000_0600, 0, Leaf1Ecx, Leaf1Edx),
        7 => subleaf == 0 ? (0u, Leaf7Ebx, 0u, 0u) : (0u, 0u, 0u, 0u),
        0x8000_0000 => (0x8000_0001, 0, 0, 0),
        0x8000_0001 => (0, 0, LahfLm | Abm, Rdtscp | LongMode),
        _ => (0, 0, 0, 0),
    };
}
