namespace Paravirt.Abi;

/// <summary>
/// The register convention, as Xen's on x86-64: <c>rax</c> holds the function code, arguments go in
/// <c>rdi, rsi, rdx, r10, r8</c>, the result comes back in <c>rax</c>. All other registers are preserved by the
/// hypercall page stub. Pointers are full 64-bit guest-physical addresses.
/// </summary>
public static class HypercallConvention
{
    /// <summary>Register that carries the function code on entry and the result on return.</summary>
    public const string CodeRegister = "rax";
    /// <summary>Register that carries the result.</summary>
    public const string ResultRegister = "rax";
    /// <summary>Argument registers, in order.</summary>
    public static IReadOnlyList<string> ArgumentRegisters { get; } = ["rdi", "rsi", "rdx", "r10", "r8"];
    /// <summary>Number of argument registers.</summary>
    public const int MaxArguments = 5;
}

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
