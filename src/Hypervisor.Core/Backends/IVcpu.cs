namespace Paravirt.Hypervisor.Backends;

/// <summary>
/// One virtual CPU. A backend knows nothing of the hypercall ABI: it reports plain exits (port I/O, MMIO, halt,
/// faults) and gives access to the registers; the VMM recognizes the hypercall port and applies the register
/// convention in one place (<see cref="Hypercalls.HypercallTrap"/>), as Cloud Hypervisor and Hyperlight do.
/// Not thread-safe: every member except <see cref="Interrupt"/> is called from one thread (the vCPU thread).
/// </summary>
public interface IVcpu : IDisposable
{
    /// <summary>
    /// Runs the guest until the next exit the host must handle. After an <see cref="VcpuExitKind.IoOut"/> exit,
    /// <c>rip</c> still points at the <c>out</c> (as KVM reports it); the next <see cref="Run"/> completes the
    /// instruction and continues after it, and <see cref="GetState"/> completes it first, so neither ever repeats it.
    /// </summary>
    VcpuExit Run();

    /// <summary>The general-purpose registers, <c>rip</c> and <c>rflags</c> (cheap: no system call on KVM).</summary>
    VcpuRegisters GetRegisters();

    /// <summary>
    /// Replaces the general-purpose registers, <c>rip</c> and <c>rflags</c>. After an <see cref="VcpuExitKind.IoOut"/>
    /// exit, leave <c>rip</c> as <see cref="GetRegisters"/> reported it so the backend completes the <c>out</c>
    /// (e.g. a hypercall result written to <c>rax</c>); a different <c>rip</c> abandons it.
    /// </summary>
    void SetRegisters(in VcpuRegisters registers);

    /// <summary>
    /// The complete architectural state (registers, segments, control registers, system MSRs, x87/SSE state) for
    /// snapshots, debuggers and crash reports. Slower than <see cref="GetRegisters"/>.
    /// </summary>
    VcpuState GetState();

    /// <summary>Loads a complete architectural state taken by <see cref="GetState"/> (on this or another vCPU of the same backend).</summary>
    void SetState(VcpuState state);

    /// <summary>Guest instructions executed so far, where the backend declares <see cref="BackendCapabilities.InstructionCount"/>; otherwise null.</summary>
    ulong? InstructionsRetired { get; }

    /// <summary>
    /// Replaces the instruction budget: from now the vCPU may execute <paramref name="instructions"/> more guest
    /// instructions before <see cref="Run"/> returns <see cref="VcpuExitKind.BudgetExhausted"/> (null: no limit). Honoured
    /// by backends that declare <see cref="BackendCapabilities.InstructionBudget"/>; others ignore it. Between runs.
    /// </summary>
    void SetInstructionBudget(ulong? instructions)
    {
    }

    /// <summary>Makes a running (or the next) <see cref="Run"/> return <see cref="VcpuExitKind.Interrupted"/> soon. Thread-safe.</summary>
    void Interrupt();

    /// <summary>
    /// Raises external interrupt <paramref name="vector"/> (32-255), as a level-triggered line without an APIC: the
    /// guest takes it through its IDT as soon as RFLAGS.IF allows (it stays pending while IF is clear), and a
    /// running <see cref="Run"/> keeps running. Requests of the same vector before delivery merge. Thread-safe.
    /// Available where the backend declares <see cref="BackendCapabilities.InterruptInjection"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vector"/> is below 32 or above 255.</exception>
    /// <exception cref="NotSupportedException">The backend cannot inject interrupts.</exception>
    void RequestInterrupt(int vector);

    /// <summary>Breakpoints, watchpoints and single-step, where the backend declares <see cref="BackendCapabilities.GuestDebug"/>; otherwise null.</summary>
    IVcpuDebug? Debug { get; }
}

/// <summary>General-purpose registers, <c>rip</c> and <c>rflags</c>.</summary>
public readonly record struct VcpuRegisters(
    ulong Rax, ulong Rbx, ulong Rcx, ulong Rdx, ulong Rsi, ulong Rdi, ulong Rsp, ulong Rbp,
    ulong R8, ulong R9, ulong R10, ulong R11, ulong R12, ulong R13, ulong R14, ulong R15,
    ulong Rip, ulong Rflags);

/// <summary>Why <see cref="IVcpu.Run"/> returned.</summary>
public enum VcpuExitKind
{
    /// <summary>The guest wrote to an I/O port (<c>out</c>): <see cref="VcpuExit.Address"/> is the port, <see cref="VcpuExit.Size"/> the width, <see cref="VcpuExit.Data"/> the value; <see cref="VcpuExit.Rip"/> is the <c>out</c>, which the next run completes.</summary>
    IoOut,
    /// <summary>The guest read from an I/O port (<c>in</c>): <see cref="VcpuExit.Address"/> is the port, <see cref="VcpuExit.Size"/> the width. The instruction did not complete.</summary>
    IoIn,
    /// <summary>The guest executed <c>hlt</c>.</summary>
    Halt,
    /// <summary>Access to guest-physical memory that is not backed (MMIO). <see cref="VcpuExit.Address"/> is the address.</summary>
    Mmio,
    /// <summary>The guest shut down (triple fault) or the CPU stopped.</summary>
    Shutdown,
    /// <summary>The guest raised an exception it does not handle (emulator: #UD, #DE, #GP, page fault outside memory). <see cref="VcpuExit.Detail"/> names it.</summary>
    Fault,
    /// <summary>The instruction budget ran out.</summary>
    BudgetExhausted,
    /// <summary><see cref="IVcpu.Interrupt"/> was called.</summary>
    Interrupted,
    /// <summary>The backend failed (e.g. <c>KVM_EXIT_INTERNAL_ERROR</c>, <c>KVM_EXIT_FAIL_ENTRY</c>). <see cref="VcpuExit.Detail"/> says what.</summary>
    InternalError,
    /// <summary>An exit the backend does not know; <see cref="VcpuExit.RawReason"/> holds the backend's code ("let the consumer decide").</summary>
    Unsupported,
    /// <summary>The guest executed a valid instruction the backend cannot execute (an emulator gap, not a guest bug). <see cref="VcpuExit.Detail"/> names it.</summary>
    Unimplemented,
    /// <summary>The vCPU stopped for a debugger (<see cref="IVcpuDebug"/>): <see cref="VcpuExit.DebugReason"/> says why.</summary>
    Debug,
}

/// <summary>The small value <see cref="IVcpu.Run"/> returns.</summary>
/// <param name="Kind">Why the vCPU stopped.</param>
/// <param name="Rip">Guest instruction pointer at the exit, where known.</param>
/// <param name="Address">Port or guest-physical address, for port I/O and <see cref="VcpuExitKind.Mmio"/>.</param>
/// <param name="RawReason">The backend's own exit code.</param>
/// <param name="Detail">Human-readable detail for faults and errors.</param>
/// <param name="Size">Access width in bytes for port I/O and MMIO.</param>
/// <param name="Data">The value written, for <see cref="VcpuExitKind.IoOut"/>.</param>
/// <param name="DebugReason">Why a <see cref="VcpuExitKind.Debug"/> exit happened.</param>
public readonly record struct VcpuExit(VcpuExitKind Kind, ulong Rip = 0, ulong Address = 0, uint RawReason = 0, string? Detail = null, byte Size = 0, ulong Data = 0, DebugStopReason DebugReason = DebugStopReason.None);
