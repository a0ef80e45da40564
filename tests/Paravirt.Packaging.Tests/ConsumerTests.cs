namespace Paravirt.Packaging.Tests;

/// <summary>
/// The packages as published: projects outside the repository restore them from nuget/ only, build a C guest with
/// the SDK's build integration, boot it through services.AddParavirt() + GuestRunner, and run it with the
/// installed paravirt tool (the emulator backend, which runs everywhere).
/// </summary>
public sealed class ConsumerTests(ConsumerWorkspace workspace) : IClassFixture<ConsumerWorkspace>
{
    private const string Greeting = "Hello from a Paravirt unikernel!";

    [LinuxX64Fact]
    public void A_C_guest_project_that_references_only_the_guest_sdk_package_builds_an_image()
    {
        byte[] elf = File.ReadAllBytes(workspace.GuestImage);
        Assert.True(elf.Length > 64 && elf[0] == 0x7F && elf[1] == (byte)'E' && elf[2] == (byte)'L' && elf[3] == (byte)'F', "not an ELF file");
        Assert.Equal(2, elf[4]);     // ELFCLASS64
        Assert.Equal(0x3E, elf[18]); // EM_X86_64
        // The ABI note the runtime adds is what the host's loader looks for.
        Assert.True(elf.AsSpan().IndexOf("Paravirt\0"u8) >= 0, "no Paravirt ABI note in the image");
    }

    [LinuxX64Fact]
    public void A_host_program_built_from_the_packages_boots_the_guest_through_AddParavirt_and_GuestRunner()
    {
        ProcessResult r = workspace.Dotnet(workspace.Root, workspace.HostDll, workspace.GuestImage, "emulator");
        Assert.True(r.ExitCode == 7, r.Describe("the host program (expected the guest's status 7)"));
        Assert.Contains(Greeting, r.StdOut, StringComparison.Ordinal);
        Assert.Contains("hello: exiting with status 7", r.StdOut, StringComparison.Ordinal);
        Assert.Contains("host: Exited status 7 on emulator", r.StdErr, StringComparison.Ordinal);
    }

    [LinuxX64Fact]
    public void The_guest_sdk_package_builds_the_same_guest_with_make()
    {
        string sdk = Path.Combine(workspace.PackagesFolder, "paravirt.guest.sdk", LocalFeed.Version.ToLowerInvariant());
        _ = workspace.GuestImage; // restores the package
        string dir = Path.Combine(workspace.Root, "make-guest");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(LocalFeed.RepoRoot, "samples", "hello", "hello.c"), Path.Combine(dir, "hello.c"), overwrite: true);
        File.WriteAllText(Path.Combine(dir, "Makefile"), $"PV_GUEST := out/hello.elf\nPV_SRCS := hello.c\ninclude {sdk}/native/paravirt.mk\nall: $(PV_GUEST)\n");
        ProcessResult make = Command.Run("make", dir, workspace.Environment, TimeSpan.FromMinutes(2));
        Assert.True(make.ExitCode == 0, make.Describe("make with native/paravirt.mk from the restored package"));

