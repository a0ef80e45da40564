namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>Boots the real hello unikernel (built from samples/hello by the normal build) on the emulator.</summary>
public sealed class HelloGuestTests
{
    internal static GuestRunner EmulatorRunner() =>
        new(new BackendSelector([new EmulatorBackend()]), new HypercallDispatcher([new CoreHypercalls()]));

    [Fact]
    public void Hello_on_the_emulator_greets_prints_the_wall_clock_and_exits_with_7()
    {
        GuestImage image = ElfLoader.LoadFile(RepoPaths.GuestImage("hello"), AbiVersion.Current);
        using var console = new MemoryStream();
        RunResult result = EmulatorRunner().Run(image, new GuestRunOptions { Backend = "emulator", ConsoleOutput = console, Timeout = TimeSpan.FromSeconds(30) });
        string output = Encoding.UTF8.GetString(console.ToArray());

        Assert.True(result.Outcome == RunOutcome.Exited, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.Equal(7, result.ExitStatus);
        Assert.Contains("Hello from a Paravirt unikernel!", output, StringComparison.Ordinal);
        Assert.Contains($"ABI {AbiVersion.Current}", output, StringComparison.Ordinal);
        Assert.Contains($"wall clock {DateTime.UtcNow:yyyy-MM-dd}", output, StringComparison.Ordinal);
        Assert.Equal("emulator", result.Backend);
        Assert.True(result.Statistics.Hypercalls.ContainsKey((uint)HypercallCode.Version), "hello checks the ABI version through a hypercall");
        Assert.True(result.Statistics.InstructionsRetired > 0);
    }

    [Fact]
    public void Hello_through_the_cli_streams_its_console_and_exits_with_its_status()
    {
        (int code, _, string stderr, byte[] guest) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--backend", "emulator", "--stats", "--verbose");
        string output = Encoding.UTF8.GetString(guest);
        Assert.True(code == 7, $"exit {code}\n{stderr}\n{output}");
        Assert.Contains("Hello from a Paravirt unikernel!", output, StringComparison.Ordinal);
        Assert.Contains("console_write", stderr, StringComparison.Ordinal);
        // --verbose: paravirt's own one-line format, and the backend choice said once.
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines, l => l.StartsWith("paravirt: backend emulator: ", StringComparison.Ordinal));
        Assert.Contains("paravirt: Exited: guest exited with status 7", lines);
        Assert.DoesNotContain(lines, l => l.StartsWith("info:", StringComparison.Ordinal));
        // --stats: one block after the run's log lines, its own lines indented, never interleaved with them.
        int stats = Array.FindIndex(lines, l => l.StartsWith("paravirt: stats: ", StringComparison.Ordinal));
        Assert.True(stats > 0 && lines.Skip(stats + 1).All(l => l.StartsWith("  ", StringComparison.Ordinal)), $"stats are not one closing block:\n{stderr}");
        Assert.All(lines.Take(stats), l => Assert.StartsWith("paravirt: ", l, StringComparison.Ordinal));
    }

    [Fact]
    public void Hello_is_refused_when_memory_is_too_small_for_it()
    {
        GuestImage image = ElfLoader.LoadFile(RepoPaths.GuestImage("hello"), AbiVersion.Current);
        // 2 MiB is the minimum memory; an image is refused only if it does not fit, so this must run.
        RunResult result = EmulatorRunner().Run(image, new GuestRunOptions { Backend = "emulator", MemorySize = 2UL << 20, Timeout = TimeSpan.FromSeconds(30) });
        Assert.Equal(RunOutcome.Exited, result.Outcome);
    }
}
