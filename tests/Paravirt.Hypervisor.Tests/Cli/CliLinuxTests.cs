namespace Paravirt.Hypervisor.Tests.Cli;

/// <summary>The command line for static Linux executables: arguments after '--', --env, and the refusals.</summary>
public sealed class CliLinuxTests
{
    private static void AssertOneErrorLine(string stderr, string mustContain)
    {
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{stderr}");
        Assert.StartsWith("paravirt: error: ", lines[0], StringComparison.Ordinal);
        Assert.Contains(mustContain, lines[0], StringComparison.Ordinal);
    }

    [DynamicShellFact]
    public void A_dynamically_linked_executable_is_refused_before_anything_runs()
    {
        (int code, _, string err, byte[] guest) = CliErrorTests.Run("run", DynamicShellFactAttribute.Shell, "--backend", "emulator");
        Assert.Equal(65, code);
        AssertOneErrorLine(err, "link it with -static");
        Assert.Empty(guest);
    }

    [Fact]
    public void Arguments_after_the_separator_are_for_a_Linux_executable_only()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--", "a");
        Assert.Equal(64, code);
        AssertOneErrorLine(err, "Linux executables");
    }

    [Fact]
    public void Environment_is_for_a_Linux_executable_only()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--env", "A=1");
        Assert.Equal(64, code);
        AssertOneErrorLine(err, "Linux executables");
    }

    [Fact]
    public void Arguments_after_the_separator_need_exactly_one_image()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), RepoPaths.GuestImage("hello"), "--", "a");
        Assert.Equal(64, code);
        AssertOneErrorLine(err, "exactly one image");
    }

    [Theory]
    [InlineData("NOEQUALS")]
    [InlineData("=v")]
    public void An_environment_entry_must_be_key_equals_value(string entry)
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--env", entry);
        Assert.Equal(64, code);
        AssertOneErrorLine(err, "KEY=VALUE");
    }

    [Fact]
    public void The_separator_keeps_the_application_s_own_flags_away_from_paravirt()
    {
        // "--bogus" after "--" is the application's: paravirt must not reject it as its own unknown flag.
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--", "--bogus");
        Assert.Equal(64, code);
        AssertOneErrorLine(err, "Linux executables"); // refused only because hello is not a Linux executable
    }
}
