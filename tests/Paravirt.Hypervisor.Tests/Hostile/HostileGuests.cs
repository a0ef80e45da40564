using System.Collections.Concurrent;

namespace Paravirt.Hypervisor.Tests.Hostile;

/// <summary>
/// Builds the hostile guests in <c>Hostile/guests/*.c</c> from source with the SDK's <c>native/paravirt.mk</c> (gcc),
/// once per test run, into <c>artifacts/hostile-guests/</c> (make rebuilds only what changed).
/// </summary>
internal static class HostileGuests
{
    private static readonly ConcurrentDictionary<string, Lazy<string>> Built = new(StringComparer.Ordinal);

    /// <summary>The path of hostile guest <paramref name="name"/> (e.g. "poll_forever"), built on first use.</summary>
    public static string Path(string name) => Built.GetOrAdd(name, n => new Lazy<string>(() => Build(n))).Value;

    private static string Build(string name)
    {
        string root = RepoPaths.Root;
        string source = System.IO.Path.Combine(root, "tests", "Paravirt.Hypervisor.Tests", "Hostile", "guests", name + ".c");
        string output = System.IO.Path.Combine(root, "artifacts", "hostile-guests", name + ".elf");
        return GuestBuilder.MakeChecked(root, source, output);
    }
}

/// <summary>A stream whose writes block until <see cref="Release"/>: a console reader that stalls.</summary>
internal sealed class StalledStream : Stream
{
    private readonly ManualResetEventSlim _released = new();
    private long _written;

    public long Written => Interlocked.Read(ref _written);

    public void Release() => _released.Set();

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() => _released.Wait();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count)
    {
        _released.Wait();
        Interlocked.Add(ref _written, count);
    }

    protected override void Dispose(bool disposing)
    {
        _released.Set();
        base.Dispose(disposing);
    }
}
