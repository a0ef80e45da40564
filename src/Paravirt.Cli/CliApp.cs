namespace Paravirt.Cli;

/// <summary>The paravirt command line (being written).</summary>
internal static class CliApp
{
    internal static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        stderr.WriteLine("paravirt: not implemented yet");
        return 1;
    }
}
