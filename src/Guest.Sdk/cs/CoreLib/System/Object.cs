// The root of every class. Layout contract with the NativeAOT compiler: an object starts with its MethodTable
// pointer (strings and arrays add their length after it: see String.cs and Array.cs).
using Internal.Runtime;
using System.Runtime.CompilerServices;

namespace System;

/// <summary>The root of every class.</summary>
public class Object
{
    // The first field of every object: the compiler reads and writes it directly.
    internal unsafe MethodTable* m_pMethodTable;

    /// <summary>Creates the object.</summary>
    public Object() { }

    /// <summary>Reference equality (this library has no value-equality protocol).</summary>
    public virtual bool Equals(object obj) => this == obj;

    /// <summary>A hash of the object's address (objects never move: there is no GC).</summary>
    public virtual unsafe int GetHashCode()
    {
        object o = this;
        nint address = *(nint*)Unsafe.AsPointer(ref o);
        return (int)address ^ (int)(address >> 32);
    }

    /// <summary>Returns the type name's placeholder: there is no reflection in a guest.</summary>
    public virtual string ToString() => "object";
}
