// The primitive types and the one comparison interface they implement.

namespace System;

// Primitive types: the compiler knows their layouts, so they need no fields.
/// <summary>bool.</summary>
public struct Boolean { }
/// <summary>char (UTF-16 code unit).</summary>
public struct Char { }
/// <summary>sbyte.</summary>
public struct SByte { }
/// <summary>byte.</summary>
public struct Byte { }
/// <summary>short.</summary>
public struct Int16 { }
/// <summary>ushort.</summary>
public struct UInt16 { }
/// <summary>Ordering of values of one type.</summary>
public interface IComparable<in T>
{
    /// <summary>Negative, zero or positive as this is less than, equal to or greater than <paramref name="other"/>.</summary>
    int CompareTo(T other);
}

/// <summary>int.</summary>
public struct Int32 : IComparable<int>
{
    private readonly int m_value;

    /// <inheritdoc/>
    public int CompareTo(int other) => m_value < other ? -1 : m_value > other ? 1 : 0;

    /// <summary>Largest int.</summary>
    public const int MaxValue = 0x7fffffff;
    /// <summary>Smallest int.</summary>
    public const int MinValue = unchecked((int)0x80000000);
}
/// <summary>uint.</summary>
public struct UInt32 : IComparable<uint>
{
    private readonly uint m_value;

    /// <inheritdoc/>
    public int CompareTo(uint other) => m_value < other ? -1 : m_value > other ? 1 : 0;

    /// <summary>Largest uint.</summary>
    public const uint MaxValue = 0xffffffff;
}
/// <summary>long.</summary>
public struct Int64 : IComparable<long>
{
    private readonly long m_value;

    /// <inheritdoc/>
    public int CompareTo(long other) => m_value < other ? -1 : m_value > other ? 1 : 0;

    /// <summary>Largest long.</summary>
    public const long MaxValue = 0x7fffffffffffffff;
    /// <summary>Smallest long.</summary>
    public const long MinValue = unchecked((long)0x8000000000000000);
}
/// <summary>ulong.</summary>
public struct UInt64 : IComparable<ulong>
{
    private readonly ulong m_value;

    /// <inheritdoc/>
    public int CompareTo(ulong other) => m_value < other ? -1 : m_value > other ? 1 : 0;

    /// <summary>Largest ulong.</summary>
    public const ulong MaxValue = 0xffffffffffffffff;
}
/// <summary>nint.</summary>
public struct IntPtr { }
/// <summary>nuint.</summary>
public struct UIntPtr { }
/// <summary>float.</summary>
public struct Single { }
/// <summary>double.</summary>
public struct Double { }
