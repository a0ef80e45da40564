namespace Paravirt.Abi.Tests;

/// <summary>Compares a checked-in generated file with what its generator produces now.</summary>
internal static class GoldenFile
{
    /// <summary>Fails, naming the first differing line and the regenerate command, when the checked-in file differs.</summary>
    public static void AssertUpToDate(string path, string relativePath, string expected, string regenerateCommand)
    {
        Assert.True(File.Exists(path), $"{path} is missing; generate it with: {regenerateCommand}");
        string actual = File.ReadAllText(path);
        if (actual == expected)
        {
            return;
        }
        string[] a = actual.Split('\n');
        string[] e = expected.Split('\n');
        int line = 0;
        while (line < a.Length && line < e.Length && a[line] == e[line])
        {
            line++;
        }
        Assert.Fail(
            $"{relativePath} is out of date with Paravirt.Hypercall.Abi (first difference at line {line + 1}: " +
            $"checked in \"{(line < a.Length ? a[line] : "<end>")}\", generated \"{(line < e.Length ? e[line] : "<end>")}\"). " +
            $"Never edit it by hand; regenerate it from the repository root with: {regenerateCommand}");
    }
}
