using Microsoft.Extensions.DependencyInjection;

namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>An application adds its own hypercall through DI; a guest calls it through the hypercall page.</summary>
public sealed class UserHypercallTests
{
    // mov eax, 0x1000; mov edi, 42; mov r11d, 0x3000; call r11   (user hypercall 0x1000 with a1 = 42)
    // mov rdi, rax; mov eax, 2; call r11                          (exit with its result)
    private static readonly byte[] CallUserThenExit =
    [
        0xB8, 0x00, 0x10, 0x00, 0x00,
        0xBF, 0x2A, 0x00, 0x00, 0x00,
        0x41, 0xBB, 0x00, 0x30, 0x00, 0x00,
        0x41, 0xFF, 0xD3,
        0x48, 0x89, 0xC7,
        0xB8, 0x02, 0x00, 0x00, 0x00,
        0x41, 0xFF, 0xD3,
        0xEB, 0xFE,
    ];

    [Fact]
    public void A_user_hypercall_registered_through_AddParavirt_is_called_by_the_guest()
    {
        var services = new ServiceCollection();
        services.AddParavirt().AddHypercall(HypercallRanges.UserFirst, "double_plus_one", static (in Paravirt.Hypervisor.Hypercalls.HypercallArgs a, GuestSession _) => (long)a.A1 * 2 + 1);
        using ServiceProvider provider = services.BuildServiceProvider();

        GuestImage image = ElfLoader.Parse(RunLimitsTests.CodeImage(CallUserThenExit), AbiVersion.Current);
        RunResult r = provider.GetRequiredService<GuestRunner>().Run(image, new GuestRunOptions { Backend = "emulator", Timeout = TimeSpan.FromSeconds(10) });

        Assert.True(r.Outcome == RunOutcome.Exited, r.Message);
        Assert.Equal(85, r.ExitStatus);
        Assert.Equal(1, r.Statistics.Hypercalls[HypercallRanges.UserFirst]);
    }

    [Fact]
    public void Without_the_registration_the_guest_gets_NotImplemented()
    {
        var services = new ServiceCollection();
        services.AddParavirt();
        using ServiceProvider provider = services.BuildServiceProvider();
        GuestImage image = ElfLoader.Parse(RunLimitsTests.CodeImage(CallUserThenExit), AbiVersion.Current);
        RunResult r = provider.GetRequiredService<GuestRunner>().Run(image, new GuestRunOptions { Backend = "emulator", Timeout = TimeSpan.FromSeconds(10) });
        Assert.Equal(RunOutcome.Exited, r.Outcome);
        Assert.Equal((long)HypercallStatus.NotImplemented, r.ExitStatus);
    }

    [Fact]
    public void A_user_hypercall_outside_the_user_range_is_refused_at_registration()
    {
        var services = new ServiceCollection();
        ParavirtBuilder builder = services.AddParavirt();
        Assert.Throws<ArgumentOutOfRangeException>(() => builder.AddHypercall((uint)HypercallCode.ConsoleWrite, "steal", static (in Paravirt.Hypervisor.Hypercalls.HypercallArgs _, GuestSession _) => 0));
    }

    [Fact]
    public void The_same_user_code_registered_twice_fails_when_the_dispatcher_is_built()
    {
        var services = new ServiceCollection();
        services.AddParavirt()
            .AddHypercall(0x1234, "a", static (in Paravirt.Hypervisor.Hypercalls.HypercallArgs _, GuestSession _) => 0)
            .AddHypercall(0x1234, "b", static (in Paravirt.Hypervisor.Hypercalls.HypercallArgs _, GuestSession _) => 0);
        using ServiceProvider provider = services.BuildServiceProvider();
        InvalidOperationException ex = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<HypercallDispatcher>());
        Assert.Contains("0x1234", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AddParavirt_twice_registers_each_backend_and_provider_once()
    {
        var services = new ServiceCollection();
        services.AddParavirt();
        services.AddParavirt();
        using ServiceProvider provider = services.BuildServiceProvider();
        Assert.Equal(["kvm", "whp", "emulator"], provider.GetServices<Backends.IHypervisorBackend>().Select(b => b.Name));
        Assert.NotNull(provider.GetRequiredService<HypercallDispatcher>());
    }
}
