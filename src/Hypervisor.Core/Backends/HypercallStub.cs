namespace Paravirt.Hypervisor.Backends;

/// <summary>
/// The hypercall page stub shared by every backend: <c>out imm8, al</c> to <see cref="HypercallPage.IoPort"/>
/// followed by <c>ret</c>. On KVM it is a <c>KVM_EXIT_IO</c> (registers through sync regs), on WHP an
/// <c>X64IoPortAccess</c> exit (the host advances RIP), and the emulator traps the same instruction. Raw
/// <c>vmcall</c> is not used: KVM handles it in the kernel and never lets it reach user space.
/// </summary>
public static class HypercallStub
{
    /// <summary>Length of the trapping instruction (<c>E6 ib</c>).</summary>
    public const int TrapLength = 2;

    /// <summary>The stub bytes: <c>E6 E2</c> (<c>out 0xE2, al</c>), <c>C3</c> (<c>ret</c>).</summary>
    public static ReadOnlySpan<byte> Bytes => [0xE6, (byte)HypercallPage.IoPort, 0xC3];
}
