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
