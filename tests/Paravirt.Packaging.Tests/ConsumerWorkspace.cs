using System.Security.Cryptography;
using System.Text.Json;

namespace Paravirt.Packaging.Tests;

/// <summary>
/// A consumer's world outside the repository: a temporary folder with its own NuGet.config (Paravirt.* only from
/// the local feed nuget/, everything else from the public source, by packageSourceMapping) and an empty package
/// folder (NUGET_PACKAGES), so neither the repository's build files nor a stale cache can stand in for a broken
/// package. Shared by the tests of one class; each step runs once.
/// </summary>
public sealed class ConsumerWorkspace : IDisposable
{
    private static readonly TimeSpan StepLimit = TimeSpan.FromMinutes(5);
    private readonly Lazy<string> _guest;
    private readonly Lazy<string> _csGuest;
    private readonly Lazy<string> _host;
    private readonly Lazy<string> _tool;
    private readonly Lazy<string> _linuxApp;
    private readonly Lazy<string> _pluginGuest;
    private readonly Lazy<string> _sandboxHost;

    public ConsumerWorkspace()
    {
        Root = Path.Combine(Path.GetTempPath(), "paravirt-consumer-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Root);
        PackagesFolder = Path.Combine(Root, "packages");
        _guest = new(BuildGuest);
        _csGuest = new(BuildCSharpGuest);
        _host = new(BuildHost);
        _pluginGuest = new(() => BuildGuestProject("plugin-guest", "<ParavirtGuestLanguage>C</ParavirtGuestLanguage>", extraReference: "",
            Path.Combine("samples", "plugin-guest", "plugin-guest.c"), "a C sandbox guest"));
        _sandboxHost = new(BuildSandboxHost);
        _tool = new(InstallTool);
        _linuxApp = new(PublishLinuxApp);
    }

    /// <summary>Where third-party packages come from (override with PARAVIRT_PACKAGING_UPSTREAM, e.g. a mirror).</summary>
    public static string Upstream => System.Environment.GetEnvironmentVariable("PARAVIRT_PACKAGING_UPSTREAM") is { Length: > 0 } u ? u : "https://api.nuget.org/v3/index.json";

    public string Root { get; }

    public string PackagesFolder { get; }

    /// <summary>The C guest (samples/hello/hello.c) built by a project that references only Paravirt.Guest.Sdk.</summary>
    public string GuestImage => _guest.Value;

    /// <summary>The C# guest (samples/hello-cs/Program.cs) built by a project that references only Paravirt.Guest.Sdk (and ILC).</summary>
    public string CSharpGuestImage => _csGuest.Value;

    /// <summary>The host console program (references Paravirt.Hypervisor.Core), as a path to its dll.</summary>
    public string HostDll => _host.Value;

    /// <summary>
    /// A fresh <c>dotnet new console</c> app turned into a Linux guest as docs/linux-guests.md says (PublishAot,
    /// RuntimeIdentifier linux-x64, ParavirtLinuxGuest, a reference to Paravirt.Guest.Sdk) and published: the path
    /// of the static executable in its publish folder.
    /// </summary>
    public string LinuxDotnetApp => _linuxApp.Value;

    /// <summary>The C sandbox guest (samples/plugin-guest/plugin-guest.c) built by a project that references only Paravirt.Guest.Sdk.</summary>
    public string PluginGuestImage => _pluginGuest.Value;

    /// <summary>The sandbox host program (<see cref="SandboxHostSource"/>, references Paravirt.Hypervisor.Core), as a path to its dll.</summary>
    public string SandboxHostDll => _sandboxHost.Value;

    /// <summary>
    /// The whole host program of docs/sandboxes.md's quick start: it calls a C guest function with a record and gets a
    /// record back.
    /// </summary>
    public const string SandboxHostSource = """
        using Paravirt.Hypervisor.Sandboxes;

        using var sandbox = Sandbox.Create(args[0], new SandboxOptions { Backend = "emulator" });
        Point scaled = sandbox.Call<Point>("Scale", new Point(3, -4), 10);
        Console.WriteLine($"Scale returned {scaled}");

        public record Point(int X, int Y);
        """;

    /// <summary>The paravirt command installed from the feed with dotnet tool install --tool-path.</summary>
    public string Tool => _tool.Value;

    public IReadOnlyDictionary<string, string?> Environment => new Dictionary<string, string?>
    {
        ["NUGET_PACKAGES"] = PackagesFolder,
    };

    public ProcessResult Dotnet(string workingDirectory, params string[] args) =>
        Command.Run(Command.Dotnet, workingDirectory, Environment, StepLimit, args);

    /// <summary>
    /// Asserts that the package <paramref name="id"/> in <paramref name="packagesFolder"/> (default: the fresh
    /// NUGET_PACKAGES) is the very file in the local feed (same SHA-512), restored from the feed's source.
    /// </summary>
    public void AssertRestoredFromFeed(string id, string? packagesFolder = null)
    {
        string dir = Path.Combine(packagesFolder ?? PackagesFolder, id.ToLowerInvariant(), LocalFeed.Version.ToLowerInvariant());
        string metadataPath = Path.Combine(dir, ".nupkg.metadata");
        Assert.True(File.Exists(metadataPath), $"{id} {LocalFeed.Version} was not restored into {packagesFolder ?? PackagesFolder}");
        using JsonDocument metadata = JsonDocument.Parse(File.ReadAllText(metadataPath));
        if (metadata.RootElement.TryGetProperty("source", out JsonElement sourceElement))
        {
            // The tool store does not record a source; the hash below is the proof there.
            Assert.Equal(Path.TrimEndingDirectorySeparator(LocalFeed.Directory), Path.TrimEndingDirectorySeparator(sourceElement.GetString() ?? ""));
        }
        else
        {
            Assert.NotNull(packagesFolder);
        }
        // The restored copy is byte for byte the feed's file (not an older build of the same version from a cache).
        string restored = Path.Combine(dir, $"{id.ToLowerInvariant()}.{LocalFeed.Version.ToLowerInvariant()}.nupkg");
        Assert.True(File.Exists(restored), $"{restored} is missing");
        Assert.True(SHA512.HashData(File.ReadAllBytes(restored)).AsSpan().SequenceEqual(SHA512.HashData(File.ReadAllBytes(LocalFeed.PackagePath(id)))),
            $"{restored} differs from {LocalFeed.PackagePath(id)}: a stale package was restored");
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private void WriteNuGetConfig()
    {
        string path = Path.Combine(Root, "NuGet.config");
        if (File.Exists(path))
        {
            return;
        }
        File.WriteAllText(path, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="paravirt-local" value="{LocalFeed.Directory}" />
                <add key="upstream" value="{Upstream}" />
              </packageSources>
              <packageSourceMapping>
                <packageSource key="paravirt-local"><package pattern="Paravirt.*" /></packageSource>
                <packageSource key="upstream"><package pattern="*" /></packageSource>
              </packageSourceMapping>
            </configuration>
            """);
        // No Directory.Build.* or global.json of the repository above a temp folder; make sure none is nearby.
        File.WriteAllText(Path.Combine(Root, "Directory.Build.props"), "<Project />\n");
        File.WriteAllText(Path.Combine(Root, "Directory.Build.targets"), "<Project />\n");
        File.WriteAllText(Path.Combine(Root, "Directory.Packages.props"), "<Project />\n");
    }

    private string BuildGuest() => BuildGuestProject(
        "guest", "<ParavirtGuestLanguage>C</ParavirtGuestLanguage>", extraReference: "",
        Path.Combine("samples", "hello", "hello.c"), "a C guest");

    // The ILCompiler reference is the consumer's own: restore does not see the packages' build files.
    private string BuildCSharpGuest() => BuildGuestProject(
        "guest-cs", "<ParavirtGuest>true</ParavirtGuest>",
        extraReference: """<PackageReference Include="runtime.linux-x64.Microsoft.DotNet.ILCompiler" Version="10.0.12" ExcludeAssets="all" PrivateAssets="all" />""",
        Path.Combine("samples", "hello-cs", "Program.cs"), "a C# guest");

    /// <summary>Creates the project folder Root/NAME holding NAME.csproj (<paramref name="project"/>), next to the nuget.config of the local feed; returns the folder.</summary>
    private string WriteProject(string name, string project)
    {
        LocalFeed.Require();
        WriteNuGetConfig();
        string dir = Path.Combine(Root, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, name + ".csproj"), project);
        return dir;
    }

    /// <summary>
    /// Builds a guest project outside the repository that references only Paravirt.Guest.Sdk from the local feed
    /// (plus <paramref name="extraReference"/>), with one source file copied from the repository; returns its image.
    /// </summary>
    private string BuildGuestProject(string name, string guestProperty, string extraReference, string source, string what)
    {
        string dir = WriteProject(name, $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <TargetFramework>net10.0</TargetFramework>
                {guestProperty}
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Paravirt.Guest.Sdk" Version="{LocalFeed.Version}" PrivateAssets="all" />
                {extraReference}
              </ItemGroup>
            </Project>
            """);
        File.Copy(Path.Combine(LocalFeed.RepoRoot, source), Path.Combine(dir, Path.GetFileName(source)));
        ProcessResult r = Dotnet(dir, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false", "-nologo");
        Assert.True(r.ExitCode == 0, r.Describe($"dotnet build of {what} that references Paravirt.Guest.Sdk"));
        AssertRestoredFromFeed("Paravirt.Guest.Sdk");
        string elf = Path.Combine(dir, "bin", "Release", "net10.0", name + ".elf");
        Assert.True(File.Exists(elf), $"the build of {what} succeeded but {elf} is missing\n{r.StdOut}");
        return elf;
    }

    // The README's example, nearly verbatim: DI, GuestRunner, a user hypercall, the guest's console on stdout.
    private const string HostSource = """
        using Microsoft.Extensions.DependencyInjection;
        using Paravirt.Abi;
        using Paravirt.Hypervisor.Backends;
        using Paravirt.Hypervisor.Hypercalls;
        using Paravirt.Hypervisor.Loading;
        using Paravirt.Hypervisor.Running;

        var services = new ServiceCollection();
        services.AddParavirt().AddHypercall(0x1000, "add", (in HypercallArgs a, GuestSession session) => (long)(a.A1 + a.A2));
        using ServiceProvider provider = services.BuildServiceProvider();
        GuestRunner runner = provider.GetRequiredService<GuestRunner>();

        GuestImage image = ElfLoader.LoadFile(args[0], AbiVersion.Current);
        using (Stream stdout = Console.OpenStandardOutput())
        {
            RunResult result = runner.Run(image, new GuestRunOptions { Backend = args[1], ConsoleOutput = stdout, Timeout = TimeSpan.FromSeconds(60) });
            Console.Error.WriteLine($"host: {result.Outcome} status {result.ExitStatus} on {result.Backend}, {result.Statistics.Hypercalls.Values.Sum()} hypercalls: {result.Message}");
            return result.Outcome == RunOutcome.Exited ? (int)result.ExitStatus : 100 + (int)result.Outcome;
        }
        """;

    private string BuildHost() => BuildHostProject(
        "host", """<PackageReference Include="Microsoft.Extensions.DependencyInjection" Version="10.0.0" />""", HostSource, "a host program");

    private string PublishLinuxApp()
    {
        LocalFeed.Require();
        WriteNuGetConfig();
        const string name = "hello-linux";
        string dir = Path.Combine(Root, name);
        ProcessResult created = Dotnet(Root, "new", "console", "-o", name, "--framework", "net10.0");
        Assert.True(created.ExitCode == 0, created.Describe("dotnet new console"));
        string csproj = Path.Combine(dir, name + ".csproj");
        string project = File.ReadAllText(csproj);
        Assert.Contains("</PropertyGroup>", project, StringComparison.Ordinal);
        File.WriteAllText(csproj, project.Replace("</PropertyGroup>", $"""
                <PublishAot>true</PublishAot>
                <RuntimeIdentifier>linux-x64</RuntimeIdentifier>
                <ParavirtLinuxGuest>true</ParavirtLinuxGuest>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Paravirt.Guest.Sdk" Version="{LocalFeed.Version}" PrivateAssets="all" />
              </ItemGroup>
            """, StringComparison.Ordinal));
        ProcessResult r = Dotnet(dir, "publish", "-c", "Release", "--disable-build-servers", "-nodeReuse:false", "-nologo");
        Assert.True(r.ExitCode == 0, r.Describe("dotnet publish of a console app with ParavirtLinuxGuest"));
        AssertRestoredFromFeed("Paravirt.Guest.Sdk");
        string exe = Path.Combine(dir, "bin", "Release", "net10.0", "linux-x64", "publish", name);
        Assert.True(File.Exists(exe), $"the publish succeeded but {exe} is missing\n{r.StdOut}");
        return exe;
    }

    private string BuildSandboxHost() => BuildHostProject("sandbox-host", extraReference: "", SandboxHostSource, "a sandbox host");

    /// <summary>
    /// Builds a console program outside the repository that references Paravirt.Hypervisor.Core from the local feed
    /// (plus <paramref name="extraReference"/>), with warnings as errors; returns its DLL.
    /// </summary>
    private string BuildHostProject(string name, string extraReference, string program, string what)
    {
        string dir = WriteProject(name, $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Paravirt.Hypervisor.Core" Version="{LocalFeed.Version}" />
                {extraReference}
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(dir, "Program.cs"), program);
        ProcessResult r = Dotnet(dir, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false", "-nologo");
        Assert.True(r.ExitCode == 0, r.Describe($"dotnet build of {what} that references Paravirt.Hypervisor.Core"));
        AssertRestoredFromFeed("Paravirt.Hypervisor.Core");
        AssertRestoredFromFeed("Paravirt.Hypercall.Abi");
        string dll = Path.Combine(dir, "bin", "Release", "net10.0", name + ".dll");
        Assert.True(File.Exists(dll), $"the build of {what} succeeded but {dll} is missing");
        return dll;
    }

    private string InstallTool()
    {
        LocalFeed.Require();
        WriteNuGetConfig();
        string toolPath = Path.Combine(Root, "tools");
        ProcessResult r = Dotnet(Root, "tool", "install", "--tool-path", toolPath, "--configfile", Path.Combine(Root, "NuGet.config"),
            "Paravirt.Cli", "--version", LocalFeed.Version);
        Assert.True(r.ExitCode == 0, r.Describe("dotnet tool install Paravirt.Cli from the local feed"));
        string exe = Path.Combine(toolPath, OperatingSystem.IsWindows() ? "paravirt.exe" : "paravirt");
        Assert.True(File.Exists(exe), $"dotnet tool install succeeded but {exe} is missing\n{r.StdOut}");
        AssertRestoredFromFeed("Paravirt.Cli", Path.Combine(toolPath, ".store", "paravirt.cli", LocalFeed.Version.ToLowerInvariant()));
        return exe;
    }
}
