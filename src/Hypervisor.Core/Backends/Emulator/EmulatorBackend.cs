using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The portable x86-64 emulator backend: runs 64-bit freestanding guest code without hardware virtualization
/// (CI, containers, machines without VT-x/AMD-V). Flat identity-mapped long mode at CPL0, no interrupts, no paging;
/// instructions are decoded with Iced once per basic block and executed from a block cache, and hot blocks are
/// translated to IL that the .NET JIT compiles (<see cref="System.Reflection.Emit.DynamicMethod"/>). Deterministic: the same
/// image and inputs give the same instruction count and output on every run, and
/// <see cref="VirtualMachineOptions.InstructionBudget"/> is honoured exactly. See <c>README.md</c> beside this file for
/// the design, the supported instruction set and the path to QEMU-like speed.
/// </summary>
public sealed class EmulatorBackend : IHypervisorBackend
{
    /// <summary>The backend's name on the command line.</summary>
    public const string BackendName = "emulator";

    /// <inheritdoc />
    public string Name => BackendName;

    /// <summary>The emulator counts every instruction, so budgets are exact; it takes breakpoints, write watchpoints and single-step; it has no paging (linear = guest-physical).</summary>
    public BackendCapabilities Capabilities => BackendCapabilities.InstructionBudget | BackendCapabilities.InstructionCount | BackendCapabilities.GuestDebug;

    /// <summary>Always available: the emulator needs nothing from the host.</summary>
    public BackendAvailability Probe() =>
        BackendAvailability.Available("portable x86-64 emulator (no hardware virtualization needed)");

    /// <inheritdoc />
    public IVirtualMachine CreateVirtualMachine(GuestMemory memory, VirtualMachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(options);
        return new EmulatorVirtualMachine(memory, options);
    }
}

/// <summary>A VM of the emulator: the guest memory and the options; vCPUs do the work.</summary>
internal sealed class EmulatorVirtualMachine : IVirtualMachine
{
    private readonly VirtualMachineOptions _options;

    public EmulatorVirtualMachine(GuestMemory memory, VirtualMachineOptions options)
    {
        Memory = memory;
        _options = options;
    }

    public GuestMemory Memory { get; }

    public IVcpu CreateVcpu(in VcpuStartState start) => new EmulatorVcpu(Memory, _options, start);

    public void Dispose()
    {
    }
}
