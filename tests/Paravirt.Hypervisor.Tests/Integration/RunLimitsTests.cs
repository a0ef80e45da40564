namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>
/// Guests that never exit, crash or misbehave are stopped with a clear outcome and the host stays responsive
/// (emulator backend; the same scenarios run on KVM in the nested harness).
/// </summary>
public sealed class RunLimitsTests() : TestWithTempDirectory("limits")
{
    /// <summary>An image whose text segment at 1 MiB is <paramref name="code"/>, with the ABI note.</summary>
    internal static byte[] CodeImage(params byte[] code)
    {
        var b = new ElfBuilder();
        b.AddLoad(ElfBuilder.TextAddress, code, (ulong)code.Length, ElfBuilder.PfR | ElfBuilder.PfX);
        b.AddNotes(ElfBuilder.AbiNote(AbiVersion.Current.Major, AbiVersion.Current.Minor));
        return b.Build();
    }

    private static RunResult Run(byte[] image, GuestRunOptions options, CancellationToken ct = default) =>
        HelloGuestTests.EmulatorRunner().Run(ElfLoader.Parse(image, AbiVersion.Current), options with { Backend = "emulator" }, ct);

    private static readonly byte[] Spin = [0xEB, 0xFE]; // jmp $

    [Fact]
    public void A_spinning_guest_is_stopped_by_the_timeout()
    {
        var started = DateTime.UtcNow;
        RunResult r = Run(CodeImage(Spin), new GuestRunOptions { Timeout = TimeSpan.FromMilliseconds(200) });
        Assert.Equal(RunOutcome.TimedOut, r.Outcome);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10), "the host stays responsive");
    }

    [Fact]
    public void A_spinning_guest_is_stopped_by_the_instruction_budget_exactly()
    {
        RunResult r = Run(CodeImage(Spin), new GuestRunOptions { InstructionBudget = 12_345 });
        Assert.Equal(RunOutcome.BudgetExhausted, r.Outcome);
        Assert.Equal(12_345UL, r.Statistics.InstructionsRetired);
    }

    [Fact]
    public void A_spinning_guest_is_stopped_by_cancellation()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        RunResult r = Run(CodeImage(Spin), new GuestRunOptions(), cts.Token);
        Assert.Equal(RunOutcome.Canceled, r.Outcome);
    }

    [Theory]
    [InlineData(new byte[] { 0xF4 }, "hlt")]                                   // hlt
    [InlineData(new byte[] { 0x31, 0xC9, 0xF7, 0xF1 }, "divide")]              // xor ecx,ecx; div ecx
    [InlineData(new byte[] { 0x48, 0xA1, 0, 0, 0, 0, 0, 0, 0, 0x40 }, "0x40")] // mov rax, [0x4000000000000000]
    [InlineData(new byte[] { 0xE4, 0x60 }, "port 0x60")]                       // in al, 0x60
    [InlineData(new byte[] { 0x0F, 0x0B }, "#UD")]                             // ud2
    public void A_crashing_guest_is_a_fault_with_a_message_naming_what_and_where(byte[] code, string mustContain)
    {
        RunResult r = Run(CodeImage(code), new GuestRunOptions { Timeout = TimeSpan.FromSeconds(10) });
        Assert.Equal(RunOutcome.Faulted, r.Outcome);
        Assert.Contains(mustContain, r.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Cli_reports_a_timeout_in_one_line_with_exit_124()
    {
        string path = Path.Combine(Dir, "spin.elf");
        File.WriteAllBytes(path, CodeImage(Spin));
        (int code, _, string err, _) = CliErrorTests.Run("run", path, "--backend", "emulator", "--timeout", "200ms");
        Assert.Equal(124, code);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("did not exit within 200ms", err, StringComparison.Ordinal); // as the user wrote it, not 00:00:00.2
    }

    [Fact]
    public void Cli_reports_a_crash_with_exit_70_as_a_report_or_with_quiet_in_one_line()
    {
        string path = Path.Combine(Dir, "hlt.elf");
        File.WriteAllBytes(path, CodeImage(0xF4));
        (int code, _, string err, _) = CliErrorTests.Run("run", path, "--backend", "emulator", "--quiet");
        Assert.Equal(70, code);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("hlt", err, StringComparison.Ordinal);

        (code, _, err, _) = CliErrorTests.Run("run", path, "--backend", "emulator");
        Assert.Equal(70, code);
        string[] lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("paravirt: error: the guest executed hlt", lines[0], StringComparison.Ordinal);
        Assert.Contains("  registers:", lines);
        Assert.Contains("  code:", lines);
        Assert.Contains("  backtrace:", lines);
        Assert.Contains(lines, l => l.Contains("0x100000:", StringComparison.Ordinal) && l.EndsWith("hlt", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("  => 0x100001:", StringComparison.Ordinal)); // rip is past the hlt
    }

    [Fact]
    public void An_instruction_the_emulator_lacks_is_a_backend_failure_not_a_guest_crash_with_exit_71()
    {
        // MMX is part of x86-64 but not emulated. (AVX is no example: the emulator's CPU model has no AVX and no
        // OSXSAVE, so AVX instructions raise #UD there, as on a CPU without them: a guest fault, not a gap.)
        string path = Path.Combine(Dir, "mmx.elf");
        File.WriteAllBytes(path, CodeImage(0x0F, 0xFC, 0xC1)); // paddb mm0, mm1
        RunResult r = Run(File.ReadAllBytes(path), new GuestRunOptions { Timeout = TimeSpan.FromSeconds(10) });
        Assert.Equal(RunOutcome.BackendFailed, r.Outcome);
        Assert.Contains("does not implement 'paddb mm0,mm1'", r.Message, StringComparison.Ordinal);
        Assert.Contains("the guest did nothing wrong", r.Message, StringComparison.Ordinal);

        (int code, _, string err, _) = CliErrorTests.Run("run", path, "--backend", "emulator");
        Assert.Equal(71, code);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Cli_refuses_an_image_that_does_not_fit_in_memory()
    {
        var b = new ElfBuilder();
        b.AddLoad(ElfBuilder.TextAddress, Spin, 8UL << 20, ElfBuilder.PfR | ElfBuilder.PfX | ElfBuilder.PfW);
        b.AddNotes(ElfBuilder.AbiNote(AbiVersion.Current.Major, AbiVersion.Current.Minor));
        string path = Path.Combine(Dir, "big.elf");
        File.WriteAllBytes(path, b.Build());
        (int code, _, string err, _) = CliErrorTests.Run("run", path, "--backend", "emulator", "--memory", "4M");
        Assert.Equal(65, code);
        Assert.Contains("--memory", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Cli_refuses_an_image_built_for_a_newer_abi()
    {
        var b = new ElfBuilder();
        b.AddLoad(ElfBuilder.TextAddress, Spin, (ulong)Spin.Length, ElfBuilder.PfR | ElfBuilder.PfX);
        b.AddNotes(ElfBuilder.AbiNote(AbiVersion.Current.Major, (ushort)(AbiVersion.Current.Minor + 1)));
        string path = Path.Combine(Dir, "newer.elf");
        File.WriteAllBytes(path, b.Build());
        (int code, _, string err, _) = CliErrorTests.Run("run", path);
        Assert.Equal(65, code);
        Assert.Contains("newer", err, StringComparison.Ordinal);
    }
}
