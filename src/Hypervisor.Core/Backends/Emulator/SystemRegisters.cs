namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The system side of the emulated CPU's architectural state: control registers, EFER, the segment registers with
/// their hidden descriptor caches, GDTR/IDTR/TR/LDTR and the system MSRs, with the rules for writing them (which bits
/// a guest may set, which writes raise #GP). Knows nothing of instruction execution, so a later engine reuses it
/// as is. Converted to and from <see cref="VcpuState"/> (the one backend-neutral form) by <see cref="CopyTo"/> and
/// <see cref="Load"/>.
/// </summary>
internal sealed class SystemRegisters
{
    // CR0
    public const ulong Cr0Pe = 1UL << 0, Cr0Mp = 1UL << 1, Cr0Em = 1UL << 2, Cr0Ts = 1UL << 3, Cr0Et = 1UL << 4,
        Cr0Ne = 1UL << 5, Cr0Wp = 1UL << 16, Cr0Am = 1UL << 18, Cr0Nw = 1UL << 29, Cr0Cd = 1UL << 30, Cr0Pg = 1UL << 31;

    /// <summary>CR0 bits a guest may write (everything else is reserved: #GP).</summary>
    public const ulong Cr0Writable = Cr0Pe | Cr0Mp | Cr0Em | Cr0Ts | Cr0Et | Cr0Ne | Cr0Wp | Cr0Am | Cr0Nw | Cr0Cd | Cr0Pg;

    // CR4
    public const ulong Cr4Tsd = 1UL << 2, Cr4De = 1UL << 3, Cr4Pse = 1UL << 4, Cr4Pae = 1UL << 5, Cr4Pge = 1UL << 7,
        Cr4OsFxsr = 1UL << 9, Cr4OsXmmExcpt = 1UL << 10, Cr4FsGsBase = 1UL << 16;

    /// <summary>
    /// CR4 bits a guest may set: exactly the features CPUID advertises (TSD, DE, PSE, PAE, PGE, OSFXSR, OSXMMEXCPT,
    /// FSGSBASE). PCIDE, SMEP, SMAP, OSXSAVE, UMIP, LA57, VMXE ... are not implemented and raise #GP, as on a CPU
    /// without them.
    /// </summary>
    public const ulong Cr4Writable = Cr4Tsd | Cr4De | Cr4Pse | Cr4Pae | Cr4Pge | Cr4OsFxsr | Cr4OsXmmExcpt | Cr4FsGsBase;

    // EFER
    public const ulong EferSce = 1UL << 0, EferLme = 1UL << 8, EferLma = 1UL << 10, EferNxe = 1UL << 11;

    /// <summary>EFER bits a guest may write: SCE (SYSCALL), LME, NXE. LMA is read-only.</summary>
    public const ulong EferWritable = EferSce | EferLme | EferNxe;

    // MSR numbers
    public const uint MsrTsc = 0x10, MsrEfer = 0xC000_0080, MsrStar = 0xC000_0081, MsrLstar = 0xC000_0082,
        MsrCstar = 0xC000_0083, MsrSfmask = 0xC000_0084, MsrFsBase = 0xC000_0100, MsrGsBase = 0xC000_0101,
        MsrKernelGsBase = 0xC000_0102, MsrTscAux = 0xC000_0103;

    public ulong Cr0 = LongModeSetup.Cr0;
    public ulong Cr2;
    public ulong Cr3;
    public ulong Cr4 = LongModeSetup.Cr4;
    public ulong Cr8;
    public ulong Efer = LongModeSetup.Efer;

    public SegmentRegister Cs, Ss, Ds, Es, Fs, Gs, Tr, Ldtr;
    public DescriptorTableRegister Gdtr, Idtr;

    public ulong Star, Lstar, Cstar, Sfmask, KernelGsBase, TscAux;

    /// <summary>Debug status (DR6) as the CPU reports it: the single-step bit is set when a TF trap is delivered.</summary>
    public ulong Dr6 = 0xFFFF_0FF0;
    /// <summary>Debug control (DR7): kept, breakpoints are not implemented.</summary>
    public ulong Dr7 = 0x400;

    /// <summary>Current privilege level: the DPL of the loaded code segment (CS.RPL equals it in 64-bit mode).</summary>
    public int Cpl => Cs.Dpl;

