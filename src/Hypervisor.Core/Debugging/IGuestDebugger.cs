namespace Paravirt.Hypervisor.Debugging;

/// <summary>
/// A debugger attached to one guest run (<see cref="GuestRunOptions.Debugger"/>), such as <see cref="Gdb.GdbStub"/>.
/// The runner calls it on the vCPU thread each time the guest stops for it: once before the first instruction
/// (<see cref="DebugStopKind.Attach"/>), then at breakpoints, steps, watchpoints, interrupts and faults. While
/// <see cref="OnStop"/> runs the guest is frozen and the debugger reads and changes it through the
/// <see cref="GuestDebugTarget"/>. Needs a backend that declares <see cref="Backends.BackendCapabilities.GuestDebug"/>.
/// </summary>
public interface IGuestDebugger
{
    /// <summary>The guest stopped: inspect or change it through <paramref name="target"/>, then say how it goes on.</summary>
    DebugResume OnStop(GuestDebugTarget target, DebugStop stop);

    /// <summary>The run ended (the guest exited or crashed, the debugger killed it, the time ran out): the last call.</summary>
    void OnRunEnded(RunResult result);
}

/// <summary>Why the guest stopped for the debugger.</summary>
public enum DebugStopKind
{
    /// <summary>The debugger attached before the guest's first instruction (rip = the entry point).</summary>
    Attach,
    /// <summary>A software or hardware breakpoint; its instruction has not run.</summary>
    Breakpoint,
    /// <summary>A single step completed.</summary>
    Step,
    /// <summary>A watched location was accessed (<see cref="DebugStop.WatchAddress"/>); the instruction completed.</summary>
    Watchpoint,
    /// <summary>The debugger asked the running guest to stop (<see cref="GuestDebugTarget.RequestStop"/>).</summary>
    Interrupted,
    /// <summary>The guest crashed (<see cref="DebugStop.Fault"/>): resuming with <see cref="DebugResume.DeliverFault"/> ends the run with the crash.</summary>
    Fault,
}

/// <summary>One stop reported to <see cref="IGuestDebugger.OnStop"/>.</summary>
/// <param name="Kind">Why the guest stopped.</param>
/// <param name="Rip">The instruction pointer.</param>
/// <param name="WatchAddress">The watched address, for <see cref="DebugStopKind.Watchpoint"/>.</param>
/// <param name="Fault">What went wrong, for <see cref="DebugStopKind.Fault"/>.</param>
public sealed record DebugStop(DebugStopKind Kind, ulong Rip, ulong? WatchAddress = null, GuestFaultInfo? Fault = null);

/// <summary>What the guest does after a stop.</summary>
public enum DebugResumeAction
{
    /// <summary>Run until the next breakpoint, watchpoint, interrupt, fault or the end.</summary>
    Continue,
    /// <summary>Execute one instruction, then stop again (<see cref="DebugStopKind.Step"/>).</summary>
    Step,
    /// <summary>End the run now (<see cref="RunOutcome.Canceled"/>).</summary>
    Kill,
    /// <summary>Remove every breakpoint and watchpoint and let the guest run on without the debugger.</summary>
    Detach,
}

/// <summary>How to go on after a stop.</summary>
/// <param name="Action">Continue, step, kill or detach.</param>
/// <param name="DeliverFault">
/// After a <see cref="DebugStopKind.Fault"/> stop: true (as gdb's default of passing the signal) ends the run with the
/// crash; false retries the faulting instruction (the debugger fixed the state, as gdb's <c>signal 0</c>). Ignored
/// for other stops.
/// </param>
public readonly record struct DebugResume(DebugResumeAction Action, bool DeliverFault = true)
{
    /// <summary>Continue.</summary>
    public static DebugResume Continue => new(DebugResumeAction.Continue);
    /// <summary>Step one instruction.</summary>
    public static DebugResume Step => new(DebugResumeAction.Step);
    /// <summary>End the run.</summary>
    public static DebugResume Kill => new(DebugResumeAction.Kill);
    /// <summary>Detach.</summary>
    public static DebugResume Detach => new(DebugResumeAction.Detach);
}
