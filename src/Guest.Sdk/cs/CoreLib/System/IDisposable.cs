namespace System;

/// <summary>Releases resources deterministically (<c>using</c>).</summary>
public interface IDisposable
{
    /// <summary>Releases the resources.</summary>
    void Dispose();
}
