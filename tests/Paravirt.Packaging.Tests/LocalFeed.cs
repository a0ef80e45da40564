using System.IO.Compression;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Paravirt.Packaging.Tests;

/// <summary>
/// The local feed <c>nuget/</c> that <c>make pack</c> fills. Every test starts with <see cref="Require"/>: missing
/// or stale packages fail with the command that makes them, never a silent skip.
/// </summary>
internal static partial class LocalFeed
{
    /// <summary>Package id and the project directory it is packed from.</summary>
    public static readonly (string Id, string Project)[] Packages =
    [
        ("Paravirt.Hypercall.Abi", "src/Hypercall.Abi"),
        ("Paravirt.Hypervisor.Core", "src/Hypervisor.Core"),
        ("Paravirt.Guest.Sdk", "src/Guest.Sdk"),
        ("Paravirt.Guest.Linux", "src/Guest.Linux"),
        ("Paravirt.Cli", "src/Paravirt.Cli"),
    ];

    public const string PackCommand = "make pack (or: dotnet pack Paravirt.sln -c Release)";

    public static string RepoRoot => RepoPaths.Root;

    public static string Directory { get; } = Path.Combine(RepoRoot, "nuget");

    private static readonly Lazy<string> LazyVersion = new(FindVersion);

    /// <summary>The version of the packages in the feed (all four must have it).</summary>
    public static string Version => LazyVersion.Value;

    public static string PackagePath(string id) => Path.Combine(Directory, $"{id}.{Version}.nupkg");

    public static string SymbolsPath(string id) => Path.Combine(Directory, $"{id}.{Version}.snupkg");

    /// <summary>Fails unless all four packages are in the feed, in one version, newer than their sources.</summary>
    public static void Require()
    {
        _ = Version;
        foreach ((string id, string project) in Packages)
        {
            string nupkg = PackagePath(id);
            Assert.True(File.Exists(nupkg), $"{nupkg} is missing: run {PackCommand} before these tests");
            DateTime packed = File.GetLastWriteTimeUtc(nupkg);
            string projectDir = Path.Combine(RepoRoot, project);
            string? newer = System.IO.Directory.EnumerateFiles(projectDir, "*", SearchOption.AllDirectories)
                .Where(f => !IsBuildOutput(projectDir, f))
                .FirstOrDefault(f => File.GetLastWriteTimeUtc(f) > packed);
            Assert.True(newer is null, $"{nupkg} is older than {newer}: the feed is stale, run {PackCommand} again");
        }
    }

    /// <summary>The entries of a package (forward slashes, as stored).</summary>
    public static string[] Entries(string path)
    {
        using ZipArchive zip = ZipFile.OpenRead(path);
        return [.. zip.Entries.Select(e => e.FullName)];
    }

    public static byte[] ReadEntry(string path, string entry)
    {
        using ZipArchive zip = ZipFile.OpenRead(path);
        ZipArchiveEntry e = zip.GetEntry(entry) ?? throw new InvalidOperationException($"{path} has no {entry}");
        using Stream s = e.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    /// <summary>The package's nuspec metadata element.</summary>
    public static XElement Nuspec(string id)
    {
        XDocument doc = XDocument.Parse(System.Text.Encoding.UTF8.GetString(ReadEntry(PackagePath(id), $"{id}.nuspec")).TrimStart('\uFEFF'));
        return doc.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static bool IsBuildOutput(string projectDir, string file)
    {
        string rel = Path.GetRelativePath(projectDir, file).Replace('\\', '/');
        // Nested projects' outputs too (src/Guest.Sdk/cs/CoreLib/bin, obj).
        return rel.Split('/') is [.. var dirs, _] && (dirs.Contains("bin") || dirs.Contains("obj"));
    }

    private static string FindVersion()
    {
        Assert.True(System.IO.Directory.Exists(Directory), $"{Directory} does not exist: run {PackCommand} before these tests");
        // The tool package names the version; the others must match it (checked in Require).
        string[] versions = [.. System.IO.Directory.EnumerateFiles(Directory, "Paravirt.Cli.*.nupkg")
            .Select(f => CliPackage().Match(Path.GetFileName(f)))
            .Where(m => m.Success)
            .Select(m => m.Groups[1].Value)];
        Assert.True(versions.Length > 0, $"no Paravirt.Cli.<version>.nupkg in {Directory}: run {PackCommand} before these tests");
        Assert.True(versions.Length == 1, $"{Directory} holds several versions ({string.Join(", ", versions)}): delete the old packages and run {PackCommand}");
        return versions[0];
    }

    [GeneratedRegex(@"^Paravirt\.Cli\.(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)\.nupkg$")]
    private static partial Regex CliPackage();
}
