namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>The registers of a hypercall: code in <c>rax</c>, arguments in <c>rdi, rsi, rdx, r10, r8</c> (<see cref="HypercallConvention"/>).</summary>
public readonly record struct HypercallArgs(ulong Code, ulong A1, ulong A2, ulong A3, ulong A4, ulong A5);

/// <summary>
/// The one place that knows how a hypercall reaches the host: the hypercall page's <c>out</c> to
/// <see cref="HypercallPage.IoPort"/> arrives as a plain <see cref="VcpuExitKind.IoOut"/> exit from any backend, and
/// the arguments and result travel in the registers of <see cref="HypercallConvention"/>. Backends know none of it.
/// </summary>
public static class HypercallTrap
{
    /// <summary>True when <paramref name="exit"/> is the hypercall page's trap.</summary>
    public static bool IsHypercall(in VcpuExit exit) => exit.Kind == VcpuExitKind.IoOut && exit.Address == HypercallPage.IoPort;

    /// <summary>The function code and arguments held in <paramref name="registers"/>.</summary>
    public static HypercallArgs ReadArguments(in VcpuRegisters registers) =>
        new(registers.Rax, registers.Rdi, registers.Rsi, registers.Rdx, registers.R10, registers.R8);

    // HypercallConvention's registers, numbered as IGeneralRegisters numbers them.
    private const int Rax = 0, Rdx = 2, Rsi = 6, Rdi = 7, R8 = 8, R10 = 10;

    /// <summary>The function code and arguments, read from <paramref name="vcpu"/> without copying its whole register file where the backend allows.</summary>
    internal static HypercallArgs ReadArguments(IVcpu vcpu)
    {
        if (vcpu is IGeneralRegisters r)
        {
            return new(r.GetGeneralRegister(Rax), r.GetGeneralRegister(Rdi), r.GetGeneralRegister(Rsi), r.GetGeneralRegister(Rdx),
                r.GetGeneralRegister(R10), r.GetGeneralRegister(R8));
        }
        VcpuRegisters registers = vcpu.GetRegisters();
        return ReadArguments(in registers);
    }

    /// <summary>Writes <paramref name="result"/> to <c>rax</c>, leaving every other register (and the pending <c>out</c>) as it is.</summary>
    internal static void WriteResult(IVcpu vcpu, long result)
    {
        if (vcpu is IGeneralRegisters r)
        {
            r.SetGeneralRegister(Rax, unchecked((ulong)result));
            return;
        }
        VcpuRegisters registers = vcpu.GetRegisters();
        vcpu.SetRegisters(registers with { Rax = unchecked((ulong)result) });
    }

    /// <summary>
    /// For code that drives a vCPU itself (tests, benchmarks): when <paramref name="exit"/> is a hypercall, reads its
    /// arguments and returns true.
    /// </summary>
    public static bool TryRead(IVcpu vcpu, in VcpuExit exit, out HypercallArgs args)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        if (!IsHypercall(in exit))
        {
            args = default;
            return false;
        }
        args = ReadArguments(vcpu);
        return true;
    }

    /// <summary>Returns <paramref name="result"/> to the guest in <c>rax</c>; the next run continues after the trap.</summary>
    public static void Complete(IVcpu vcpu, long result)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        WriteResult(vcpu, result);
    }
}
