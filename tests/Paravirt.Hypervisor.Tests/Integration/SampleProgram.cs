namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>Runs a sample host program (samples/NAME, built by the solution in this test project's configuration) as its own process.</summary>
internal static class SampleProgram
{
    internal sealed record Result(int ExitCode, string Output, string Errors)
    {
        public override string ToString() => $"exit {ExitCode}\n{Output}\n{Errors}";
    }

    public static Task<Result> RunAsync(string sample, params string[] args)
    {
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        string dll = Path.Combine(RepoPaths.Root, "samples", sample, "bin", configuration, "net10.0", sample + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: build the solution first");
        ProcessResult r = ProcessRunner.Run("dotnet", [dll, .. args], limit: TimeSpan.FromMinutes(2));
        return Task.FromResult(new Result(r.ExitCode, r.StdOut, r.StdErr));
    }
}
