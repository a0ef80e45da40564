namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>
/// The user-defined device sample end to end: samples/kvstore-host (a device written against the public API only)
/// runs the C guest samples/kvstore-guest on the emulator, which finds, configures, attaches, drives, resets and
/// re-attaches the device through the generic device model.
/// </summary>
public sealed class UserDeviceSampleTests
{
    [Fact]
    public async Task The_kvstore_sample_drives_a_user_defined_device_on_the_emulator()
    {
        SampleProgram.Result run = await SampleProgram.RunAsync("kvstore-host", RepoPaths.GuestImage("kvstore-guest"), "emulator");
        string output = run.Output;
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("kvstore-guest: read back 20 of 20", output, StringComparison.Ordinal);
        Assert.Contains("kvstore-guest: all checks passed", output, StringComparison.Ordinal);
        Assert.Contains("guest Exited with status 0 on emulator", output, StringComparison.Ordinal);
        Assert.Contains("kvstore-host: the guest drove the user-defined device as expected", output, StringComparison.Ordinal);
    }
}
