using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Paravirt.Packaging.Tests;

/// <summary>A fact that builds a C guest with gcc for x86-64: needs Linux on x86-64, skipped elsewhere.</summary>
public sealed class LinuxX64FactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the host is not Linux x86-64.</summary>
    public LinuxX64FactAttribute()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Skip = $"builds an x86-64 guest with gcc: needs Linux x86-64 (this is {RuntimeInformation.OSDescription}, {RuntimeInformation.ProcessArchitecture})";
        }
    }
}

/// <summary>Runs external commands (dotnet, the installed tool) with a time limit and captured output.</summary>
public static class Command
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr)
    {
        public string Describe(string what) => $"{what} exited with {ExitCode}\n--- stdout ---\n{Tail(StdOut)}\n--- stderr ---\n{Tail(StdErr)}";

        private static string Tail(string s) => s.Length <= 6000 ? s : "..." + s[^6000..];
    }

    /// <summary>The dotnet host that runs these tests (so a consumer build uses the same SDK), else dotnet on PATH.</summary>
    public static string Dotnet { get; } = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } p && File.Exists(p) ? p : "dotnet";

    public static Result Run(string fileName, string workingDirectory, IReadOnlyDictionary<string, string?> environment, TimeSpan limit, params string[] args)
    {
        var psi = new ProcessStartInfo(fileName)
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
        // The test host runs under `dotnet test`, whose MSBuild variables must not leak into the consumer's build.
        foreach (string key in psi.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            psi.Environment.Remove(key);
        }
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        foreach ((string key, string? value) in environment)
        {
            psi.Environment[key] = value;
        }
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"{fileName} did not start");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"cannot start {fileName}: {e.Message}", e);
        }
        using (process)
        {
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(limit))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                Assert.Fail($"{fileName} {string.Join(' ', args)} did not finish within {limit.TotalSeconds:0} s\n{stdout.Result}\n{stderr.Result}");
            }
            return new Result(process.ExitCode, stdout.Result, stderr.Result);
        }
    }
}
