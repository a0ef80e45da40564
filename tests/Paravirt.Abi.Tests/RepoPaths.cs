namespace Paravirt.Abi.Tests;

/// <summary>Locates files of the repository from the test's output directory.</summary>
internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string NativeDir => Path.Combine(Root, "src", "Guest.Sdk", "native");

    public static string IncludeDir => Path.Combine(NativeDir, "include");

    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Paravirt.sln")))
            {
                return d.FullName;
            }
        }
        throw new InvalidOperationException($"Paravirt.sln not found above {AppContext.BaseDirectory}");
    }
}
