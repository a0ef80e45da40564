namespace Paravirt.Hypervisor.Backends;

/// <summary>
/// The complete architectural state of an x86-64 vCPU, in one backend-neutral shape: what a snapshot restores, what
/// a debugger reads and writes, what a crash report prints. Every backend converts to and from its own form
/// (<c>kvm_regs</c>/<c>kvm_sregs</c>/XSAVE on KVM, register names on WHP, fields in the emulator).
/// </summary>
/// <remarks>
/// The x87/SSE state is kept as an XSAVE image in the standard (non-compacted) format: the 512-byte legacy region
/// (exactly the <c>FXSAVE</c> layout), the 64-byte XSAVE header, then any extended components its
/// <c>XSTATE_BV</c> names. One format for all backends: KVM's <c>KVM_GET_XSAVE</c> returns it as is, the emulator
/// keeps its x87 and SSE units in it, and <c>FXSAVE</c>/<c>FXRSTOR</c> in a guest read and write its first 512 bytes.
/// </remarks>
public sealed class VcpuState
{
    /// <summary>Bytes of the legacy (FXSAVE) region plus the XSAVE header: the smallest valid <see cref="ExtendedState"/>.</summary>
    public const int MinExtendedStateSize = 512 + 64;

    private byte[] _extendedState = NewExtendedState();

    /// <summary>General-purpose registers, <c>rip</c>, <c>rflags</c>.</summary>
    public VcpuRegisters Registers { get; set; }

    /// <summary>Code segment.</summary>
    public SegmentRegister Cs { get; set; }
    /// <summary>Stack segment.</summary>
    public SegmentRegister Ss { get; set; }
    /// <summary>Data segment.</summary>
    public SegmentRegister Ds { get; set; }
    /// <summary>Extra segment.</summary>
    public SegmentRegister Es { get; set; }
    /// <summary>FS; its base is <c>IA32_FS_BASE</c>.</summary>
    public SegmentRegister Fs { get; set; }
    /// <summary>GS; its base is <c>IA32_GS_BASE</c>.</summary>
    public SegmentRegister Gs { get; set; }
    /// <summary>Task register.</summary>
    public SegmentRegister Tr { get; set; }
    /// <summary>Local descriptor table register.</summary>
    public SegmentRegister Ldtr { get; set; }
    /// <summary>Global descriptor table register.</summary>
    public DescriptorTableRegister Gdtr { get; set; }
    /// <summary>Interrupt descriptor table register.</summary>
    public DescriptorTableRegister Idtr { get; set; }

    /// <summary>CR0.</summary>
    public ulong Cr0 { get; set; }
    /// <summary>CR2: the last page-fault linear address.</summary>
    public ulong Cr2 { get; set; }
    /// <summary>CR3: the page-table root.</summary>
    public ulong Cr3 { get; set; }
    /// <summary>CR4.</summary>
    public ulong Cr4 { get; set; }
    /// <summary>CR8: the task-priority register.</summary>
    public ulong Cr8 { get; set; }
    /// <summary><c>IA32_EFER</c> (MSR 0xC0000080).</summary>
    public ulong Efer { get; set; }
    /// <summary><c>XCR0</c>: the enabled XSAVE components.</summary>
    public ulong Xcr0 { get; set; } = 0x3;

    /// <summary><c>IA32_STAR</c> (MSR 0xC0000081): SYSCALL/SYSRET segment selectors.</summary>
    public ulong Star { get; set; }
    /// <summary><c>IA32_LSTAR</c> (MSR 0xC0000082): the 64-bit SYSCALL entry point.</summary>
    public ulong Lstar { get; set; }
    /// <summary><c>IA32_CSTAR</c> (MSR 0xC0000083): the compatibility-mode SYSCALL entry point.</summary>
    public ulong Cstar { get; set; }
    /// <summary><c>IA32_FMASK</c> (MSR 0xC0000084): RFLAGS bits SYSCALL clears.</summary>
    public ulong Sfmask { get; set; }
    /// <summary><c>IA32_KERNEL_GS_BASE</c> (MSR 0xC0000102): the value SWAPGS exchanges with the GS base.</summary>
    public ulong KernelGsBase { get; set; }
    /// <summary><c>IA32_TSC_AUX</c> (MSR 0xC0000103): what RDTSCP returns in ECX.</summary>
    public ulong TscAux { get; set; }
    /// <summary>The time-stamp counter (<c>IA32_TIME_STAMP_COUNTER</c>, MSR 0x10).</summary>
    public ulong Tsc { get; set; }
    /// <summary>DR6, the debug status (BS set by a single-step trap). Reset value 0xFFFF0FF0.</summary>
    public ulong Dr6 { get; set; } = 0xFFFF_0FF0;
    /// <summary>DR7, the debug control. Reset value 0x400.</summary>
    public ulong Dr7 { get; set; } = 0x400;