        ProcessResult r = workspace.Dotnet(workspace.Root, workspace.HostDll, Path.Combine(dir, "out", "hello.elf"), "emulator");
        Assert.True(r.ExitCode == 7, r.Describe("the host program running the make-built guest"));
        Assert.Contains(Greeting, r.StdOut, StringComparison.Ordinal);
    }

    [LinuxX64Fact]
    public void The_paravirt_tool_installed_from_the_feed_runs_the_guest_with_stats()
    {
        ProcessResult r = Command.Run(workspace.Tool, workspace.Root, workspace.Environment, TimeSpan.FromMinutes(2),
            "run", workspace.GuestImage, "--backend", "emulator", "--stats");
        Assert.True(r.ExitCode == 7, r.Describe("paravirt run --stats (expected the guest's status 7)"));
        Assert.Contains(Greeting, r.StdOut, StringComparison.Ordinal);
        // --stats: the backend, the instruction count and per-kind/per-code counts on stderr.
        Assert.Contains("backend emulator", r.StdErr, StringComparison.Ordinal);
        Assert.Matches(@"IoOut\s+[1-9]\d*", r.StdErr); // hypercalls arrive as port writes
        Assert.Matches(@"0x0100 console_write\s+[1-9]\d*", r.StdErr);
        Assert.Matches(@"[1-9]\d* instructions", r.StdErr);
    }

    [LinuxX64Fact]
    public void A_CSharp_guest_project_that_references_only_the_guest_sdk_package_builds_an_image_the_tool_boots()
    {
        string elf = workspace.CSharpGuestImage;
        ProcessResult r = Command.Run(workspace.Tool, workspace.Root, workspace.Environment, TimeSpan.FromMinutes(2),
            "run", elf, "--backend", "emulator");
        Assert.True(r.ExitCode == 7, r.Describe("paravirt run of the package-built C# guest (expected the guest's status 7)"));
        Assert.Contains("Hello from a C# Paravirt unikernel!", r.StdOut, StringComparison.Ordinal);
        Assert.Contains("hello-cs: exiting with status 7", r.StdOut, StringComparison.Ordinal);
    }

    [LinuxX64Fact]
    public void Publishing_a_CSharp_guest_to_a_folder_puts_the_image_there_and_nothing_else()
    {
        string project = Path.GetDirectoryName(workspace.CSharpGuestImage)!; // built (and restored) once
        string guestDir = Path.GetFullPath(Path.Combine(project, "..", "..", ".."));
        string published = Path.Combine(workspace.Root, "published-cs");
        ProcessResult publish = workspace.Dotnet(guestDir, "publish", "-c", "Release", "-o", published, "--disable-build-servers", "-nodeReuse:false", "-nologo");
        Assert.True(publish.ExitCode == 0, publish.Describe("dotnet publish -o of the C# guest"));
        string[] files = [.. Directory.GetFiles(published).Select(Path.GetFileName)!];
        Assert.True(files is ["guest-cs.elf"], $"the publish folder holds [{string.Join(", ", files)}], expected [guest-cs.elf]");

        ProcessResult r = Command.Run(workspace.Tool, workspace.Root, workspace.Environment, TimeSpan.FromMinutes(2),
            "run", Path.Combine(published, "guest-cs.elf"), "--backend", "emulator");
        Assert.True(r.ExitCode == 7, r.Describe("paravirt run of the published C# guest (expected the guest's status 7)"));
    }

    [LinuxX64Fact]
    public void A_fresh_console_app_published_with_ParavirtLinuxGuest_is_a_static_executable_that_runs_natively_and_on_paravirt()
    {
        string app = workspace.LinuxDotnetApp;
        byte[] elf = File.ReadAllBytes(app);
        Assert.True(elf.Length > 64 && elf[0] == 0x7F && elf[1] == (byte)'E' && elf[4] == 2 && elf[18] == 0x3E, "not an ELF64 x86-64 file");
        Assert.Equal(2, elf[16]); // ET_EXEC: -static, not -static-pie
        Assert.True(elf.AsSpan().IndexOf("/lib64/ld-linux-x86-64.so.2"u8) < 0, "the executable names a dynamic loader");

        ProcessResult native = Command.Run(app, workspace.Root, workspace.Environment, TimeSpan.FromMinutes(1));
        Assert.True(native.ExitCode == 0 && native.StdOut == "Hello, World!\n", native.Describe("the published app run natively"));

        // On a backend that gives the guest its own CPL 0 the app runs; where there is none (this project's machines:
        // kvm_pvm, and an emulator without paging yet) the tool says so in one line with exit 69.
        ProcessResult backends = Command.Run(workspace.Tool, workspace.Root, workspace.Environment, TimeSpan.FromMinutes(1), "backends");
        bool capable = backends.StdOut.Contains("[Linux executables: yes]", StringComparison.Ordinal);
        ProcessResult r = Command.Run(workspace.Tool, workspace.Root, workspace.Environment, TimeSpan.FromMinutes(3), "run", app, "--timeout", "2m");
        if (capable)
        {
            Assert.True(r.ExitCode == 0 && r.StdOut == "Hello, World!\n", r.Describe("paravirt run of the published app"));
        }
        else
        {
            Assert.True(r.ExitCode == 69, r.Describe("paravirt run without a backend for Linux executables (expected 69)"));
            Assert.Contains("CPL 0", r.StdErr, StringComparison.Ordinal);
        }
    }

    [LinuxX64Fact]
    public void A_host_calls_a_C_guest_function_with_a_record_and_gets_a_record_back_in_under_15_lines()
    {
        int lines = ConsumerWorkspace.SandboxHostSource.Split('\n').Count(l => !string.IsNullOrWhiteSpace(l));
        Assert.True(lines < 15, $"the sandbox host program has {lines} lines of code");
        ProcessResult r = workspace.Dotnet(workspace.Root, workspace.SandboxHostDll, workspace.PluginGuestImage);
        Assert.True(r.ExitCode == 0, r.Describe("the sandbox host program built from the packages"));
        Assert.Contains("Scale returned Point { X = 30, Y = -40 }", r.StdOut, StringComparison.Ordinal);
    }

    [LinuxX64Fact]
    public void The_installed_tool_reports_a_missing_image_with_its_exit_code()
    {
        ProcessResult r = Command.Run(workspace.Tool, workspace.Root, workspace.Environment, TimeSpan.FromMinutes(1),
            "run", Path.Combine(workspace.Root, "no-such.elf"));
        Assert.True(r.ExitCode == 65, r.Describe("paravirt run on a missing file (expected 65)"));
        Assert.Contains("paravirt: error:", r.StdErr, StringComparison.Ordinal);
    }
}
