namespace Paravirt.Packaging.Tests;

/// <summary>Runs external commands (dotnet, make, the installed tool) as a consumer would, outside the test host's build.</summary>
public static class Command
{
    /// <summary>The dotnet host that runs these tests (so a consumer build uses the same SDK), else dotnet on PATH.</summary>
    public static string Dotnet { get; } = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } p && File.Exists(p) ? p : "dotnet";

    public static ProcessResult Run(string fileName, string workingDirectory, IReadOnlyDictionary<string, string?> environment, TimeSpan limit, params string[] args)
    {
        // The test host runs under `dotnet test`, whose MSBuild variables must not leak into the consumer's build.
        IEnumerable<KeyValuePair<string, string?>> hostVariables = Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase))
            .Select(k => new KeyValuePair<string, string?>(k, null));
        KeyValuePair<string, string?>[] quiet =
        [
            new("DOTNET_NOLOGO", "1"),
            new("DOTNET_CLI_TELEMETRY_OPTOUT", "1"),
            new("DOTNET_SKIP_FIRST_TIME_EXPERIENCE", "1"),
        ];
        return ProcessRunner.Run(fileName, args, workingDirectory, [.. hostVariables, .. quiet, .. environment], limit);
    }
}
