using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;

namespace Paravirt.Packaging.Tests;

/// <summary>What each package in nuget/ carries: metadata, README, XML docs, symbols with sources, tool settings.</summary>
public sealed class PackageContentTests
{
    // The PDB custom debug information kinds (Portable PDB spec).
    private static readonly Guid EmbeddedSource = new("0E8A571B-6926-466E-B4AD-8AB04611F5FE");

    public PackageContentTests() => LocalFeed.Require();

    [Fact]
    public void Every_package_has_metadata_and_its_readme()
    {
        foreach ((string id, string project) in LocalFeed.Packages)
        {
            XElement meta = LocalFeed.Nuspec(id);
            string? Get(string name) => meta.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value;
            Assert.Equal(id, Get("id"));
            Assert.Equal(LocalFeed.Version, Get("version"));
            Assert.False(string.IsNullOrWhiteSpace(Get("authors")), $"{id}: no authors");
            Assert.False(string.IsNullOrWhiteSpace(Get("description")), $"{id}: no description");
            Assert.False(string.IsNullOrWhiteSpace(Get("tags")), $"{id}: no tags");
            Assert.Equal("MIT", Get("license"));
            Assert.Equal("README.md", Get("readme"));
            // The packaged README is the project's README.md, byte for byte.
            byte[] readme = LocalFeed.ReadEntry(LocalFeed.PackagePath(id), "README.md");
            Assert.Equal(File.ReadAllBytes(Path.Combine(LocalFeed.RepoRoot, project, "README.md")), readme);
        }
    }

    [Theory]
    [InlineData("Paravirt.Hypercall.Abi", 6)]
    [InlineData("Paravirt.Hypervisor.Core", 6)]
    [InlineData("Paravirt.Guest.Linux", 2)]
    public void Library_packages_ship_the_assembly_with_xml_docs_and_symbols_with_embedded_sources(string id, int minDocuments)
    {
        string[] entries = LocalFeed.Entries(LocalFeed.PackagePath(id));
        Assert.Contains($"lib/net10.0/{id}.dll", entries);
        Assert.Contains($"lib/net10.0/{id}.xml", entries);
        Assert.DoesNotContain(entries, e => e.EndsWith(".pdb", StringComparison.Ordinal));
        string docs = System.Text.Encoding.UTF8.GetString(LocalFeed.ReadEntry(LocalFeed.PackagePath(id), $"lib/net10.0/{id}.xml"));
        Assert.Contains($"<name>{id}</name>", docs, StringComparison.Ordinal);
        Assert.Contains("<summary>", docs, StringComparison.Ordinal);

        Assert.True(File.Exists(LocalFeed.SymbolsPath(id)), $"{LocalFeed.SymbolsPath(id)} is missing (IncludeSymbols/SymbolPackageFormat)");
        byte[] dll = LocalFeed.ReadEntry(LocalFeed.PackagePath(id), $"lib/net10.0/{id}.dll");
        byte[] pdb = LocalFeed.ReadEntry(LocalFeed.SymbolsPath(id), $"lib/net10.0/{id}.pdb");
        AssertPdbMatchesAndEmbedsSources(id, dll, pdb, minDocuments);
    }

    [Fact]
    public void Core_depends_on_the_abi_package_of_the_same_version()
    {
        XElement meta = LocalFeed.Nuspec("Paravirt.Hypervisor.Core");
        XElement[] deps = [.. meta.Descendants().Where(e => e.Name.LocalName == "dependency")];
        XElement abi = Assert.Single(deps, d => (string?)d.Attribute("id") == "Paravirt.Hypercall.Abi");
        Assert.Equal(LocalFeed.Version, (string?)abi.Attribute("version"));
        Assert.DoesNotContain(deps, d => ((string?)d.Attribute("id"))!.Contains("PublicApiAnalyzers", StringComparison.Ordinal));
    }

