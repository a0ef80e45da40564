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

    /// <summary>What this backend can do beyond running guests (instruction budgets and counts, ...); the VMM asks this instead of testing names or types.</summary>
    BackendCapabilities Capabilities { get; }

    /// <summary>Creates a VM over <paramref name="memory"/> (which the caller keeps owning and disposes after the VM).</summary>
    /// <exception cref="BackendUnavailableException">The backend cannot run here; the message says why and what to do.</exception>
    IVirtualMachine CreateVirtualMachine(GuestMemory memory, VirtualMachineOptions options);
}

/// <summary>Options a backend needs to create a VM.</summary>
public sealed record VirtualMachineOptions
{
    /// <summary>Most guest instructions to execute before stopping with <see cref="VcpuExitKind.BudgetExhausted"/>; null for no limit. Honoured exactly by backends that declare <see cref="BackendCapabilities.InstructionBudget"/>; others ignore it (the VMM warns and relies on the wall-clock timeout).</summary>
    public ulong? InstructionBudget { get; init; }

    /// <summary>
    /// Guest-physical addresses of guard pages (4 KiB, page aligned): pages the guest must never touch, e.g. below its
    /// stack. KVM leaves them out of the memory slots (any access exits as <see cref="VcpuExitKind.Mmio"/> with the
    /// guest-physical address); the emulator's MMU refuses any access whose translation reaches one (loads, stores and
    /// instruction fetches: a <see cref="VcpuExitKind.Fault"/> exit with the guest-physical address, never delivered to
    /// the guest's IDT); WHP does not implement them yet (ignored). The VMM reports either as a stack overflow.
    /// </summary>
    public IReadOnlyList<ulong> GuardPages { get; init; } = [];

    /// <summary>Record the pages the guest writes (<see cref="IVirtualMachine.CollectDirtyPages"/>), for snapshots; honoured by backends that declare <see cref="BackendCapabilities.DirtyPageTracking"/>.</summary>
    public bool TrackDirtyPages { get; init; }

    /// <summary>
    /// VMs created with the same key object (the runner passes the <see cref="Loading.GuestImage"/>) may share work
    /// that depends only on guest code bytes, validated against each VM's own memory before use (the emulator's
    /// decoded blocks, <c>SharedDecodeCache</c>); null shares nothing.
    /// </summary>
    internal object? CodeShareKey { get; init; }
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

/// <summary>
/// A backend operation failed after the backend was found available (creating a VM or vCPU, loading or reading its
/// state): one typed error that names the operation, mapped to one exit code by the CLI. The message says what failed.
/// </summary>
public sealed class BackendOperationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BackendOperationException(string operation, string message, int? errorCode = null) : base(message)
    {
        Operation = operation;
        ErrorCode = errorCode;
    }

    /// <summary>Creates the exception.</summary>
    public BackendOperationException() : this("unknown", "a backend operation failed") { }

    /// <summary>Creates the exception.</summary>
    public BackendOperationException(string message) : this("unknown", message) { }

    /// <summary>Creates the exception.</summary>
    public BackendOperationException(string message, Exception inner) : base(message, inner) => Operation = "unknown";

    /// <summary>The backend operation (an ioctl or API name, e.g. <c>KVM_SET_SREGS</c>).</summary>
    public string Operation { get; }

    /// <summary>The operating system's error code (errno, HRESULT), where there is one.</summary>
    public int? ErrorCode { get; }
}

/// <summary>A virtual machine: guest memory registered with the backend, and its vCPUs.</summary>
public interface IVirtualMachine : IDisposable
{
    /// <summary>The guest memory.</summary>
    GuestMemory Memory { get; }

    /// <summary>Creates a vCPU that will start at <paramref name="start"/> in flat 64-bit long mode.</summary>
    IVcpu CreateVcpu(in VcpuStartState start);

    /// <summary>
    /// Adds the pages the guest wrote since the last call to <see cref="Memory"/>'s dirty page map and starts a new
    /// round. Backends that declare <see cref="BackendCapabilities.DirtyPageTracking"/> and were created with
    /// <see cref="VirtualMachineOptions.TrackDirtyPages"/> implement it (KVM: <c>KVM_GET_DIRTY_LOG</c>; the emulator marks
    /// the map as the guest stores, so it has nothing to do); others do nothing. vCPUs stopped. (A host rewrite of guest
    /// memory, such as a restore, needs no call here: <see cref="GuestMemory"/>'s write path tells the backends that
    /// cache decoded code.)
    /// </summary>
    void CollectDirtyPages()
    {
    }
}

/// <summary>Initial register state of the boot vCPU (see <see cref="Abi.EntryConvention"/>).</summary>
/// <param name="Rip">Entry point (ELF <c>e_entry</c>).</param>
/// <param name="Rsp">Initial stack pointer (16-byte aligned).</param>
/// <param name="Rdi">First argument: guest-physical address of the boot info.</param>
/// <param name="Idt">IDTR to load (the VMM's default exception handlers), or empty for none. A backend that ends the run at an unhandled exception by itself (the emulator) leaves it unloaded.</param>
public readonly record struct VcpuStartState(ulong Rip, ulong Rsp, ulong Rdi, DescriptorTableRegister Idt = default);

/// <summary>
/// Optional abilities a backend declares (Cloud Hypervisor's and Hyperlight's approach): the VMM checks these flags,
/// never the backend's name or the vCPU's type.
/// </summary>
[Flags]
public enum BackendCapabilities
{
    /// <summary>Nothing beyond running guests.</summary>
    None = 0,
    /// <summary>Honours <see cref="VirtualMachineOptions.InstructionBudget"/> exactly (<see cref="VcpuExitKind.BudgetExhausted"/>).</summary>
    InstructionBudget = 1 << 0,
    /// <summary><see cref="IVcpu.InstructionsRetired"/> counts the guest instructions executed.</summary>
    InstructionCount = 1 << 1,
    /// <summary><see cref="IVcpu.RequestInterrupt"/> delivers external interrupts through the guest's IDT.</summary>
    InterruptInjection = 1 << 2,
    /// <summary>
    /// The guest's CPL 0 code owns the CPU's system state: its own page tables (CR3, U/S, NX), GDT, IDT and TSS, the
    /// SYSCALL MSRs, exceptions delivered through its IDT, and code of its own at CPL 3. The Linux personality (a
    /// library OS under a Linux executable) needs it. KVM with hardware virtualization and WHP have it; KVM under
    /// <c>kvm_pvm</c> does not (PVM runs the guest at hardware CPL 3 on shadow page tables and delivers events its own way).
    /// </summary>
    SupervisorMode = 1 << 3,
    /// <summary><see cref="IVirtualMachine.CollectDirtyPages"/> names the pages the guest wrote (with <see cref="VirtualMachineOptions.TrackDirtyPages"/>), so a snapshot restore copies only those.</summary>
    DirtyPageTracking = 1 << 4,
    /// <summary><see cref="IVcpu.Debug"/> offers breakpoints, watchpoints and single-step (a debugger can attach).</summary>
    GuestDebug = 1 << 5,
    /// <summary>Linear addresses go through the guest's page tables (CR3), as on hardware; without it the backend maps linear = guest-physical whatever CR3 holds.</summary>
    PageTables = 1 << 6,
}
