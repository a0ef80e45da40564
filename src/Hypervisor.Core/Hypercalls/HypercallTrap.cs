using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;

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
        VcpuRegisters registers = vcpu.GetRegisters();
        args = ReadArguments(in registers);
        return true;
    }

    /// <summary>Returns <paramref name="result"/> to the guest in <c>rax</c>; the next run continues after the trap.</summary>
    public static void Complete(IVcpu vcpu, long result)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        VcpuRegisters registers = vcpu.GetRegisters();
        vcpu.SetRegisters(registers with { Rax = unchecked((ulong)result) });
    }
}