    [Fact]
    public void Guest_sdk_package_carries_the_runtime_headers_linker_script_and_build_integration_and_nothing_else()
    {
        const string id = "Paravirt.Guest.Sdk";
        string[] entries = LocalFeed.Entries(LocalFeed.PackagePath(id));
        string[] expected =
        [
            "build/Paravirt.Guest.Sdk.props", "build/Paravirt.Guest.Sdk.targets",
            "native/include/paravirt/abi.h", "native/include/paravirt/paravirt.h",
            "native/paravirt.ld", "native/paravirt.mk", "native/runtime/start.S", "native/runtime/runtime.c",
            "native/runtime/printf.c", "native/runtime/string.c", "native/runtime/note.c", "README.md",
            "cs/Paravirt.Guest.CoreLib.dll",
        ];
        foreach (string e in expected)
        {
            Assert.Contains(e, entries);
        }
        // Every file of the source tree's build/ and native/ is in the package, byte for byte.
        string sdk = Path.Combine(LocalFeed.RepoRoot, "src", "Guest.Sdk");
        foreach (string dir in new[] { "build", "native" })
        {
            foreach (string file in Directory.EnumerateFiles(Path.Combine(sdk, dir), "*", SearchOption.AllDirectories))
            {
                string entry = Path.GetRelativePath(sdk, file).Replace('\\', '/');
                Assert.True(entries.Contains(entry), $"{id} lacks {entry}");
                Assert.Equal(File.ReadAllBytes(file), LocalFeed.ReadEntry(LocalFeed.PackagePath(id), entry));
            }
        }
        // A build-time package: no lib/ or ref/ assembly (the core library in cs/ is for the C# guest targets), no dependencies, marked as a development dependency.
        Assert.DoesNotContain(entries, e => e.StartsWith("lib/", StringComparison.Ordinal) || e.StartsWith("ref/", StringComparison.Ordinal));
        XElement meta = LocalFeed.Nuspec(id);
        Assert.DoesNotContain(meta.Descendants(), e => e.Name.LocalName == "dependency");
        Assert.Equal("true", meta.Elements().Single(e => e.Name.LocalName == "developmentDependency").Value);
    }

    [Fact]
    public void Core_carries_the_linux_personality_built_from_source()
    {
        // The library OS is an embedded resource of the assembly: a library user needs nothing else.
        byte[] dll = LocalFeed.ReadEntry(LocalFeed.PackagePath("Paravirt.Hypervisor.Core"), "lib/net10.0/Paravirt.Hypervisor.Core.dll");
        using var pe = new PEReader(new MemoryStream(dll));
        MetadataReader md = pe.GetMetadataReader();
        Assert.Contains(md.ManifestResources.Select(h => md.GetString(md.GetManifestResource(h).Name)), n => n == "Paravirt.Hypervisor.Linux.paravirt-linux.elf");
    }

    [Fact]
    public void Guest_linux_package_binds_libc_at_link_time_and_depends_on_the_abi()
    {
        const string id = "Paravirt.Guest.Linux";
        string targets = System.Text.Encoding.UTF8.GetString(LocalFeed.ReadEntry(LocalFeed.PackagePath(id), $"build/{id}.targets"));
        Assert.Contains("<DirectPInvoke Include=\"libc\" />", targets, StringComparison.Ordinal);
        XElement abi = Assert.Single(LocalFeed.Nuspec(id).Descendants(), e => e.Name.LocalName == "dependency" && (string?)e.Attribute("id") == "Paravirt.Hypercall.Abi");
        Assert.Equal(LocalFeed.Version, (string?)abi.Attribute("version"));
    }

