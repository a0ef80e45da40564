namespace Paravirt.Abi;

/// <summary>
/// Guest entry convention: the vCPU starts in 64-bit long mode with flat, identity-mapped memory (guest-physical
/// equals guest-virtual), interrupts disabled, at the ELF entry point, with <c>rdi</c> = guest-physical address of
/// the <see cref="BootInfo"/> and <c>rsp</c> = a 16-byte aligned stack top inside guest memory. Guest images are
/// linked at or above <see cref="ImageMinAddress"/>: everything below belongs to the host.
/// </summary>
[AbiExport("PV_ENTRY")]
public static class EntryConvention
{
    /// <summary>Lowest guest-physical address a guest image may be loaded at (1 MiB).</summary>
    public const ulong ImageMinAddress = 0x10_0000;
    /// <summary>Page size used by the ABI (4 KiB).</summary>
    public const ulong PageSize = 0x1000;
}
