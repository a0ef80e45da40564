namespace Paravirt.Testing;

/// <summary>The repository's files as seen from a test's output directory, and the guest images the build produces.</summary>
public static class RepoPaths
{
    private static readonly Lazy<string> LazyRoot = new(() =>
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (System.IO.File.Exists(Path.Combine(d.FullName, "Paravirt.sln")))
            {
                return d.FullName;
            }
        }
        throw new InvalidOperationException($"Paravirt.sln not found above {AppContext.BaseDirectory}");
    });

    /// <summary>The repository root (the folder holding Paravirt.sln).</summary>
    public static string Root => LazyRoot.Value;

    /// <summary>The C side of the guest SDK: runtime sources, <c>paravirt.mk</c>, the linker script.</summary>
    public static string GuestNativeDir => Path.Combine(Root, "src", "Guest.Sdk", "native");

    /// <summary>The guest SDK's include folder (<c>paravirt/abi.h</c> and the runtime headers).</summary>
    public static string GuestIncludeDir => Path.Combine(GuestNativeDir, "include");

    /// <summary>Where the build puts guest images (<c>artifacts/guests</c>).</summary>
    public static string GuestsDir => Path.Combine(Root, "artifacts", "guests");

    /// <summary>A file of the repository by its path relative to the root; fails the test when it is missing.</summary>
    public static string File(string relative)
    {
        string path = Path.Combine(Root, relative);
        Assert.True(System.IO.File.Exists(path), $"{path} is missing");
        return path;
    }

    /// <summary>A sample guest image built by the normal build; fails clearly when it was not built.</summary>
    public static string GuestImage(string name)
    {
        string path = Path.Combine(GuestsDir, name + ".elf");
        Assert.True(System.IO.File.Exists(path), $"guest image {path} is missing: build the solution first (dotnet build Paravirt.sln)");
        return path;
    }

    /// <summary>A static Linux executable built from samples/linux-* by the normal build.</summary>
    public static string LinuxExecutable(string name)
    {
        string path = Path.Combine(GuestsDir, "linux", name);
        Assert.True(System.IO.File.Exists(path), $"Linux executable {path} is missing: build the solution first (dotnet build Paravirt.sln)");
        return path;
    }
}
