namespace Paravirt.Abi.Tests;

/// <summary>
/// The guest's ring helpers (paravirt/ring.h) and command-line parser (runtime/cmdline.c), compiled with the host
/// gcc against a back-end that follows the host's ring rules, with the free-running indices forced across the u32
/// wrap (native/ring_selftest.c). The end-to-end device tests never run long enough to wrap.
/// </summary>
public sealed class RingHelperTests
{
    [LinuxX64Fact]
    public void RingHelpers_and_cmdline_pass_their_native_selftest_across_the_index_wrap()
    {
        using var tmp = new TempDirectory("abi");
        string exe = Path.Combine(tmp.Path, "ring_selftest");
        ProcessResult build = Gcc.Run(tmp.Path, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", RepoPaths.GuestIncludeDir,
            Path.Combine(AppContext.BaseDirectory, "native", "ring_selftest.c"),
            Path.Combine(RepoPaths.GuestNativeDir, "runtime", "cmdline.c"), "-o", exe);
        Assert.True(build.ExitCode == 0, $"building the ring self-test failed:\n{build.StdOut}{build.StdErr}");

        ProcessResult run = ProcessRunner.Run(exe, [], limit: TimeSpan.FromSeconds(30));
        Assert.True(run.ExitCode == 0, run.Describe("ring_selftest"));
        Assert.Matches(@"^ring: \d{4,} checks, 0 failed\n$", run.StdOut);
    }
}
