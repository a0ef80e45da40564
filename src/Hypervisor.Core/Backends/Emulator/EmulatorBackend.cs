namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The portable x86-64 emulator backend: runs 64-bit freestanding guest code without hardware virtualization
/// (CI, containers, machines without VT-x/AMD-V). A 64-bit long-mode CPU with 4-level paging, CPL 0 and 3, SYSCALL,
/// exceptions and interrupts delivered through the guest's IDT, and a software TLB; it starts from the same identity
/// page tables and long-mode state as the hardware backends. Instructions are decoded with Iced once per basic block
/// and executed from a block cache, and hot blocks are
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

    /// <summary>
    /// The emulator counts every instruction, so budgets are exact; it delivers external interrupts through the guest's
    /// IDT; it marks the dirty page map as the guest stores (on its TLB's slow write path), so it has nothing to collect;
    /// it takes breakpoints, write watchpoints and single-step; linear addresses go through the guest's page tables.
    /// </summary>
    public BackendCapabilities Capabilities =>
        BackendCapabilities.InstructionBudget | BackendCapabilities.InstructionCount | BackendCapabilities.InterruptInjection
        | BackendCapabilities.SupervisorMode | BackendCapabilities.DirtyPageTracking | BackendCapabilities.GuestDebug
        | BackendCapabilities.PageTables;

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

    /// <summary>Writes the identity page tables and GDT and starts the vCPU in the state they enable, as KVM and WHP do.</summary>
    /// <remarks>
    /// The start state's IDT (the VMM's default exception handlers) is not loaded: with no IDT the emulator ends the run
    /// at an unhandled exception itself, with the faulting instruction's registers and the exact reason, which is what
    /// those handlers recover on hardware backends (where the CPU would otherwise triple-fault and reset).
    /// </remarks>
    public IVcpu CreateVcpu(in VcpuStartState start) => new EmulatorVcpu(Memory, _options, LongModeSetup.Write(Memory).ToVcpuState(start with { Idt = default }));

    public void Dispose()
    {
    }
}
