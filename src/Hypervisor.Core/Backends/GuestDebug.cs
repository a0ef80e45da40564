namespace Paravirt.Hypervisor.Backends;

/// <summary>
/// The debugging side of a vCPU, offered by backends that declare <see cref="BackendCapabilities.GuestDebug"/>
/// (<see cref="IVcpu.Debug"/>): breakpoints, watchpoints and single-step, reported as <see cref="VcpuExitKind.Debug"/>
/// exits. Backend-neutral: the emulator stops before a breakpoint address and runs one-instruction blocks to step;
/// KVM uses <c>KVM_SET_GUEST_DEBUG</c> (int3 for software breakpoints, debug registers for hardware breakpoints
/// and watchpoints, the trap flag to step). Called on the vCPU thread, between runs.
/// </summary>
public interface IVcpuDebug
{
    /// <summary>Most hardware breakpoints and watchpoints together (x86 has four debug address registers); the emulator has no limit.</summary>
    int MaxHardwareSlots { get; }

    /// <summary>The watchpoint kinds this backend supports.</summary>
    IReadOnlyList<WatchpointKind> WatchpointKinds { get; }

    /// <summary>Replaces the debug settings for the following runs.</summary>
    /// <exception cref="NotSupportedException">A setting the backend cannot honour (too many hardware slots, a watchpoint kind or length it lacks); the previous settings stay.</exception>
    /// <exception cref="BackendOperationException">The backend refused them.</exception>
    void SetGuestDebug(GuestDebugSettings settings);

    /// <summary>
    /// The host wrote guest-physical memory [<paramref name="physical"/>, +<paramref name="length"/>) that may hold
    /// code (a debugger's memory write): a backend that caches decoded code drops what it decoded from there.
    /// </summary>
    void CodeWritten(ulong physical, ulong length);
}

/// <summary>What makes a vCPU stop for a debugger. Addresses are linear (virtual) addresses.</summary>
public sealed record GuestDebugSettings
{
    /// <summary>No breakpoints, no watchpoints, no stepping.</summary>
    public static GuestDebugSettings None { get; } = new();

    /// <summary>Stop after every instruction (<see cref="DebugStopReason.SingleStep"/>).</summary>
    public bool SingleStep { get; init; }

    /// <summary>Software breakpoints: stop before executing the instruction at each address.</summary>
    public IReadOnlyList<ulong> Breakpoints { get; init; } = [];

    /// <summary>Hardware breakpoints (debug registers on hardware backends; the same as software ones on the emulator).</summary>
    public IReadOnlyList<ulong> HardwareBreakpoints { get; init; } = [];

    /// <summary>Data watchpoints: stop after an instruction that accessed the watched range.</summary>
    public IReadOnlyList<GuestWatchpoint> Watchpoints { get; init; } = [];

    /// <summary>True when nothing is set.</summary>
    public bool IsEmpty => !SingleStep && Breakpoints.Count == 0 && HardwareBreakpoints.Count == 0 && Watchpoints.Count == 0;
}

/// <summary>Which accesses a watchpoint catches.</summary>
public enum WatchpointKind
{
    /// <summary>Writes.</summary>
    Write,
    /// <summary>Reads.</summary>
    Read,
    /// <summary>Reads and writes.</summary>
    Access,
}

/// <summary>A data watchpoint.</summary>
/// <param name="Address">Linear address of the first watched byte.</param>
/// <param name="Length">Bytes watched (1, 2, 4 or 8 on hardware backends, aligned to the length).</param>
/// <param name="Kind">Which accesses stop the vCPU.</param>
public readonly record struct GuestWatchpoint(ulong Address, ulong Length, WatchpointKind Kind);

/// <summary>Why a <see cref="VcpuExitKind.Debug"/> exit happened.</summary>
public enum DebugStopReason
{
    /// <summary>Not a debug exit.</summary>
    None,
    /// <summary>The vCPU reached a software breakpoint; <see cref="VcpuExit.Rip"/> is its address, the instruction not yet executed.</summary>
    Breakpoint,
    /// <summary>The vCPU reached a hardware breakpoint; the instruction is not yet executed.</summary>
    HardwareBreakpoint,
    /// <summary>One instruction completed under <see cref="GuestDebugSettings.SingleStep"/>.</summary>
    SingleStep,
    /// <summary>An instruction accessed a watched range; <see cref="VcpuExit.Address"/> is the watchpoint's address, the instruction completed.</summary>
    Watchpoint,
}
