using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>AddParavirt: options validated on start, defaults carried into runs, devices added per run.</summary>
public sealed class DependencyInjectionTests() : TestWithTempDirectory("di")
{
    [Theory]
    [InlineData("DefaultBackend", "hyperv")]
    [InlineData("DefaultMemorySize", "1000")]
    [InlineData("DefaultTimeout", "-1")]
    [InlineData("DefaultInstructionBudget", "0")]
    public void Invalid_options_fail_when_the_runner_is_created_naming_the_option(string option, string value)
    {
        var services = new ServiceCollection();
        services.AddParavirt(o =>
        {
            switch (option)
            {
                case "DefaultBackend": o.DefaultBackend = value; break;
                case "DefaultMemorySize": o.DefaultMemorySize = ulong.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                case "DefaultTimeout": o.DefaultTimeout = TimeSpan.FromSeconds(int.Parse(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                default: o.DefaultInstructionBudget = ulong.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
            }
        });
        using ServiceProvider provider = services.BuildServiceProvider();
        OptionsValidationException ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<GuestRunner>());
        Assert.Contains(option, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validation_is_registered_to_run_on_host_start()
    {
        var services = new ServiceCollection();
        services.AddParavirt(o => o.DefaultBackend = "nope");
        using ServiceProvider provider = services.BuildServiceProvider();
        // What IHost.StartAsync calls for ValidateOnStart.
        IStartupValidator validator = provider.GetRequiredService<IStartupValidator>();
        Assert.Throws<OptionsValidationException>(validator.Validate);
    }

    [Fact]
    public void Default_options_carry_the_configured_values_into_runs()
    {
        var services = new ServiceCollection();
        services.AddParavirt(o =>
        {
            o.DefaultBackend = "emulator";
            o.DefaultMemorySize = 16UL << 20;
            o.DefaultInstructionBudget = 5_000;
        });
        using ServiceProvider provider = services.BuildServiceProvider();
        GuestRunner runner = provider.GetRequiredService<GuestRunner>();
        Assert.Equal("emulator", runner.DefaultOptions.Backend);
        Assert.Equal(16UL << 20, runner.DefaultOptions.MemorySize);

        GuestImage spin = ElfLoader.Parse(RunLimitsTests.CodeImage(0xEB, 0xFE), AbiVersion.Current);
        RunResult r = runner.Run(spin, runner.DefaultOptions);
        Assert.Equal(RunOutcome.BudgetExhausted, r.Outcome);
        Assert.Equal(5_000UL, r.Statistics.InstructionsRetired);
    }

    [Fact]
    public void A_device_added_with_AddDevice_is_created_for_each_run_and_released_after_it()
    {
        string disk = Path.Combine(Dir, "disk.img");
        using (FileStream f = File.Create(disk))
        {
            f.SetLength(4 << 20);
        }
        int created = 0;
        var services = new ServiceCollection();
        services.AddParavirt(o => o.DefaultBackend = "emulator")
                .AddDevice(_ => { created++; return new BlockDevice("disk0", disk, readOnly: false); });
        using ServiceProvider provider = services.BuildServiceProvider();
        GuestRunner runner = provider.GetRequiredService<GuestRunner>();
        GuestImage blk = ElfLoader.LoadFile(RepoPaths.GuestImage("blk"), AbiVersion.Current);

        for (int run = 1; run <= 2; run++)
        {
            using var console = new MemoryStream();
            RunResult r = runner.Run(blk, runner.DefaultOptions with { ConsoleOutput = console, Timeout = TimeSpan.FromSeconds(60) });
            Assert.True(r.Outcome == RunOutcome.Exited && r.ExitStatus == 0, $"{r.Message}\n{Encoding.UTF8.GetString(console.ToArray())}");
            Assert.Equal(run, created);
            // Released: the device opened the image exclusively while the guest ran.
            using FileStream exclusive = new(disk, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        }
    }
}
