using System.Text;
using Paravirt.Cli;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The command-line parser: the input is split into up to 16 arguments (NUL or newline separated) after
/// <c>run</c>. Whatever the arguments, the CLI answers with a documented exit code, and a failure is exactly one
/// <c>paravirt: error: ...</c> line. Arguments cannot name files outside the current directory ('/' is replaced;
/// fuzz/run-campaign.sh starts the harness in an empty directory), so no image loads and no guest runs: every
/// parser path is reached without side effects.
/// </summary>
internal sealed class CliHarness : Harness
{
    private static readonly int[] Documented = [0, 64, 65, 66, 69, 70, 124, 130, 143];
    public override void Run(ReadOnlySpan<byte> data)
    {
        string text = Encoding.UTF8.GetString(data).Replace('/', '_').Replace('\\', '_');
        string[] split = text.Split(['\0', '\n'], 16);
        string[] args = split.Length > 0 && split[0] is "backends" or "--help" or "-h" or "--version" ? split : ["run", .. split];
        args = [.. args.Where(a => !a.StartsWith('@'))]; // a response file would be read from the current directory
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(args, Stream.Null, stdout, stderr);
        Exercised++;
        if (!Documented.Contains(code))
        {
            throw new FuzzFindingException($"exit code {code} is not documented (args: {string.Join(' ', args)})");
        }
        string[] lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (code != 0 && (lines.Length != 1 || !lines[0].StartsWith("paravirt: error: ", StringComparison.Ordinal)))
        {
            throw new FuzzFindingException($"exit {code} with {lines.Length} stderr lines instead of one error line: {stderr}");
        }
    }
}
