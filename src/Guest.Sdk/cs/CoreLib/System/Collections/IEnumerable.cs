namespace System.Collections;

/// <summary>Present so that the C# compiler accepts <c>foreach</c> over arrays (which it compiles to an indexed loop); guests cannot enumerate through it.</summary>
public interface IEnumerable
{
    /// <summary>An enumerator.</summary>
    IEnumerator GetEnumerator();
}

/// <summary>See <see cref="IEnumerable"/>.</summary>
public interface IEnumerator
{
    /// <summary>Advances.</summary>
    bool MoveNext();
    /// <summary>The current element.</summary>
    object Current { get; }
}
