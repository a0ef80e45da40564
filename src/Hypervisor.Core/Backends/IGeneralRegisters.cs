namespace Paravirt.Hypervisor.Backends;

/// <summary>
/// One general-purpose register at a time, for the hot path of a port exit (a hypercall reads six registers and
/// writes one): a backend whose <see cref="IVcpu.GetRegisters"/> and <see cref="IVcpu.SetRegisters"/> copy the whole
/// file (and the emulator's materializes its lazy flags) implements it; callers fall back to those two elsewhere.
/// Same rules as <see cref="IVcpu.SetRegisters"/>: written on the vCPU thread between runs; <c>rip</c> is not touched,
/// so a port exit's <c>out</c> still completes on the next run.
/// </summary>
internal interface IGeneralRegisters
{
    /// <summary>Register <paramref name="index"/> in the instruction encoding's order (0 = rax, 1 = rcx, 2 = rdx, 3 = rbx, 4 = rsp, 5 = rbp, 6 = rsi, 7 = rdi, 8-15 = r8-r15).</summary>
    ulong GetGeneralRegister(int index);

    /// <summary>Sets register <paramref name="index"/> (same numbering as <see cref="GetGeneralRegister"/>).</summary>
    void SetGeneralRegister(int index, ulong value);
}