    [Fact]
    public void Cli_package_is_a_dotnet_tool_named_paravirt_with_symbols()
    {
        const string id = "Paravirt.Cli";
        string[] entries = LocalFeed.Entries(LocalFeed.PackagePath(id));
        string settingsEntry = Assert.Single(entries, e => e.EndsWith("/DotnetToolSettings.xml", StringComparison.Ordinal));
        XDocument settings = XDocument.Parse(System.Text.Encoding.UTF8.GetString(LocalFeed.ReadEntry(LocalFeed.PackagePath(id), settingsEntry)).TrimStart('\uFEFF'));
        XElement command = settings.Descendants().Single(e => e.Name.LocalName == "Command");
        Assert.Equal("paravirt", (string?)command.Attribute("Name"));
        Assert.Equal("paravirt.dll", (string?)command.Attribute("EntryPoint"));
        string toolDir = settingsEntry[..settingsEntry.LastIndexOf('/')];
        Assert.Contains($"{toolDir}/Paravirt.Hypervisor.Core.dll", entries);
        Assert.Contains("DotnetTool", LocalFeed.Nuspec(id).Descendants().Where(e => e.Name.LocalName == "packageType").Select(e => (string?)e.Attribute("name")));
        Assert.True(File.Exists(LocalFeed.SymbolsPath(id)), $"{LocalFeed.SymbolsPath(id)} is missing");
        Assert.Contains(LocalFeed.Entries(LocalFeed.SymbolsPath(id)), e => e.EndsWith("/paravirt.pdb", StringComparison.Ordinal));
    }

    [Fact]
    public void Non_packable_projects_are_not_in_the_feed()
    {
        string[] ids = [.. LocalFeed.Packages.Select(p => p.Id)];
        string[] strays = [.. Directory.EnumerateFiles(LocalFeed.Directory, "*.nupkg")
            .Select(Path.GetFileName)
            .Where(f => !ids.Any(id => f!.StartsWith(id + ".", StringComparison.Ordinal) && char.IsDigit(f[id.Length + 1])))
            .Select(f => f!)];
        Assert.True(strays.Length == 0, $"unexpected packages in {LocalFeed.Directory}: {string.Join(", ", strays)} (tests, tools, bench and samples set IsPackable=false)");
    }

    private static void AssertPdbMatchesAndEmbedsSources(string id, byte[] dll, byte[] pdb, int minDocuments)
    {
        using var pe = new PEReader(new MemoryStream(dll));
        DebugDirectoryEntry codeView = Assert.Single(pe.ReadDebugDirectory(), e => e.Type == DebugDirectoryEntryType.CodeView);
        CodeViewDebugDirectoryData cv = pe.ReadCodeViewDebugDirectoryData(codeView);
        Assert.Contains(pe.ReadDebugDirectory(), e => e.Type == DebugDirectoryEntryType.Reproducible); // Deterministic

        using MetadataReaderProvider provider = MetadataReaderProvider.FromPortablePdbStream(new MemoryStream(pdb));
        MetadataReader reader = provider.GetMetadataReader();
        // The PDB id must be the one the DLL points at, or no debugger will load it.
        Assert.Equal(cv.Guid, new Guid(reader.DebugMetadataHeader!.Id.AsSpan(0, 16)));

        var embedded = new HashSet<DocumentHandle>();
        foreach (CustomDebugInformationHandle h in reader.CustomDebugInformation)
        {
            CustomDebugInformation cdi = reader.GetCustomDebugInformation(h);
            if (reader.GetGuid(cdi.Kind) == EmbeddedSource && cdi.Parent.Kind == HandleKind.Document)
            {
                embedded.Add((DocumentHandle)cdi.Parent);
            }
        }
        string[] missing = [.. reader.Documents.Where(d => !embedded.Contains(d)).Select(d => reader.GetString(reader.GetDocument(d).Name))];
        Assert.True(reader.Documents.Count >= minDocuments, $"{id}.pdb lists only {reader.Documents.Count} documents");
        Assert.True(missing.Length == 0, $"{id}.pdb does not embed: {string.Join(", ", missing)} (EmbedAllSources)");
    }
}
