using System.ComponentModel;
using System.Diagnostics;

namespace Paravirt.Testing;

/// <summary>What a child process left behind.</summary>
/// <param name="ExitCode">Its exit status.</param>
/// <param name="StdOut">All it wrote to standard output.</param>
/// <param name="StdErr">All it wrote to standard error.</param>
public sealed record ProcessResult(int ExitCode, string StdOut, string StdErr)
{
    /// <summary>A failure message: the command, its status and the tail of both streams.</summary>
    public string Describe(string what) => $"{what} exited with {ExitCode}\n--- stdout ---\n{Tail(StdOut)}\n--- stderr ---\n{Tail(StdErr)}";

    private static string Tail(string s) => s.Length <= 6000 ? s : "..." + s[^6000..];
}

/// <summary>
/// Runs a child process to completion for a test: arguments passed one by one (no shell quoting), standard input
/// closed, both output streams read concurrently (a chatty child cannot deadlock on a full pipe), and a time limit
/// after which the whole process tree is killed and the test fails with what it printed.
/// </summary>
public static class ProcessRunner
{
    /// <summary>The time limit when the caller names none: a compiler or a guest that takes longer is a failure.</summary>
    public static readonly TimeSpan DefaultLimit = TimeSpan.FromMinutes(2);

    /// <summary>Runs <paramref name="fileName"/> with <paramref name="args"/> and returns its status and output.</summary>
    /// <param name="fileName">The program (a path, or a name looked up on PATH).</param>
    /// <param name="args">Its arguments.</param>
    /// <param name="workingDirectory">Where it runs (the test's current directory when null).</param>
    /// <param name="environment">Variables to set; a null value removes the variable.</param>
    /// <param name="limit">How long it may run (<see cref="DefaultLimit"/> when null).</param>
    /// <param name="clearEnvironment">Start from an empty environment (before <paramref name="environment"/> applies).</param>
    public static ProcessResult Run(
        string fileName,
        IEnumerable<string> args,
        string? workingDirectory = null,
        IEnumerable<KeyValuePair<string, string?>>? environment = null,
        TimeSpan? limit = null,
        bool clearEnvironment = false)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (workingDirectory is not null)
        {
            psi.WorkingDirectory = workingDirectory;
        }
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        if (clearEnvironment)
        {
            psi.Environment.Clear();
        }
        foreach ((string key, string? value) in environment ?? [])
        {
            if (value is null)
            {
                psi.Environment.Remove(key);
            }
            else
            {
                psi.Environment[key] = value;
            }
        }
        string command = $"{fileName} {string.Join(' ', psi.ArgumentList)}";
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"{fileName} did not start");
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"cannot start {fileName} ({e.Message}): is it installed? (eng/install-deps.sh installs what the tests need)");
            throw;
        }
        using (process)
        {
            process.StandardInput.Close();
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            TimeSpan allowed = limit ?? DefaultLimit;
            if (!process.WaitForExit(allowed))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                Assert.Fail($"{command} did not finish within {allowed.TotalSeconds:0} s\n{stdout.Result}\n{stderr.Result}");
            }
            return new ProcessResult(process.ExitCode, stdout.Result, stderr.Result);
        }
    }

    /// <summary>Runs <paramref name="fileName"/>, fails the test unless it exits with 0, and returns its standard output.</summary>
    public static string RunChecked(string fileName, params string[] args)
    {
        ProcessResult r = Run(fileName, args);
        Assert.True(r.ExitCode == 0, r.Describe($"{fileName} {string.Join(' ', args)}"));
        return r.StdOut;
    }

    /// <summary>The full path of <paramref name="tool"/> found on PATH, or null.</summary>
    public static string? FindOnPath(string tool)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, tool);
            if (System.IO.File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }
}