    /// <summary>
    /// x87, MMX and SSE state as an XSAVE image (see the remarks): at least <see cref="MinExtendedStateSize"/> bytes.
    /// </summary>
    /// <exception cref="ArgumentException">Shorter than <see cref="MinExtendedStateSize"/>.</exception>
    public byte[] ExtendedState
    {
        get => _extendedState;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value.Length < MinExtendedStateSize)
            {
                throw new ArgumentException($"an XSAVE image holds at least {MinExtendedStateSize} bytes (got {value.Length})", nameof(value));
            }
            _extendedState = value;
        }
    }

    /// <summary>MXCSR (offset 24 of the legacy region).</summary>
    public uint Mxcsr
    {
        get => BinaryPrimitives.ReadUInt32LittleEndian(_extendedState.AsSpan(24));
        set => BinaryPrimitives.WriteUInt32LittleEndian(_extendedState.AsSpan(24), value);
    }

    /// <summary>The x87 control word (offset 0 of the legacy region).</summary>
    public ushort FpuControlWord
    {
        get => BinaryPrimitives.ReadUInt16LittleEndian(_extendedState);
        set => BinaryPrimitives.WriteUInt16LittleEndian(_extendedState, value);
    }

    /// <summary>The x87 status word (offset 2 of the legacy region).</summary>
    public ushort FpuStatusWord
    {
        get => BinaryPrimitives.ReadUInt16LittleEndian(_extendedState.AsSpan(2));
        set => BinaryPrimitives.WriteUInt16LittleEndian(_extendedState.AsSpan(2), value);
    }

    /// <summary>XMM register <paramref name="index"/> (0-15), 16 bytes at offset 160 + 16 * index of the legacy region.</summary>
    public Span<byte> Xmm(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)index, 15u, nameof(index));
        return _extendedState.AsSpan(160 + (16 * index), 16);
    }

    /// <summary>x87 register ST/MM <paramref name="index"/> in physical-register order (0-7), 10 significant bytes at offset 32 + 16 * index.</summary>
    public Span<byte> FpuRegister(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)index, 7u, nameof(index));
        return _extendedState.AsSpan(32 + (16 * index), 10);
    }

    /// <summary>A deep copy.</summary>
    public VcpuState Clone()
    {
        var copy = (VcpuState)MemberwiseClone();
        copy._extendedState = (byte[])_extendedState.Clone();
        return copy;
    }

    /// <summary>An XSAVE image in the reset state: x87 control word 0x37F, MXCSR 0x1F80, everything else 0.</summary>
    public static byte[] NewExtendedState()
    {
        var image = new byte[MinExtendedStateSize];
        BinaryPrimitives.WriteUInt16LittleEndian(image, 0x37F);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(24), 0x1F80);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(28), 0xFFFF); // MXCSR_MASK: every MXCSR bit a guest may set
        return image;
    }
}

/// <summary>A segment register: the visible selector and the hidden descriptor cache the CPU loaded with it.</summary>
/// <param name="Selector">The selector.</param>
/// <param name="Base">Base address.</param>
/// <param name="Limit">Limit in bytes (already scaled by the granularity bit).</param>
/// <param name="Attributes">
/// The descriptor's attribute bits in the layout of descriptor bits 40-55 (as VMX access rights and WHP's
/// <c>WHV_X64_SEGMENT_REGISTER.Attributes</c>): type (bits 0-3), S (4), DPL (5-6), P (7), AVL (12), L (13), D/B (14),
/// G (15). 0 means an unusable (null) segment.
/// </param>
public readonly record struct SegmentRegister(ushort Selector, ulong Base, uint Limit, ushort Attributes)
{
    /// <summary>Segment type (descriptor bits 40-43).</summary>
    public int Type => Attributes & 0xF;
    /// <summary>True for a code or data segment, false for a system segment (TSS, LDT, gates).</summary>
    public bool IsCodeOrData => (Attributes & (1 << 4)) != 0;
    /// <summary>Descriptor privilege level.</summary>
    public int Dpl => (Attributes >> 5) & 3;
    /// <summary>Present bit.</summary>
    public bool Present => (Attributes & (1 << 7)) != 0;
    /// <summary>64-bit code segment (L bit).</summary>
    public bool Long => (Attributes & (1 << 13)) != 0;
    /// <summary>Default operation size / big bit (D/B).</summary>
    public bool DefaultBig => (Attributes & (1 << 14)) != 0;
    /// <summary>Granularity bit.</summary>
    public bool Granularity => (Attributes & (1 << 15)) != 0;

    /// <summary>Builds the attribute bits from their fields.</summary>
    public static ushort MakeAttributes(int type, bool codeOrData, int dpl, bool present, bool available = false, bool @long = false, bool defaultBig = false, bool granularity = false) =>
        (ushort)((type & 0xF) | (codeOrData ? 1 << 4 : 0) | ((dpl & 3) << 5) | (present ? 1 << 7 : 0)
            | (available ? 1 << 12 : 0) | (@long ? 1 << 13 : 0) | (defaultBig ? 1 << 14 : 0) | (granularity ? 1 << 15 : 0));
}

/// <summary>GDTR or IDTR: base and limit.</summary>
/// <param name="Base">Linear base address.</param>
/// <param name="Limit">Limit (table size in bytes minus one).</param>
public readonly record struct DescriptorTableRegister(ulong Base, ushort Limit);
