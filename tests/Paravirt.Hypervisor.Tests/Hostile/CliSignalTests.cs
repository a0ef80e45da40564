namespace Paravirt.Hypervisor.Tests.Hostile;

/// <summary>
/// What a new user met (issue 13): SIGTERM gets the same clean cancellation as Ctrl+C, piped standard input ends,
/// an unknown backend is a usage error, and a directory given as a disk says so.
/// </summary>
public sealed class CliSignalTests() : TestWithTempDirectory("cli-signal")
{
    private string SpinImage()
    {
        string path = Path.Combine(Dir, "spin.elf");
        File.WriteAllBytes(path, RunLimitsTests.CodeImage(0xEB, 0xFE));
        return path;
    }

    /// <summary>Starts <c>paravirt</c> (the CLI assembly the test project references) as a child process.</summary>
    private static Process StartCli(params string[] args)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "paravirt.dll");
        Assert.True(File.Exists(cli), $"{cli} is missing");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(cli);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return Process.Start(psi) ?? throw new InvalidOperationException("dotnet did not start");
    }

    private static void Kill(int pid, string signal)
    {
        using Process kill = Process.Start("kill", ["-" + signal, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    [LinuxFact]
    public void Sigterm_cancels_the_run_cleanly_prints_the_stats_and_exits_143()
    {
        using Process p = StartCli("run", SpinImage(), "--backend", "emulator", "--stats", "--verbose", "--timeout", "5m");
        using var reaper = new Reaper(p); // the guest spins: never leave it running when an assertion fails
        var stderr = new StringBuilder();
        using var started = new ManualResetEventSlim();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }
            if (e.Data.Contains("of guest memory", StringComparison.Ordinal)) // the run's first log line (--verbose)
            {
                started.Set();
            }
        };
        p.BeginErrorReadLine();
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Assert.True(started.Wait(TimeSpan.FromSeconds(60)), $"the guest did not start:\n{stderr}");
        Kill(p.Id, "TERM");
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "paravirt did not exit after SIGTERM");
        p.WaitForExit();
        string err;
        lock (stderr)
        {
            err = stderr.ToString();
        }
        Assert.True(p.ExitCode == 143, $"exit {p.ExitCode}:\n{err}{stdout.Result}");
        Assert.Contains("paravirt: stats:", err, StringComparison.Ordinal);
        Assert.Contains("paravirt: error: ", err, StringComparison.Ordinal);
        Assert.Contains("SIGTERM", err, StringComparison.Ordinal);
    }

    [LinuxFact]
    public void Piped_standard_input_ends_for_the_guest()
    {
        using Process p = StartCli("run", HostileGuests.Path("eof_reader"), "--backend", "emulator", "--timeout", "60s");
        using var reaper = new Reaper(p);
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write("first line\nsecond\n");
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(90)), "paravirt did not exit after its input ended");
        Assert.True(p.ExitCode == 0, $"exit {p.ExitCode}:\n{stderr.Result}{stdout.Result}");
        Assert.Contains("eof_reader: 2 lines, 16 bytes, end of input", stdout.Result, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_backend_is_a_usage_error()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", SpinImage(), "--backend", "foo");
        Assert.True(code == 64, $"exit {code}: {err}");
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("foo", err, StringComparison.Ordinal);
        Assert.Contains("emulator", err, StringComparison.Ordinal); // says what is allowed
    }

    [Fact]
    public void A_directory_given_as_a_disk_is_reported_as_a_directory()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", SpinImage(), "--backend", "emulator", "--disk", Dir);
        Assert.True(code == 66, $"exit {code}: {err}");
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("is a directory", err, StringComparison.Ordinal);
        Assert.DoesNotContain("permission denied", err, StringComparison.Ordinal);
    }
}

/// <summary>Kills a child process that is still running when the test ends (passed or failed).</summary>
internal sealed class Reaper(Process process) : IDisposable
{
    public void Dispose()
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // It exited in the meantime.
        }
    }
}
