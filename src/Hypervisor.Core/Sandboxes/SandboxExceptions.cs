namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>What a sandbox is doing.</summary>
public enum SandboxState
{
    /// <summary>Initialized and idle: calls are accepted.</summary>
    Ready,
    /// <summary>A call failed (fault, stack overflow, timeout, budget, cancellation, protocol violation, exit): calls are refused until <see cref="Sandbox.Restore"/>.</summary>
    Poisoned,
    /// <summary>Disposed.</summary>
    Disposed,
}

/// <summary>Why a call failed and poisoned its sandbox.</summary>
public enum SandboxFailure
{
    /// <summary>The guest crashed (a CPU exception, a stray <c>hlt</c>, port I/O, an access outside memory).</summary>
    Faulted,
    /// <summary>The guest overflowed its stack into the guard page below it.</summary>
    StackOverflow,
    /// <summary>The call passed <see cref="SandboxOptions.CallTimeout"/>.</summary>
    TimedOut,
    /// <summary>The call used up <see cref="SandboxOptions.CallInstructionBudget"/>.</summary>
    BudgetExhausted,
    /// <summary>The caller cancelled the call.</summary>
    Canceled,
    /// <summary>The guest called the exit hypercall instead of returning.</summary>
    Exited,
    /// <summary>The guest broke the call protocol (a malformed or oversized result, a bad buffer).</summary>
    ProtocolViolation,
    /// <summary>The backend could not go on although the guest did nothing wrong (an emulator gap, a KVM error).</summary>
    BackendFailed,
}

/// <summary>Base of the errors a <see cref="Sandbox"/> reports.</summary>
public class SandboxException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SandboxException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public SandboxException() { }
    /// <summary>Creates the exception.</summary>
    public SandboxException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The guest function returned an error (a status and a message). The sandbox stays usable.</summary>
public sealed class GuestFunctionException : SandboxException
{
    /// <summary>Creates the exception.</summary>
    public GuestFunctionException(string function, HypercallStatus status, string message)
        : base($"guest function '{function}' failed ({status}): {message}")
    {
        Function = function;
        Status = status;
        GuestMessage = message;
    }

    /// <summary>Creates the exception.</summary>
    public GuestFunctionException() : this("", HypercallStatus.IoError, "") { }
    /// <summary>Creates the exception.</summary>
    public GuestFunctionException(string message) : this("", HypercallStatus.IoError, message) { }
    /// <summary>Creates the exception.</summary>
    public GuestFunctionException(string message, Exception inner) : base(message, inner) => (Function, GuestMessage) = ("", message);

    /// <summary>The function called.</summary>
    public string Function { get; }
    /// <summary>The status the guest returned (or <see cref="HypercallStatus.Protocol"/> when its result did not decode as the expected type).</summary>
    public HypercallStatus Status { get; }
    /// <summary>The guest's message.</summary>
    public string GuestMessage { get; }
}

/// <summary>A call failed in a way that leaves the guest in an unknown state: the sandbox is now <see cref="SandboxState.Poisoned"/>.</summary>
public sealed class SandboxCallFailedException : SandboxException
{
    /// <summary>Creates the exception.</summary>
    public SandboxCallFailedException(string function, SandboxFailure failure, string message, ulong? faultAddress = null)
        : base($"call to guest function '{function}' failed ({failure}): {message}; the sandbox is poisoned until restored")
    {
        Function = function;
        Failure = failure;
        FaultAddress = faultAddress;
    }

    /// <summary>Creates the exception.</summary>
    public SandboxCallFailedException() : this("", SandboxFailure.Faulted, "") { }
    /// <summary>Creates the exception.</summary>
    public SandboxCallFailedException(string message) : this("", SandboxFailure.Faulted, message) { }
    /// <summary>Creates the exception.</summary>
    public SandboxCallFailedException(string message, Exception inner) : base(message, inner) => Function = "";

    /// <summary>The function called.</summary>
    public string Function { get; }
    /// <summary>Why it failed.</summary>
    public SandboxFailure Failure { get; }
    /// <summary>The faulting guest address (a stack overflow's address in the guard page), where there is one.</summary>
    public ulong? FaultAddress { get; }
}

/// <summary>The sandbox refuses calls: an earlier call poisoned it. <see cref="Sandbox.Restore"/> a snapshot first.</summary>
public sealed class SandboxPoisonedException : SandboxException
{
    /// <summary>Creates the exception.</summary>
    public SandboxPoisonedException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public SandboxPoisonedException() { }
    /// <summary>Creates the exception.</summary>
    public SandboxPoisonedException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The guest did not reach its ready point (<c>pv_sandbox_serve</c>): it exited, crashed or timed out during initialization, or is not a sandbox guest.</summary>
public sealed class SandboxInitializationException : SandboxException
{
    /// <summary>Creates the exception.</summary>
    public SandboxInitializationException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public SandboxInitializationException() { }
    /// <summary>Creates the exception.</summary>
    public SandboxInitializationException(string message, Exception inner) : base(message, inner) { }
}
