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
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        string host = Path.Combine(TestPaths.RepoRoot, "samples", "kvstore-host", "bin", configuration, "net10.0", "kvstore-host.dll");
        Assert.True(File.Exists(host), $"{host} is missing: build the solution first");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { host, TestPaths.GuestImage("kvstore-guest"), "emulator" })
        {
            psi.ArgumentList.Add(arg);
        }
        using var process = System.Diagnostics.Process.Start(psi)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(limit.Token);
        string output = await stdout;
        string errors = await stderr;
        Assert.True(process.ExitCode == 0, $"kvstore-host exited with {process.ExitCode}\n{output}\n{errors}");
        Assert.Contains("kvstore-guest: read back 20 of 20", output, StringComparison.Ordinal);
        Assert.Contains("kvstore-guest: all checks passed", output, StringComparison.Ordinal);
        Assert.Contains("guest Exited with status 0 on emulator", output, StringComparison.Ordinal);
        Assert.Contains("kvstore-host: the guest drove the user-defined device as expected", output, StringComparison.Ordinal);
    }
}
