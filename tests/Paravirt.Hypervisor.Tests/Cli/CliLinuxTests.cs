namespace Paravirt.Hypervisor.Tests.Cli;

/// <summary>The command line for static Linux executables: arguments after '--', --env, and the refusals.</summary>
public sealed class CliLinuxTests
{
    [DynamicShellFact]
    public void A_dynamically_linked_executable_is_refused_before_anything_runs()
    {
        (int code, _, string err, byte[] guest) = CliErrorTests.Run("run", DynamicShellFactAttribute.Shell, "--backend", "emulator");
        Assert.Equal(65, code);
        CliErrorTests.AssertOneErrorLine(err, "link it with -static");
        Assert.Empty(guest);
    }

    [Fact]
    public void Arguments_after_the_separator_need_exactly_one_image()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), RepoPaths.GuestImage("hello"), "--", "a");
        Assert.Equal(64, code);
        CliErrorTests.AssertOneErrorLine(err, "exactly one image");
    }

    /// <summary>Usage errors (exit 64, one line) for what follows an image that is not a Linux executable.</summary>
    [Theory]
    [InlineData("Linux executables", "--", "a")] // arguments after the separator are for a Linux executable only
    [InlineData("Linux executables", "--env", "A=1")] // and so is the environment
    [InlineData("Linux executables", "--", "--bogus")] // "--bogus" after "--" is the application's flag, not refused as paravirt's own
    [InlineData("KEY=VALUE", "--env", "NOEQUALS")]
    [InlineData("KEY=VALUE", "--env", "=v")]
    public void Linux_only_arguments_after_a_Paravirt_guest_are_usage_errors(string mustContain, params string[] after)
    {
        (int code, _, string err, _) = CliErrorTests.Run(["run", RepoPaths.GuestImage("hello"), .. after]);
        Assert.Equal(64, code);
        CliErrorTests.AssertOneErrorLine(err, mustContain);
    }
}
