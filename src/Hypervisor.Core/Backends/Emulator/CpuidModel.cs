namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The emulator's CPUID, the one table of what it implements, so that glibc's and .NET's dispatchers (ifunc
/// resolvers, cpu_features, minipal) and guest kernels only pick code paths that exist.
/// User-level ISA: x86-64-v2 is complete (SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT, CX16, LAHF/SAHF), plus x87 (FPU), FXSR,
/// BMI1, BMI2, ADX, LZCNT, MOVBE and RDTSCP.
/// System: DE (CR4.DE), PSE and PAE paging with global pages (PGE), 1 GiB pages, NX, RDMSR/WRMSR (MSR), SYSCALL/SYSRET,
/// RD/WR FS/GS BASE (FSGSBASE), and the address sizes of leaf 0x80000008 (48 linear bits, <see cref="Mmu.PhysicalAddressBits"/>
/// physical).
/// Not advertised, and #UD when executed (or #GP where a control bit would enable them): XSAVE/OSXSAVE (so XGETBV and
/// the XSAVE family; glibc then saves state with FXSAVE, .NET skips AVX), AVX and later, RDRAND/RDSEED (host entropy
/// would break the emulator's determinism), AES, PCLMULQDQ, SHA, SYSENTER, PCID/INVPCID, SMEP/SMAP, APIC, MTRR, PAT.
/// MMX (part of x86-64, not emulated) is not advertised either.
/// </summary>
internal static class CpuidModel
{
    /// <summary>Vendor string of leaf 0: "ParavirtEmu!" (ebx, edx, ecx).</summary>
    public const uint VendorEbx = 0x61726150, VendorEdx = 0x74726976, VendorEcx = 0x21756D45;

    /// <summary>Highest basic and extended leaves.</summary>
    public const uint MaxLeaf = 7, MaxExtendedLeaf = 0x8000_0008;

    // Leaf 1 EDX
    public const uint Fpu = 1u << 0, De = 1u << 2, Pse = 1u << 3, Tsc = 1u << 4, Msr = 1u << 5, Pae = 1u << 6, Cx8 = 1u << 8,
        Pge = 1u << 13, Cmov = 1u << 15, Fxsr = 1u << 24, Sse = 1u << 25, Sse2 = 1u << 26;
    // Leaf 1 ECX
    public const uint Sse3 = 1u << 0, Ssse3 = 1u << 9, Cx16 = 1u << 13, Sse41 = 1u << 19, Sse42 = 1u << 20, Movbe = 1u << 22, Popcnt = 1u << 23;
    // Leaf 7 subleaf 0 EBX
    public const uint FsGsBase = 1u << 0, Bmi1 = 1u << 3, Bmi2 = 1u << 8, Adx = 1u << 19;
    // Leaf 0x80000001 ECX / EDX
    public const uint LahfLm = 1u << 0, Abm = 1u << 5;
    public const uint Syscall = 1u << 11, Nx = 1u << 20, Page1Gb = 1u << 26, Rdtscp = 1u << 27, LongMode = 1u << 29;

    public const uint Leaf1Edx = Fpu | De | Pse | Tsc | Msr | Pae | Cx8 | Pge | Cmov | Fxsr | Sse | Sse2;
    public const uint Leaf1Ecx = Sse3 | Ssse3 | Cx16 | Sse41 | Sse42 | Movbe | Popcnt;
    public const uint Leaf7Ebx = FsGsBase | Bmi1 | Bmi2 | Adx;
    public const uint Ext1Ecx = LahfLm | Abm;
    public const uint Ext1Edx = Syscall | Nx | Page1Gb | Rdtscp | LongMode;
    /// <summary>Leaf 0x80000008 EAX: 48 linear-address bits, <see cref="Mmu.PhysicalAddressBits"/> physical.</summary>
    public const uint AddressSizes = (48u << 8) | Mmu.PhysicalAddressBits;

    /// <summary>The registers CPUID returns for <paramref name="leaf"/>/<paramref name="subleaf"/> (zero for leaves beyond the maximum).</summary>
    public static (uint Eax, uint Ebx, uint Ecx, uint Edx) Query(uint leaf, uint subleaf) => leaf switch
    {
        0 => (MaxLeaf, VendorEbx, VendorEcx, VendorEdx),
        1 => (0x0000_0600, 0, Leaf1Ecx, Leaf1Edx),
        7 => subleaf == 0 ? (0u, Leaf7Ebx, 0u, 0u) : (0u, 0u, 0u, 0u),
        0x8000_0000 => (MaxExtendedLeaf, 0, 0, 0),
        0x8000_0001 => (0, 0, Ext1Ecx, Ext1Edx),
        0x8000_0008 => (AddressSizes, 0, 0, 0),
        _ => (0, 0, 0, 0),
    };
}
