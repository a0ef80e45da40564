namespace Paravirt.Bench;

/// <summary>
/// A benchmark guest is deterministic: every run must print the same output in the same number of instructions as
/// the first. A run that does not is a bug (in the guest or the backend), and its time would measure other work.
/// </summary>
internal sealed class SameEveryRun
{
    private string? _output;
    private ulong _instructions;

    /// <summary>True when run <paramref name="run"/> matches the first run (which it records); otherwise says how on stderr.</summary>
    public bool Check(int run, string output, ulong instructions)
    {
        if (_output is null)
        {
            (_output, _instructions) = (output, instructions);
            return true;
        }
        if (output == _output && instructions == _instructions)
        {
            return true;
        }
        Console.Error.WriteLine($"non-deterministic: run {run} printed '{output}' in {instructions} instructions, run 1 '{_output}' in {_instructions}");
        return false;
    }
}
