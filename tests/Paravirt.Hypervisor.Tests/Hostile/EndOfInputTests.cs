namespace Paravirt.Hypervisor.Tests.Hostile;

/// <summary>
/// A service reading its console sees the end of its input (issue 13): the C driver (samples/kv) and the C# driver
/// (samples/echo-cs) end cleanly after the last piped line instead of waiting forever.
/// </summary>
public sealed class EndOfInputTests() : TestWithTempDirectory("eof")
{
    [Fact]
    public void Kv_exits_0_when_its_input_ends_without_QUIT()
    {
        string path = Path.Combine(Dir, "kv.img");
        using (FileStream f = File.Create(path))
        {
            f.SetLength(256 << 10);
        }
        using var output = new MemoryStream();
        using var input = new MemoryStream(Encoding.ASCII.GetBytes("SET a 1\nGET a\n"));
        DevicesGuestTests.GuestRun run;
        using (var console = new ConsoleDevice("console0", output, input))
        using (var disk = new BlockDevice("disk0", path))
        {
            run = DevicesGuestTests.Run("kv", [console, disk], timeoutSeconds: 20);
        }
        string ring = Encoding.ASCII.GetString(output.ToArray());
        Assert.True(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == 0, $"{run.Result.Outcome} {run.Result.ExitStatus}: {run.Result.Message}\n{run.Output}\n{ring}");
        Assert.Equal("READY 0 keys\nOK\nVALUE 1\n", ring);
    }

    [Fact]
    public void Echo_cs_exits_0_when_its_input_ends_without_QUIT()
    {
        using var output = new MemoryStream();
        using var input = new MemoryStream(Encoding.ASCII.GetBytes("one\ntwo\nlast line without newline"));
        DevicesGuestTests.GuestRun run;
        using (var console = new ConsoleDevice("console0", output, input))
        {
            run = DevicesGuestTests.Run("echo-cs", [console], timeoutSeconds: 20);
        }
        string ring = Encoding.ASCII.GetString(output.ToArray());
        Assert.True(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == 0, $"{run.Result.Outcome} {run.Result.ExitStatus}: {run.Result.Message}\n{run.Output}\n{ring}");
        Assert.Equal("READY\nECHO ONE\nECHO TWO\nECHO LAST LINE WITHOUT NEWLINE\n", ring);
        Assert.Contains("echo-cs: 3 lines echoed", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_console_without_an_input_source_reads_as_ended()
    {
        using var output = new MemoryStream();
        DevicesGuestTests.GuestRun run;
        using (var console = new ConsoleDevice("console0", output))
        {
            run = DevicesGuestTests.Run("echo-cs", [console], timeoutSeconds: 20);
        }
        Assert.True(run.Result.Outcome == RunOutcome.Exited && run.Result.ExitStatus == 0, $"{run.Result.Outcome} {run.Result.ExitStatus}: {run.Result.Message}\n{run.Output}");
        Assert.Contains("echo-cs: 0 lines echoed", run.Output, StringComparison.Ordinal);
    }
}
