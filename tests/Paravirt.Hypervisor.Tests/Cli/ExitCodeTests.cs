using System.Reflection;
using System.Text.RegularExpressions;
using Paravirt.Cli;

namespace Paravirt.Hypervisor.Tests.Cli;

/// <summary>
/// The exit codes are a contract with scripts: each typed error and each run outcome maps to one code, in one place
/// (<see cref="ExitCodes.For(Exception)"/>, <see cref="ExitCodes.For(RunOutcome, int)"/>), and the documentation
/// lists exactly the codes the CLI uses.
/// </summary>
public sealed partial class ExitCodeTests
{
    public static TheoryData<Exception, int> TypedErrors => new()
    {
        { new ImageFormatException("broken"), 65 },
        { new DeviceConfigurationException("disk missing"), 66 },
        { new BackendUnavailableException("no KVM"), 69 },
        { new BackendOperationException("KVM_SET_SREGS", "KVM KVM_SET_SREGS failed", 22), 71 },
        { new ArgumentException("bad option"), 64 },
        { new ArgumentOutOfRangeException("size"), 64 },
    };

    [Theory]
    [MemberData(nameof(TypedErrors))]
    public void Each_typed_error_has_its_one_exit_code(Exception error, int expected) => Assert.Equal(expected, ExitCodes.For(error));

    [Fact]
    public void A_failed_vcpu_operation_is_a_backend_failure_not_an_unavailable_backend()
    {
        // A KVM ioctl on a working /dev/kvm that fails (KVM_SET_SREGS, KVM_RUN) is 71; only the probe's refusal is 69.
        Assert.NotEqual(ExitCodes.For(new BackendUnavailableException("x")), ExitCodes.For(new BackendOperationException("KVM_SET_SREGS", "x", 22)));
    }

    [Fact]
    public void An_untyped_exception_is_not_given_a_user_error_code() =>
        Assert.Null(ExitCodes.For(new InvalidOperationException("a bug")));

    [Theory]
    [InlineData(RunOutcome.Faulted, 0, 70)]
    [InlineData(RunOutcome.BackendFailed, 0, 71)]
    [InlineData(RunOutcome.TimedOut, 0, 124)]
    [InlineData(RunOutcome.BudgetExhausted, 0, 124)]
    [InlineData(RunOutcome.Canceled, 2, 130)]
    [InlineData(RunOutcome.Canceled, 0, 130)]
    [InlineData(RunOutcome.Canceled, 15, 143)]
    public void Each_run_outcome_has_its_one_exit_code(RunOutcome outcome, int signal, int expected) =>
        Assert.Equal(expected, ExitCodes.For(outcome, signal));

    [Fact]
    public void Every_outcome_but_the_guests_own_exit_maps_to_a_code()
    {
        foreach (RunOutcome outcome in Enum.GetValues<RunOutcome>().Where(o => o != RunOutcome.Exited))
        {
            Assert.Contains(ExitCodes.For(outcome, 0), AllCodes());
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => ExitCodes.For(RunOutcome.Exited, 0));
    }

    [Fact]
    public void The_exit_code_table_in_the_guide_lists_exactly_the_codes_the_cli_uses()
    {
        string guide = File.ReadAllText(RepoPaths.File("docs/guest-authors.md"));
        int[] documented = [.. TableRow().Matches(guide).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).Order()];
        Assert.Equal(AllCodes().Order(), documented);
    }

    [Theory]
    [InlineData("README.md")]
    [InlineData("src/Paravirt.Cli/README.md")]
    public void The_readmes_name_every_exit_code(string readme)
    {
        string text = File.ReadAllText(RepoPaths.File(readme));
        foreach (int code in AllCodes())
        {
            Assert.True(Regex.IsMatch(text, $@"\b{code} [a-z(]"), $"{readme} does not name exit code {code}");
        }
    }

    private static int[] AllCodes() =>
        [.. typeof(ExitCodes).GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral).Select(f => (int)f.GetRawConstantValue()!)];

    [GeneratedRegex(@"^\| (\d+) \|", RegexOptions.Multiline)]
    private static partial Regex TableRow();
}
