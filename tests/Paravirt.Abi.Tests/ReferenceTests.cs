using System.Reflection;
using System.Runtime.InteropServices;
using Paravirt.AbiGen;

namespace Paravirt.Abi.Tests;

/// <summary>The generated ABI reference docs/abi-reference.md: golden copy, and complete against the assembly.</summary>
public sealed class ReferenceTests
{
    private static readonly Assembly AbiAssembly = typeof(AbiExportAttribute).Assembly;

    private static string ReferencePath => Path.Combine(RepoPaths.Root, MarkdownGenerator.RelativeReferencePath);

    private static readonly Lazy<string> Generated = new(() => MarkdownGenerator.Generate(AbiAssembly));

    [Fact]
    public void CheckedInReference_EqualsGeneratedReference()
    {
        GoldenFile.AssertUpToDate(ReferencePath, MarkdownGenerator.RelativeReferencePath, Generated.Value, MarkdownGenerator.RegenerateCommand);
    }

    [Fact]
    public void Generation_IsDeterministic_AndUsesLf()
    {
        Assert.Equal(MarkdownGenerator.Generate(AbiAssembly), MarkdownGenerator.Generate(AbiAssembly));
        Assert.DoesNotContain("\r", Generated.Value, StringComparison.Ordinal);
        Assert.EndsWith("|\n", Generated.Value, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_exported_enum_member_has_a_row_with_its_value_and_both_names()
    {
        foreach (Type t in ExportedTypes().Where(t => t.IsEnum))
        {
            string prefix = t.GetCustomAttribute<AbiExportAttribute>()!.CName.ToUpperInvariant() + "_";
            bool signed = Enum.GetUnderlyingType(t) == typeof(long) || Enum.GetUnderlyingType(t) == typeof(int);
            foreach (FieldInfo f in t.GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                object raw = f.GetRawConstantValue()!;
                string value = signed ? Convert.ToInt64(raw, System.Globalization.CultureInfo.InvariantCulture).ToString(System.Globalization.CultureInfo.InvariantCulture) : "";
                string row = Generated.Value.Split('\n').SingleOrDefault(l => System.Text.RegularExpressions.Regex.IsMatch(l, $@"^\| `[^`]+` \| `{prefix}[A-Z0-9_]+` \| `{f.Name}` \|"))
                    ?? throw new Xunit.Sdk.XunitException($"no row for {t.Name}.{f.Name} (a {prefix}* macro)");
                if (signed)
                {
                    Assert.StartsWith($"| `{value}` |", row, StringComparison.Ordinal);
                }
            }
        }
    }

    [Fact]
    public void Every_struct_field_has_its_offset_and_size()
    {
        foreach (Type t in ExportedTypes().Where(t => t.IsValueType && !t.IsEnum))
        {
            string cName = t.GetCustomAttribute<AbiExportAttribute>()!.CName;
            Assert.Contains($"### `{cName}`\n\nC#: `{t.FullName}`. Size {Marshal.SizeOf(t)} bytes", Generated.Value, StringComparison.Ordinal);
            foreach (FieldInfo f in t.GetFields(BindingFlags.Instance | BindingFlags.Public))
            {
                int offset = (int)Marshal.OffsetOf(t, f.Name);
                string section = Generated.Value[Generated.Value.IndexOf($"### `{cName}`", StringComparison.Ordinal)..];
                section = section[..section.IndexOf("\n\n#", 1, StringComparison.Ordinal)];
                Assert.Contains(section.Split('\n'), l => l.StartsWith($"| `0x{offset:X2}` |", StringComparison.Ordinal) && l.Contains($" {f.Name}` |", StringComparison.Ordinal));
            }
        }
    }

    [Theory]
    [InlineData("| `0x0100` | `PV_HYPERCALL_CONSOLE_WRITE` | `ConsoleWrite` | `console_write(buf, len)`: writes bytes to the console output stream. Returns bytes written. |")]
    [InlineData("| `-14` | `PV_STATUS_FAULT` | `Fault` |")]
    [InlineData("| `0x0002` | `PV_FEATURE0_WALL_CLOCK` | `WallClock` | `PV_HYPERCALL_CLOCK_WALL` returns real wall-clock time (otherwise 0). |")]
    [InlineData("| `0x08` | 8 | `uint64_t hypercall_page` | `ulong HypercallPage` |")]
    [InlineData("| `0x08` | 24 | `uint8_t name[24]` | `fixed byte[24] Name` |")]
    [InlineData("| `PV_HYPERCALL_PAGE_MAGIC` | `Magic` | `0x43485650` |")]
    [InlineData("| `PV_NOTE_NAME` | `Name` | `\"Paravirt\"` |")]
    [InlineData("| argument 4 | `r10` |")]
    [InlineData("# Paravirt ABI reference (ABI 1.1)")]
    [InlineData("[architecture](architecture.md)")]
    [InlineData("`(major << 16) \\| minor`")] // a pipe inside a table cell's code span is escaped
    [InlineData("a `pv_manifest_header` followed by `Count` `pv_manifest_entry`")] // whitespace between elements kept
    [InlineData("```\n+0x000  generic entry stub")] // <code> in remarks becomes a fenced block
    public void Reference_contains(string text)
    {
        Assert.Contains(text, Generated.Value, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_contents_link_points_at_a_heading()
    {
        // GitHub's anchors: lower case, punctuation other than '-' and '_' dropped, spaces to '-'.
        static string Anchor(string heading) => new(heading.ToLowerInvariant().Where(c => char.IsLetterOrDigit(c) || c is '-' or '_' or ' ').Select(c => c == ' ' ? '-' : c).ToArray());
        string[] lines = Generated.Value.Split('\n');
        HashSet<string> anchors = [.. lines.Where(l => l.StartsWith('#')).Select(l => Anchor(l.TrimStart('#').Trim()))];
        string[] links = [.. System.Text.RegularExpressions.Regex.Matches(Generated.Value, @"\]\(#([^)]+)\)").Select(m => m.Groups[1].Value)];
        Assert.True(links.Length >= 10, $"only {links.Length} contents links");
        foreach (string link in links)
        {
            Assert.True(anchors.Contains(link), $"contents link #{link} matches no heading (headings: {string.Join(", ", anchors)})");
        }
    }

    private static IEnumerable<Type> ExportedTypes() => AbiAssembly.GetTypes().Where(t => t.IsDefined(typeof(AbiExportAttribute), false));
}
