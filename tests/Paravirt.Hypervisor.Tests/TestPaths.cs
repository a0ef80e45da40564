namespace Paravirt.Hypervisor.Tests;

/// <summary>Locates the repository and the guest images the normal build produces.</summary>
internal static class TestPaths
{
    private static readonly Lazy<string> Root = new(() =>
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Paravirt.sln")))
            {
                return d.FullName;
            }
        }
        throw new InvalidOperationException($"Paravirt.sln not found above {AppContext.BaseDirectory}");
    });

    /// <summary>The repository root.</summary>
    public static string RepoRoot => Root.Value;

    /// <summary>Path of a sample guest image built by the normal build; fails clearly when it was not built.</summary>
    public static string GuestImage(string name)
    {
        string path = Path.Combine(RepoRoot, "artifacts", "guests", name + ".elf");
        Assert.True(File.Exists(path), $"guest image {path} is missing: build the solution first (dotnet build Paravirt.sln)");
        return path;
    }

    /// <summary>Path of a static Linux executable built from samples/linux-* by the normal build.</summary>
    public static string LinuxExecutable(string name)
    {
        string path = Path.Combine(RepoRoot, "artifacts", "guests", "linux", name);
        Assert.True(File.Exists(path), $"Linux executable {path} is missing: build the solution first (dotnet build Paravirt.sln)");
        return path;
    }
}
