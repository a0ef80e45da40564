namespace Paravirt.Cli;

/// <summary>
/// Process exit codes of <c>paravirt</c>. When the guest exits, its status (low 8 bits) is the process exit code;
/// the host-side failures use the BSD <c>sysexits.h</c> values and the <c>timeout(1)</c> convention so scripts can
/// tell them apart from the common guest statuses.
/// </summary>
internal static class ExitCodes
{
    /// <summary>Bad command-line arguments (EX_USAGE).</summary>
    public const int Usage = 64;
    /// <summary>The image file is missing, unreadable or not a valid Paravirt guest (EX_DATAERR).</summary>
    public const int BadImage = 65;
    /// <summary>A device cannot be set up: a disk image missing, unreadable, in use or of a wrong size; TAP refused (EX_NOINPUT).</summary>
    public const int DeviceUnavailable = 66;
    /// <summary>The requested backend cannot run here (EX_UNAVAILABLE).</summary>
    public const int BackendUnavailable = 69;
    /// <summary>The guest crashed: CPU exception, triple fault, stray hlt/port I/O/MMIO (EX_SOFTWARE).</summary>
    public const int GuestCrashed = 70;
    /// <summary>The backend failed although the guest did nothing wrong: an instruction the emulator does not implement, a KVM/WHP error (EX_OSERR).</summary>
    public const int BackendFailed = 71;
    /// <summary>The guest did not exit within its wall-clock timeout or instruction budget (as timeout(1)).</summary>
    public const int LimitReached = 124;
    /// <summary>Interrupted by Ctrl+C (128 + SIGINT).</summary>
    public const int Interrupted = 130;
    /// <summary>Stopped by SIGTERM (128 + SIGTERM), after the same clean cancellation as Ctrl+C.</summary>
    public const int Terminated = 143;

    /// <summary>
    /// The one mapping from the library's typed errors to exit codes: each failing operation throws its own type.
    /// Null for any other exception (a bug, which the CLI does not disguise as a user error).
    /// </summary>
    public static int? For(Exception error) => error switch
    {
        ImageFormatException => BadImage,
        DeviceConfigurationException => DeviceUnavailable,
        BackendUnavailableException => BackendUnavailable,
        BackendOperationException => BackendFailed,
        ArgumentException => Usage,
        _ => null,
    };

    /// <summary>
    /// The exit code of a run that did not end with the guest's own exit (<see cref="RunOutcome.Exited"/> gives the
    /// guest's status instead); <paramref name="signal"/> is the POSIX signal that cancelled the run, or 0.
    /// </summary>
    public static int For(RunOutcome outcome, int signal) => outcome switch
    {
        RunOutcome.TimedOut or RunOutcome.BudgetExhausted => LimitReached,
        RunOutcome.Canceled => signal == 15 ? Terminated : Interrupted,
        RunOutcome.BackendFailed => BackendFailed,
        RunOutcome.Faulted => GuestCrashed,
        _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "the guest's exit has its own status"),
    };
}
