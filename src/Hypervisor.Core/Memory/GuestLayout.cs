namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// Where the host puts its own structures in guest-physical memory. Guest-physical memory starts at 0; the host
/// owns everything below <see cref="EntryConvention.ImageMinAddress"/>, the image is loaded at its ELF link address
/// above that, and the guest owns the rest.
/// <code>
///  guest-physical
///  0x0000_0000 +--------------------------------+
///              | null page (never mapped to use)|
///  0x0000_1000 +--------------------------------+ Gdt
///              | GDT (hardware backends)        |
///  0x0000_2000 +--------------------------------+ BootInfo      -&gt; rdi at entry
///              | pv_boot_info                   |
///  0x0000_3000 +--------------------------------+ HypercallPage -&gt; boot_info.hypercall_page
///              | hypercall page (stub, magic)   |
///  0x0000_4000 +--------------------------------+ CommandLine
///              | command line, NUL-terminated   |
///  0x0000_5000 +--------------------------------+ PvmBootstrap
///              | KVM under PVM only: bootstrap  |   one 64-byte stub per vCPU, run once before
///              |   stubs                        |   the entry (Backends/Kvm/README.md)
///  0x0000_6000 +--------------------------------+ PvmVcpuStructs
///              | KVM under PVM only: one PVM    |
///              |   vCPU struct page per vCPU    |
///  0x0001_0000 +--------------------------------+ Pml4
///              | PML4 | PDPT | PD x 64 (2 MiB   |   identity map of all guest memory,
///              |  pages, one PD per GiB)        |   hardware backends only
///  0x0005_2000 +--------------------------------+ BootModules   -&gt; boot_info.boot_modules
///              | boot module table (Linux       |
///              |   personality: app, argv/envp) |
///  0x0005_3000 +--------------------------------+ Idt
///              | IDT: 32 exception gates (IST1) |   the VMM's default exception handlers, for guests
///  0x0005_4000 +--------------------------------+ ExceptionStubs   without an IDT of their own (hardware
///              | push vector; out ExceptionPort |   backends): each stub reports the fault to the host
///  0x0005_5000 +--------------------------------+ ExceptionStack
///              | exception stack (IST1)         |   the 64-bit TSS is at 0 (GDT 0x18): IST1 at 0x24
///  0x0005_6000 +--------------------------------+ ExceptionStackTop
///              | (reserved)                     |
///  0x0010_0000 +--------------------------------+ EntryConvention.ImageMinAddress (1 MiB)
///              | guest image: ELF PT_LOAD       |
///              |   segments at their addresses  |
///              +--------------------------------+ boot_info.heap_start (page aligned)
///              | guest-owned: heap, rings,      |
///              |   I/O buffers ...              |
///              |                  stack grows v |
///  MemorySize  +--------------------------------+ initial rsp
/// </code>
/// </summary>
public static class GuestLayout
{
    /// <summary>The GDT used by hardware backends.</summary>
    public const ulong Gdt = 0x1000;
    /// <summary>Where the boot info is written.</summary>
    public const ulong BootInfo = 0x2000;
    /// <summary>Where the hypercall page is written.</summary>
    public const ulong HypercallPage = 0x3000;
    /// <summary>Where the command line is written.</summary>
    public const ulong CommandLine = 0x4000;
    /// <summary>Longest command line, NUL included.</summary>
    public const int CommandLineMax = 0x1000;
    /// <summary>KVM under PVM: the bootstrap stubs, <see cref="PvmBootstrapStride"/> bytes per vCPU.</summary>
    internal const ulong PvmBootstrap = 0x5000;
    /// <summary>Bytes per vCPU at <see cref="PvmBootstrap"/>.</summary>
    internal const ulong PvmBootstrapStride = 0x40;
    /// <summary>KVM under PVM: the PVM vCPU structs, one page per vCPU, up to <see cref="Pml4"/>.</summary>
    internal const ulong PvmVcpuStructs = 0x6000;
    /// <summary>How many vCPUs the PVM pages have room for.</summary>
    internal const int PvmMaxVcpus = (int)((Pml4 - PvmVcpuStructs) / EntryConvention.PageSize);
    /// <summary>Where the boot module table is written (<see cref="Abi.BootModule"/> entries; used for Linux executables), just past the page tables.</summary>
    public const ulong BootModules = 0x5_2000;
    /// <summary>Bytes reserved for the boot module table.</summary>
    public const ulong BootModulesSize = 0x1000;
    /// <summary>The IDT of the default exception handlers (32 gates of 16 bytes).</summary>
    public const ulong Idt = 0x5_3000;
    /// <summary>The default exception handlers: one 16-byte stub per vector.</summary>
    public const ulong ExceptionStubs = 0x5_4000;
    /// <summary>The page the default exception handlers run on (IST1); <see cref="ExceptionStackTop"/> is its end.</summary>
    public const ulong ExceptionStack = 0x5_5000;
    /// <summary>Top of the stack the default exception handlers run on (IST1).</summary>
    public const ulong ExceptionStackTop = ExceptionStack + EntryConvention.PageSize;
    /// <summary>Where the 64-bit TSS (base 0, see the GDT) keeps IST1.</summary>
    public const ulong TssIst1 = 0x24;
    /// <summary>The I/O port the default exception handlers write to report a fault (host-internal: no guest calls it).</summary>
    public const ushort ExceptionPort = 0xE3;
    /// <summary>PML4 of the identity map.</summary>
    public const ulong Pml4 = 0x1_0000;
    /// <summary>The single PDPT.</summary>
    public const ulong Pdpt = 0x1_1000;
    /// <summary>First page directory; PD i maps GiB i.</summary>
    public const ulong FirstPd = 0x1_2000;
    /// <summary>Number of page directories (one per GiB): bounds <see cref="GuestMemory.MaxSize"/>.</summary>
    public const int PdCount = 64;
    /// <summary>End of the host-reserved area.</summary>
    public const ulong ReservedEnd = EntryConvention.ImageMinAddress;

    /// <summary>
    /// Every region the host writes in the reserved area, with its extent: the one list the layout test checks for
    /// overlaps (a new region goes here, or the test cannot see it).
    /// </summary>
    internal static IReadOnlyList<(string Name, ulong Start, ulong Size)> Regions { get; } =
    [
        ("64-bit TSS", 0, 0x68),
        (nameof(Gdt), Gdt, EntryConvention.PageSize),
        (nameof(BootInfo), BootInfo, EntryConvention.PageSize),
        (nameof(HypercallPage), HypercallPage, EntryConvention.PageSize),
        (nameof(CommandLine), CommandLine, CommandLineMax),
        (nameof(PvmBootstrap), PvmBootstrap, PvmVcpuStructs - PvmBootstrap),
        (nameof(PvmVcpuStructs), PvmVcpuStructs, (ulong)PvmMaxVcpus * EntryConvention.PageSize),
        (nameof(Pml4), Pml4, EntryConvention.PageSize),
        (nameof(Pdpt), Pdpt, EntryConvention.PageSize),
        ("page directories", FirstPd, (ulong)PdCount * EntryConvention.PageSize),
        (nameof(BootModules), BootModules, BootModulesSize),
        (nameof(Idt), Idt, EntryConvention.PageSize),
        (nameof(ExceptionStubs), ExceptionStubs, EntryConvention.PageSize),
        (nameof(ExceptionStack), ExceptionStack, ExceptionStackTop - ExceptionStack),
    ];
}
