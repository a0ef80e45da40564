namespace Paravirt.Testing;

/// <summary>Builds a C guest the way a guest author does: <c>make -f paravirt.mk</c> from the guest SDK.</summary>
public static class GuestBuilder
{
    /// <summary>
    /// Builds <paramref name="output"/> from <paramref name="sources"/> (space-separated, relative to
    /// <paramref name="workingDirectory"/> or absolute); the C compiler is <c>PARAVIRT_CC</c> when set.
    /// </summary>
    public static ProcessResult Make(string workingDirectory, string sources, string output)
    {
        string[] args = ["-s", "-f", Path.Combine(RepoPaths.GuestNativeDir, "paravirt.mk"), "PV_GUEST=" + output, "PV_SRCS=" + sources, output];
        if (Environment.GetEnvironmentVariable("PARAVIRT_CC") is { Length: > 0 } cc)
        {
            args = [.. args, "PV_CC=" + cc];
        }
        return ProcessRunner.Run("make", args, workingDirectory);
    }

    /// <summary>Builds a guest and fails the test with the compiler's output when the build fails.</summary>
    public static string MakeChecked(string workingDirectory, string sources, string output)
    {
        ProcessResult r = Make(workingDirectory, sources, output);
        Assert.True(r.ExitCode == 0, r.Describe($"building {output} with paravirt.mk (apt-get install make gcc)"));
        return Path.Combine(workingDirectory, output);
    }
}
