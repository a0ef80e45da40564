namespace Paravirt.Testing;

/// <summary>A fresh temporary folder for one test, deleted (best effort) on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    /// <summary>Creates <c>$TMPDIR/paravirt-PREFIX-XXXXXX</c>.</summary>
    public TempDirectory(string prefix = "test") => Path = Directory.CreateTempSubdirectory($"paravirt-{prefix}-").FullName;

    /// <summary>The folder's full path.</summary>
    public string Path { get; }

    /// <summary>Deletes the folder and everything in it.</summary>
    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover temp folder does not change any result.
        }
    }
}
