namespace Paravirt.Testing;

/// <summary>
/// A test class whose every test gets its own fresh temporary folder, <see cref="Dir"/>: xunit makes one instance of
/// the class per test and disposes it after the test, which deletes the folder.
/// </summary>
public abstract class TestWithTempDirectory : IDisposable
{
    private readonly TempDirectory _tmp;

    /// <summary>Creates <c>$TMPDIR/paravirt-PREFIX-XXXXXX</c> for this test.</summary>
    protected TestWithTempDirectory(string prefix) => _tmp = new TempDirectory(prefix);

    /// <summary>The test's folder (full path).</summary>
    protected string Dir => _tmp.Path;

    /// <summary>Deletes the folder and everything in it.</summary>
    public void Dispose()
    {
        _tmp.Dispose();
        GC.SuppressFinalize(this);
    }
}
