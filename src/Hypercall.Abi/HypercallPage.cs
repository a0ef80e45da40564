namespace Paravirt.Abi;

/// <summary>
/// The hypercall page: one 4 KiB page the host writes into guest memory and whose address it passes in
/// <see cref="BootInfo.HypercallPage"/>. The guest never hard-codes the trapping instruction: it loads the code
/// into <c>rax</c>, the arguments into <c>rdi, rsi, rdx, r10, r8</c> and does <c>call</c> to
/// <c>page + EntryOffset</c>. The stub traps to the host (on KVM and WHP: <c>out imm8, al</c> to
/// <see cref="IoPort"/>, then <c>ret</c>) and preserves every register but <c>rax</c>.
/// </summary>
/// <remarks>
/// Layout:
/// <code>
/// +0x000  generic entry stub (at most EntryMaxSize bytes)
/// +0x020  reserved (zero)
/// +0xFF8  u32 magic  = Magic ("PVHC")
/// +0xFFC  u32 ABI version of the host, packed (major &lt;&lt; 16 | minor)
/// </code>
/// </remarks>
[AbiExport("PV_HYPERCALL_PAGE")]
public static class HypercallPage
{
    /// <summary>Size of the page.</summary>
    public const uint Size = 0x1000;
    /// <summary>Offset of the generic entry stub.</summary>
    public const uint EntryOffset = 0x000;
    /// <summary>Largest stub the host may write at <see cref="EntryOffset"/>.</summary>
    public const uint EntryMaxSize = 0x20;
    /// <summary>Offset of the magic value.</summary>
    public const uint MagicOffset = 0xFF8;
    /// <summary>Offset of the packed host ABI version.</summary>
    public const uint VersionOffset = 0xFFC;
    /// <summary>Magic value, "PVHC" little-endian.</summary>
    public const uint Magic = 0x43485650;
    /// <summary>I/O port the hardware-backend stub writes to.</summary>
    public const uint IoPort = 0xE2;
}
