namespace Paravirt.Hypervisor.Running;

/// <summary>How a guest run ended.</summary>
public enum RunOutcome
{
    /// <summary>The guest called the exit hypercall; <see cref="RunResult.ExitStatus"/> holds its status.</summary>
    Exited,
    /// <summary>The wall-clock timeout passed.</summary>
    TimedOut,
    /// <summary>The instruction budget ran out (emulator).</summary>
    BudgetExhausted,
    /// <summary>The guest crashed: a CPU exception, a triple fault, a stray <c>hlt</c>, port I/O or MMIO.</summary>
    Faulted,
    /// <summary>The caller cancelled the run.</summary>
    Canceled,
    /// <summary>The backend could not go on although the guest did nothing wrong: an instruction the emulator does not implement, a KVM internal error, an exit the backend does not know.</summary>
    BackendFailed,
}

/// <summary>The result of <see cref="GuestRunner"/>.</summary>
/// <param name="Outcome">How the run ended.</param>
/// <param name="ExitStatus">The guest's exit status when <paramref name="Outcome"/> is <see cref="RunOutcome.Exited"/>.</param>
/// <param name="Backend">The backend that ran the guest.</param>
/// <param name="Message">One line describing the end (for faults: what, where).</param>
/// <param name="Statistics">Exit and hypercall counts.</param>
public sealed record RunResult(RunOutcome Outcome, long ExitStatus, string Backend, string Message, RunStatistics Statistics)
{
    /// <summary>For a Linux executable killed by a signal: the signal number (the exit status is then 128 + it, as a shell reports it); otherwise null.</summary>
    public int? TerminatingSignal { get; init; }

    /// <summary>When the guest crashed (<see cref="RunOutcome.Faulted"/>), or a Linux application was killed by a signal and the library OS passed its registers (<see cref="TerminatingSignal"/>): the fault, registers, code and backtrace, as data.</summary>
    public Debugging.CrashReport? Crash { get; init; }

    /// <summary>The core file written for the crash (<see cref="GuestRunOptions.CoreFile"/>), or null.</summary>
    public string? CoreFile { get; init; }

    /// <summary>Why the core file could not be written, or null.</summary>
    public string? CoreFileError { get; init; }
}

/// <summary>Counts of VM exits by kind and hypercalls by code, for <c>--stats</c> and metrics.</summary>
public sealed class RunStatistics
{
    /// <summary>One counter per <see cref="VcpuExitKind"/> (looked up once: <c>Enum.GetValues</c> allocates an array each call, and every run makes statistics).</summary>
    private static readonly int ExitKinds = Enum.GetValues<VcpuExitKind>().Length;

    private readonly long[] _exits = new long[ExitKinds];
    private readonly Dictionary<uint, long> _hypercalls = [];

    /// <summary>Exits by kind (kinds never seen are omitted).</summary>
    public IReadOnlyDictionary<VcpuExitKind, long> Exits
    {
        get
        {
            var d = new Dictionary<VcpuExitKind, long>();
            for (int i = 0; i < _exits.Length; i++)
            {
                if (_exits[i] != 0)
                {
                    d[(VcpuExitKind)i] = _exits[i];
                }
            }
            return d;
        }
    }

    /// <summary>
    /// Hypercalls by function code, for the codes the dispatcher knows; calls to codes nobody registered are counted
    /// together in <see cref="OtherHypercalls"/> (a guest cycling through codes must not grow this table).
    /// </summary>
    public IReadOnlyDictionary<uint, long> Hypercalls => _hypercalls;

    /// <summary>Hypercalls to codes nobody registered (answered <c>NotImplemented</c>), all codes together.</summary>
    public long OtherHypercalls { get; private set; }

    /// <summary>Console bytes the guest produced past <see cref="GuestLimits.ConsoleOutputLimit"/>, discarded.</summary>
    public long ConsoleBytesDiscarded { get; internal set; }

    /// <summary>Guest instructions executed, where the backend counts them (the emulator); otherwise null.</summary>
    public ulong? InstructionsRetired { get; internal set; }

    /// <summary>Wall-clock duration of the run.</summary>
    public TimeSpan Elapsed { get; internal set; }

    /// <summary>For a Linux executable: the system calls the Linux personality does not implement (it answered -ENOSYS), by number, with how often each was made.</summary>
    public IReadOnlyDictionary<ulong, long> UnimplementedSyscalls { get; internal set; } = new Dictionary<ulong, long>();

    internal void CountExit(VcpuExitKind kind) => _exits[(int)kind]++;

    internal void CountHypercall(ulong code, bool registered)
    {
        if (!registered)
        {
            OtherHypercalls++;
            return;
        }
        uint key = (uint)code; // registered codes are 32-bit
        _hypercalls[key] = _hypercalls.GetValueOrDefault(key) + 1;
    }
}
