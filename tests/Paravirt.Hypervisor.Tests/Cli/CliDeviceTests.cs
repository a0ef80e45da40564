namespace Paravirt.Hypervisor.Tests.Cli;

/// <summary>The device flags: one clear line and a documented exit code for every user error; devices attach and are released.</summary>
public sealed class CliDeviceTests() : TestWithTempDirectory("clidev")
{
    private string Disk(int bytes = 64 * 1024, string name = "disk.img")
    {
        string path = Path.Combine(Dir, name);
        File.WriteAllBytes(path, new byte[bytes]);
        return path;
    }

    [Fact]
    public void A_missing_disk_image_is_one_line_and_exit_66()
    {
        string missing = Path.Combine(Dir, "nope.img");
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--backend", "emulator", "--disk", missing);
        Assert.Equal(66, code);
        CliErrorTests.AssertOneErrorLine(err, missing, "does not exist");
    }

    [Fact]
    public void A_disk_image_of_a_wrong_size_is_one_line_and_exit_66()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--backend", "emulator", "--disk", Disk(1000));
        Assert.Equal(66, code);
        CliErrorTests.AssertOneErrorLine(err, "multiple of 512");
    }

    [Theory]
    [InlineData("--disk", "x.img,bogus", "unknown option 'bogus'")]
    [InlineData("--disk", ",ro", "names no file")]
    [InlineData("--disk", "x.img,vm=3", "vm=3")]
    [InlineData("--net", "bridge:br0", "not a network")]
    [InlineData("--net", "tap:", "not a network")]
    [InlineData("--net", "switch:lan,mac=zz", "not a unicast MAC")]
    [InlineData("--net", "switch:lan,mac=01:00:5e:00:00:01", "not a unicast MAC")]
    [InlineData("--net", "switch:lan,mtu=20", "MTU")]
    [InlineData("--net", "switch:lan,speed=fast", "unknown option 'speed=fast'")]
    public void Bad_device_flag_syntax_is_one_line_and_exit_64(string flag, string value, string message)
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--backend", "emulator", flag, value);
        Assert.Equal(64, code);
        CliErrorTests.AssertOneErrorLine(err, flag, message);
    }

    [Fact]
    public void Command_lines_must_be_one_or_one_per_image()
    {
        string hello = RepoPaths.GuestImage("hello");
        (int code, _, string err, _) = CliErrorTests.Run("run", hello, hello, "--backend", "emulator", "--cmdline", "a", "--cmdline", "b", "--cmdline", "c");
        Assert.Equal(64, code);
        CliErrorTests.AssertOneErrorLine(err, "--cmdline was given 3 times for 2 image(s)");
    }

    [Fact]
    public void Two_devices_with_one_name_are_one_line_and_exit_64()
    {
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--backend", "emulator",
            "--disk", Disk(name: "a.img") + ",name=d", "--disk", Disk(name: "b.img") + ",name=d");
        Assert.Equal(64, code);
        CliErrorTests.AssertOneErrorLine(err, "'d'");
    }

    [Fact]
    public void A_tap_interface_that_cannot_be_opened_is_one_line_and_exit_66()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        (int code, _, string err, _) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--backend", "emulator", "--net", "tap:name-far-too-long-for-linux");
        Assert.Equal(66, code);
        CliErrorTests.AssertOneErrorLine(err, "TAP interface name");
    }

    [AsNobodyFact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void Tap_without_permission_is_one_line_and_exit_66()
    {
        // The unprivileged user must be able to reach the CLI and the image wherever the repository was cloned
        // (a clone under a 0700 directory is not traversable by nobody): stage them in a world-readable folder.
        string stage = Path.Combine(Path.GetTempPath(), $"paravirt-unprivileged-{Guid.NewGuid():N}");
        Directory.CreateDirectory(stage, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        try
        {
            foreach (string file in Directory.EnumerateFiles(AppContext.BaseDirectory))
            {
                string copy = Path.Combine(stage, Path.GetFileName(file));
                File.Copy(file, copy);
                File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            }
            string image = Path.Combine(stage, "hello.elf");
            File.Copy(RepoPaths.GuestImage("hello"), image);
            File.SetUnixFileMode(image, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            RunUnprivileged(Path.Combine(stage, "paravirt.dll"), image);
        }
        finally
        {
            Directory.Delete(stage, recursive: true);
        }
    }

    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private static void RunUnprivileged(string cli, string image)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("/usr/bin/setpriv")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetTempPath(),
        };
        foreach (string arg in new[] { "--reuid=65534", "--regid=65534", "--clear-groups", Environment.ProcessPath!, cli, "run", image, "--backend", "emulator", "--net", "tap:pvdenied0" })
        {
            psi.ArgumentList.Add(arg);
        }
        psi.Environment["HOME"] = Path.GetTempPath();
        psi.Environment["DOTNET_CLI_HOME"] = Path.GetTempPath();
        using var p = System.Diagnostics.Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(60_000));
        if (File.Exists("/dev/net/tun") && (File.GetUnixFileMode("/dev/net/tun") & UnixFileMode.OtherWrite) == 0)
        {
            CliErrorTests.AssertOneErrorLine(err, "/dev/net/tun", "permission denied");
        }
        else
        {
            CliErrorTests.AssertOneErrorLine(err, "pvdenied0", "permission denied", "CAP_NET_ADMIN");
        }
        Assert.Equal(66, p.ExitCode);
    }

    [Fact]
    public void A_guest_runs_with_devices_attached_and_the_disk_is_released_afterwards()
    {
        string disk = Disk();
        (int code, _, string err, byte[] guest) = CliErrorTests.Run("run", RepoPaths.GuestImage("hello"), "--backend", "emulator",
            "--disk", disk, "--disk", Disk(name: "ro.img") + ",ro", "--net", "switch:lan", "--timeout", "60s");
        Assert.True(code == 7, $"exit {code}: {err}");
        Assert.Contains("Hello from a Paravirt unikernel!", Encoding.UTF8.GetString(guest), StringComparison.Ordinal);
        using var reopened = new BlockDevice("disk0", disk); // exclusive open succeeds: the CLI closed the image
    }

    [Fact]
    public void Several_images_run_at_once_sharing_a_switch()
    {
        string hello = RepoPaths.GuestImage("hello");
        (int code, _, string err, byte[] guest) = CliErrorTests.Run("run", hello, hello, "--backend", "emulator", "--net", "switch:lan", "--timeout", "60s");
        Assert.True(code == 7, $"exit {code}: {err}");
        string output = Encoding.UTF8.GetString(guest);
        Assert.Equal(2, output.Split("Hello from a Paravirt unikernel!").Length - 1);
    }
}
