using System.ComponentModel;
using System.Diagnostics;

namespace Paravirt.Abi.Tests;

/// <summary>Runs gcc for the C-side tests; a missing gcc is a test failure with the install command.</summary>
internal static class Gcc
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr);

    public static Result Run(string workingDirectory, params string[] args)
    {
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("PARAVIRT_CC") ?? "gcc")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException("gcc did not start");
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"gcc not found: install gcc (apt-get install gcc) [{e.Message}]");
            throw;
        }
        using (p)
        {
            Task<string> stdout = p.StandardOutput.ReadToEndAsync();
            Task<string> stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                p.Kill(entireProcessTree: true);
                Assert.Fail("gcc did not finish within 2 minutes");
            }
            return new Result(p.ExitCode, stdout.Result, stderr.Result);
        }
    }

    /// <summary>A fresh temporary directory, deleted on dispose.</summary>
    public sealed class TempDir : IDisposable
    {
        public TempDir()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "paravirt-abi-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Path);
        }

        public string Path { get; }

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
                // Best effort: a leftover temp directory does not change any result.
            }
        }
    }
}
