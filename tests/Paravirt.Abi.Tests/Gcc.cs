namespace Paravirt.Abi.Tests;

/// <summary>The C compiler of the C-side tests: gcc, or <c>PARAVIRT_CC</c> when set.</summary>
internal static class Gcc
{
    public static ProcessResult Run(string workingDirectory, params string[] args) =>
        ProcessRunner.Run(Environment.GetEnvironmentVariable("PARAVIRT_CC") ?? "gcc", args, workingDirectory);
}
