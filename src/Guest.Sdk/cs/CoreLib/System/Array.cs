// Layout contract with the NativeAOT compiler: an array is { MethodTable*, int length, (padding to 8), elements }.

namespace System;

/// <summary>The base of every array type.</summary>
public abstract class Array
{
    // Layout contract: the element count follows the MethodTable pointer.
    private readonly int _length;

    /// <summary>The number of elements.</summary>
    public int Length => _length;
}

// The compiler gives every T[] this base for generic-shape purposes.
internal class Array<T> : Array { }
