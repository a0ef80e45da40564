namespace Paravirt.Hypervisor.Running;

/// <summary>
/// The per-run caps on what a guest can make the host spend beyond its guest memory (docs/security.md has the whole
/// table, including the fixed per-device caps). The defaults are safe for an untrusted guest; raise them per run
/// (<see cref="GuestRunOptions.Limits"/>), per application (<see cref="ParavirtOptions.DefaultLimits"/>) or on the
/// command line (<c>--max-output</c>).
/// </summary>
public sealed record GuestLimits
{
    /// <summary>Default <see cref="ConsoleBufferSize"/>: 256 KiB.</summary>
    public const int DefaultConsoleBufferSize = 256 * 1024;

    /// <summary>Default <see cref="ConsoleOutputLimit"/>: 64 MiB.</summary>
    public const long DefaultConsoleOutputLimit = 64L << 20;

    /// <summary>The defaults.</summary>
    public static GuestLimits Default { get; } = new();

    /// <summary>
    /// Host memory buffering the guest's <c>console_write</c>/<c>debug_write</c> output on its way to
    /// <see cref="GuestRunOptions.ConsoleOutput"/> (4 KiB to 64 MiB). When the reader is slower than the guest the
    /// buffer fills and the guest waits inside the hypercall, which returns <c>TryAgain</c> after a short wait; the
    /// vCPU thread never blocks on the output stream.
    /// </summary>
    public int ConsoleBufferSize { get; init; } = DefaultConsoleBufferSize;

    /// <summary>
    /// Console bytes one run may produce in total (<c>console_write</c>, <c>debug_write</c> and every console
    /// device's output ring together); past it the guest's output is discarded and counted in
    /// <see cref="RunStatistics.ConsoleBytesDiscarded"/> (<c>console_write</c> answers <c>NoSpace</c>). Null: no limit.
    /// </summary>
    public long? ConsoleOutputLimit { get; init; } = DefaultConsoleOutputLimit;

    /// <summary>
    /// After the guest exits, how long the run waits for a slow reader to take the output still buffered; never
    /// past the run's timeout. After a timeout or cancellation the run does not wait beyond
    /// <see cref="StopLatency"/>.
    /// </summary>
    public TimeSpan OutputDrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The bound the host keeps between a run's deadline (timeout or cancellation) and the run's return, whatever the
    /// guest executes: the host's own part (stopping the vCPU, delivering the guest's last output to a reader that
    /// keeps up); scheduling delays of a loaded machine come on top. 10 ms.
    /// </summary>
    public static TimeSpan StopLatency { get; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Checks the values; the message names the bad one.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        if (ConsoleBufferSize is < 4096 or > 64 << 20)
        {
            throw new ArgumentException($"GuestLimits.ConsoleBufferSize {ConsoleBufferSize} must be 4 KiB to 64 MiB");
        }
        if (ConsoleOutputLimit < 0)
        {
            throw new ArgumentException($"GuestLimits.ConsoleOutputLimit {ConsoleOutputLimit} must not be negative (null for no limit)");
        }
        if (OutputDrainTimeout < TimeSpan.Zero)
        {
            throw new ArgumentException($"GuestLimits.OutputDrainTimeout {OutputDrainTimeout} must not be negative");
        }
    }
}