    /// <summary>True when paging structures may mark pages no-execute (EFER.NXE).</summary>
    public bool Nxe => (Efer & EferNxe) != 0;

    /// <summary>True when supervisor writes honour read-only pages (CR0.WP).</summary>
    public bool WriteProtect => (Cr0 & Cr0Wp) != 0;

    /// <summary>True when global pages survive CR3 writes (CR4.PGE).</summary>
    public bool GlobalPages => (Cr4 & Cr4Pge) != 0;

    /// <summary>Loads the state a <see cref="VcpuState"/> carries.</summary>
    public void Load(VcpuState state)
    {
        Cr0 = state.Cr0;
        Cr2 = state.Cr2;
        Cr3 = state.Cr3;
        Cr4 = state.Cr4;
        Cr8 = state.Cr8;
        Efer = state.Efer;
        (Cs, Ss, Ds, Es, Fs, Gs, Tr, Ldtr) = (state.Cs, state.Ss, state.Ds, state.Es, state.Fs, state.Gs, state.Tr, state.Ldtr);
        (Gdtr, Idtr) = (state.Gdtr, state.Idtr);
        (Star, Lstar, Cstar, Sfmask, KernelGsBase, TscAux) = (state.Star, state.Lstar, state.Cstar, state.Sfmask, state.KernelGsBase, state.TscAux);
        Dr6 = state.Dr6;
        Dr7 = state.Dr7;
    }

    /// <summary>Copies this state into <paramref name="state"/>.</summary>
    public void CopyTo(VcpuState state)
    {
        state.Cr0 = Cr0;
        state.Cr2 = Cr2;
        state.Cr3 = Cr3;
        state.Cr4 = Cr4;
        state.Cr8 = Cr8;
        state.Efer = Efer;
        (state.Cs, state.Ss, state.Ds, state.Es, state.Fs, state.Gs, state.Tr, state.Ldtr) = (Cs, Ss, Ds, Es, Fs, Gs, Tr, Ldtr);
        (state.Gdtr, state.Idtr) = (Gdtr, Idtr);
        (state.Star, state.Lstar, state.Cstar, state.Sfmask, state.KernelGsBase, state.TscAux) = (Star, Lstar, Cstar, Sfmask, KernelGsBase, TscAux);
        state.Dr6 = Dr6;
        state.Dr7 = Dr7;
    }

    /// <summary>
    /// Why a state cannot be run by the emulator (it runs 64-bit long mode only), or null when it can. Checked by
    /// SetState so a snapshot from a real-mode or 32-bit vCPU is refused with a clear message instead of misbehaving.
    /// </summary>
    public string? Unsupported()
    {
        if ((Cr0 & (Cr0Pe | Cr0Pg)) != (Cr0Pe | Cr0Pg) || (Cr4 & Cr4Pae) == 0 || (Efer & (EferLme | EferLma)) != (EferLme | EferLma))
        {
            return $"the emulator runs 64-bit long mode only (CR0 0x{Cr0:x}, CR4 0x{Cr4:x}, EFER 0x{Efer:x})";
        }
        if (!Cs.Long)
        {
            return $"the emulator runs 64-bit code only (CS 0x{Cs.Selector:x} is not a 64-bit code segment)";
        }
        return null;
    }

    /// <summary>True when <paramref name="value"/> is a valid CR0 in long mode (no reserved bits; PE and PG stay set; NW without CD is invalid).</summary>
    public static bool IsValidCr0(ulong value) =>
        (value & ~Cr0Writable) == 0 && (value & (Cr0Pe | Cr0Pg)) == (Cr0Pe | Cr0Pg) && !((value & Cr0Nw) != 0 && (value & Cr0Cd) == 0);

    /// <summary>True when <paramref name="value"/> is a valid CR4 in long mode (only implemented bits; PAE stays set).</summary>
    public static bool IsValidCr4(ulong value) => (value & ~Cr4Writable) == 0 && (value & Cr4Pae) != 0;

    /// <summary>True when <paramref name="value"/> may be written to EFER in long mode with paging on (LME must stay set).</summary>
    public static bool IsValidEfer(ulong value) => (value & ~(EferWritable | EferLma)) == 0 && (value & EferLme) != 0;

    /// <summary>True for a canonical 48-bit linear address (bits 63:47 all equal).</summary>
    public static bool IsCanonical(ulong address) => (ulong)(((long)address << 16) >> 16) == address;
}
