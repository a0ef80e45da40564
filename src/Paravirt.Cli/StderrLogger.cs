namespace Paravirt.Cli;

/// <summary>
/// Logs as paravirt's own lines on the CLI's stderr writer (<c>paravirt: ...</c>, <c>paravirt: warning: ...</c>), so
/// <c>--verbose</c> reads like the rest of the tool, and in-process runs (tests) capture it with everything else.
/// </summary>
internal sealed class StderrLoggerProvider(TextWriter stderr, LogLevel minimum) : ILoggerProvider
{
    private readonly Lock _write = new(); // several VMs log from their own vCPU threads

    public ILogger CreateLogger(string categoryName) => new StderrLogger(this);

    public void Dispose()
    {
    }

    private sealed class StderrLogger(StderrLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= owner.Minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }
            string level = logLevel switch
            {
                LogLevel.Warning => "warning: ",
                LogLevel.Error or LogLevel.Critical => "error: ",
                LogLevel.Debug or LogLevel.Trace => "debug: ",
                _ => "",
            };
            string line = $"paravirt: {level}{formatter(state, exception).ReplaceLineEndings(" ")}"
                + (exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message.ReplaceLineEndings(" ")})");
            lock (owner._write)
            {
                owner.Stderr.WriteLine(line);
            }
        }
    }

    private LogLevel Minimum => minimum;

    private TextWriter Stderr => stderr;
}
