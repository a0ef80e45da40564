using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Backends;

/// <summary>
/// A way to run guests: KVM, WHP or the x86-64 emulator. Three narrow interfaces, as in Cloud Hypervisor:
/// <see cref="IHypervisorBackend"/> (probe, create a VM) -&gt; <see cref="IVirtualMachine"/> (owns the guest memory
/// mapping) -&gt; <see cref="IVcpu"/> (runs until an exit).
/// </summary>
public interface IHypervisorBackend
{
    /// <summary>Short name used on the command line: <c>kvm</c>, <c>whp</c>, <c>emulator</c>.</summary>
    string Name { get; }

    /// <summary>Checks at run time whether this backend can run guests here, and if not, why and what to do.</summary>
    BackendAvailability Probe();

    /// <summary>Creates a VM over <paramref name="memory"/> (which the caller keeps owning and disposes after the VM).</summary>
    /// <exception cref="BackendUnavailableException">The backend cannot run here; the message says why and what to do.</exception>
    IVirtualMachine CreateVirtualMachine(GuestMemory memory, VirtualMachineOptions options);
}

/// <summary>Options a backend needs to create a VM.</summary>
public sealed record VirtualMachineOptions
{
    /// <summary>Most guest instructions to execute before stopping with <see cref="VcpuExitKind.BudgetExhausted"/>; null for no limit. Honoured exactly by the emulator; hardware backends ignore it (they use the wall-clock timeout).</summary>
    public ulong? InstructionBudget { get; init; }
}

/// <summary>Result of <see cref="IHypervisorBackend.Probe"/>.</summary>
/// <param name="IsAvailable">True when the backend can run guests here.</param>
/// <param name="Reason">Why it is or is not available, phrased for the user (e.g. "/dev/kvm does not exist: ...").</param>
public readonly record struct BackendAvailability(bool IsAvailable, string Reason)
{
    /// <summary>An available backend.</summary>
    public static BackendAvailability Available(string reason) => new(true, reason);
    /// <summary>An unavailable backend.</summary>
    public static BackendAvailability Unavailable(string reason) => new(false, reason);
}

/// <summary>The backend cannot run here. The message is one line that says why and what to do.</summary>
public sealed class BackendUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BackendUnavailableException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public BackendUnavailableException() { }
    /// <summary>Creates the exception.</summary>
    public BackendUnavailableException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>A virtual machine: guest memory registered with the backend, and its vCPUs.</summary>
public interface IVirtualMachine : IDisposable
{
    /// <summary>The guest memory.</summary>
    GuestMemory Memory { get; }

    /// <summary>Creates a vCPU that will start at <paramref name="start"/> in flat 64-bit long mode.</summary>
    IVcpu CreateVcpu(in VcpuStartState start);
}

/// <summary>Initial register state of the boot vCPU (see <see cref="Abi.EntryConvention"/>).</summary>
/// <param name="Rip">Entry point (ELF <c>e_entry</c>).</param>
/// <param name="Rsp">Initial stack pointer (16-byte aligned).</param>
/// <param name="Rdi">First argument: guest-physical address of the boot info.</param>
public readonly record struct VcpuStartState(ulong Rip, ulong Rsp, ulong Rdi);

/// <summary>
/// One virtual CPU. Not thread-safe: <see cref="Run"/>, <see cref="GetHypercallArgs"/> and
/// <see cref="CompleteHypercall"/> are called from one thread (the vCPU thread); only <see cref="Interrupt"/> may be
/// called from any thread.
/// </summary>
public interface IVcpu : IDisposable
{
    /// <summary>Runs the guest until the next exit the host must handle.</summary>
    VcpuExit Run();

    /// <summary>The hypercall registers (<c>rax</c> and <c>rdi, rsi, rdx, r10, r8</c>); valid after a <see cref="VcpuExitKind.Hypercall"/> exit.</summary>
    HypercallArgs GetHypercallArgs();

    /// <summary>Completes the pending hypercall: <c>rax</c> = <paramref name="result"/>; the next <see cref="Run"/> resumes after the trapping instruction.</summary>
    void CompleteHypercall(long result);

    /// <summary>A register snapshot for diagnostics (crash reports, tests).</summary>
    VcpuRegisters GetRegisters();

    /// <summary>Makes a running (or the next) <see cref="Run"/> return <see cref="VcpuExitKind.Interrupted"/> soon. Thread-safe.</summary>
    void Interrupt();
}

/// <summary>The registers of a hypercall: code in <c>rax</c>, arguments in <c>rdi, rsi, rdx, r10, r8</c>.</summary>
public readonly record struct HypercallArgs(ulong Code, ulong A1, ulong A2, ulong A3, ulong A4, ulong A5);

/// <summary>General-purpose register snapshot.</summary>
public readonly record struct VcpuRegisters(
    ulong Rax, ulong Rbx, ulong Rcx, ulong Rdx, ulong Rsi, ulong Rdi, ulong Rsp, ulong Rbp,
    ulong R8, ulong R9, ulong R10, ulong R11, ulong R12, ulong R13, ulong R14, ulong R15,
    ulong Rip, ulong Rflags);

/// <summary>Why <see cref="IVcpu.Run"/> returned.</summary>
public enum VcpuExitKind
{
    /// <summary>The guest called the hypercall page: read <see cref="IVcpu.GetHypercallArgs"/>, then <see cref="IVcpu.CompleteHypercall"/>.</summary>
    Hypercall,
    /// <summary>The guest executed <c>hlt</c>.</summary>
    Halt,
    /// <summary>Port I/O to a port that is not the hypercall port. <see cref="VcpuExit.Address"/> is the port.</summary>
    PortIo,
    /// <summary>Access to guest-physical memory that is not backed (MMIO). <see cref="VcpuExit.Address"/> is the address.</summary>
    Mmio,
    /// <summary>The guest shut down (triple fault) or the CPU stopped.</summary>
    Shutdown,
    /// <summary>The guest raised an exception the host does not handle (emulator: #UD, #DE, #GP, page fault outside memory; or an unsupported instruction). <see cref="VcpuExit.Detail"/> names it.</summary>
    Fault,
    /// <summary>The instruction budget ran out.</summary>
    BudgetExhausted,
    /// <summary><see cref="IVcpu.Interrupt"/> was called.</summary>
    Interrupted,
    /// <summary>The backend failed (e.g. <c>KVM_EXIT_INTERNAL_ERROR</c>, <c>KVM_EXIT_FAIL_ENTRY</c>). <see cref="VcpuExit.Detail"/> says what.</summary>
    InternalError,
    /// <summary>An exit the backend does not know; <see cref="VcpuExit.RawReason"/> holds the backend's code ("let the consumer decide").</summary>
    Unsupported,
}

/// <summary>The small value <see cref="IVcpu.Run"/> returns.</summary>
/// <param name="Kind">Why the vCPU stopped.</param>
/// <param name="Rip">Guest instruction pointer at the exit, where known.</param>
/// <param name="Address">Port or guest-physical address, for <see cref="VcpuExitKind.PortIo"/> and <see cref="VcpuExitKind.Mmio"/>.</param>
/// <param name="RawReason">The backend's own exit code.</param>
/// <param name="Detail">Human-readable detail for faults and errors.</param>
public readonly record struct VcpuExit(VcpuExitKind Kind, ulong Rip = 0, ulong Address = 0, uint RawReason = 0, string? Detail = null);
