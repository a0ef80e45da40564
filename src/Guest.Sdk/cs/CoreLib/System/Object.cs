// The core types of the Paravirt guest core library. Their layouts are a contract with the NativeAOT compiler:
// an object starts with its MethodTable pointer; a string is { MethodTable*, int length, char data[], '\0' };
// an array is { MethodTable*, int length, (padding to 8), elements }.
using Internal.Runtime;
using System.Runtime;
using System.Runtime.CompilerServices;

namespace System
{
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

    /// <summary>The base of every struct.</summary>
    public abstract class ValueType { }

    /// <summary>The base of every enum.</summary>
    public abstract class Enum : ValueType { }

    /// <summary>void.</summary>
    public struct Void { }

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

    /// <summary>A nullable value type.</summary>
    public struct Nullable<T> where T : struct
    {
        private readonly bool _hasValue;
        private T _value;

        /// <summary>Wraps a value.</summary>
        public Nullable(T value) { _hasValue = true; _value = value; }
        /// <summary>True when there is a value.</summary>
        public readonly bool HasValue => _hasValue;
        /// <summary>The value (fails fast when there is none).</summary>
        public readonly T Value { get { if (!_hasValue) Paravirt.Guest.Guest.FailFast("Nullable: no value"); return _value; } }
        /// <summary>The value or default.</summary>
        public readonly T GetValueOrDefault() => _value;
        /// <summary>Wraps a value.</summary>
        public static implicit operator T?(T value) => new T?(value);
        /// <summary>Unwraps a value.</summary>
        public static explicit operator T(T? value) => value.Value;
    }

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

    /// <summary>The base of attributes.</summary>
    public abstract class Attribute { }

    /// <summary>Where an attribute may appear.</summary>
    [Flags]
    public enum AttributeTargets
    {
        /// <summary>Assembly.</summary>
        Assembly = 0x0001,
        /// <summary>Module.</summary>
        Module = 0x0002,
        /// <summary>Class.</summary>
        Class = 0x0004,
        /// <summary>Struct.</summary>
        Struct = 0x0008,
        /// <summary>Enum.</summary>
        Enum = 0x0010,
        /// <summary>Constructor.</summary>
        Constructor = 0x0020,
        /// <summary>Method.</summary>
        Method = 0x0040,
        /// <summary>Property.</summary>
        Property = 0x0080,
        /// <summary>Field.</summary>
        Field = 0x0100,
        /// <summary>Event.</summary>
        Event = 0x0200,
        /// <summary>Interface.</summary>
        Interface = 0x0400,
        /// <summary>Parameter.</summary>
        Parameter = 0x0800,
        /// <summary>Delegate.</summary>
        Delegate = 0x1000,
        /// <summary>Return value.</summary>
        ReturnValue = 0x2000,
        /// <summary>Generic parameter.</summary>
        GenericParameter = 0x4000,
        /// <summary>Everything.</summary>
        All = 0x7FFF,
    }

    /// <summary>How an attribute class may be used.</summary>
    [AttributeUsage(AttributeTargets.Class, Inherited = true)]
    public sealed class AttributeUsageAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public AttributeUsageAttribute(AttributeTargets validOn) { }
        /// <summary>Whether the attribute may appear more than once.</summary>
        public bool AllowMultiple { get; set; }
        /// <summary>Whether derived classes inherit it.</summary>
        public bool Inherited { get; set; }
    }

    /// <summary>Marks an enum as a bit set.</summary>
    [AttributeUsage(AttributeTargets.Enum)]
    public sealed class FlagsAttribute : Attribute { }

    /// <summary>Marks a params parameter.</summary>
    [AttributeUsage(AttributeTargets.Parameter)]
    public sealed class ParamArrayAttribute : Attribute { }

    /// <summary>Marks an obsolete API.</summary>
    public sealed class ObsoleteAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public ObsoleteAttribute() { }
        /// <summary>Creates the attribute with a message.</summary>
        public ObsoleteAttribute(string message) { }
        /// <summary>Creates the attribute with a message and error flag.</summary>
        public ObsoleteAttribute(string message, bool error) { }
    }

    /// <summary>Delegates: declaring delegate types compiles, but a guest cannot create delegates (use function pointers).</summary>
    public abstract class Delegate { }
    /// <summary>See <see cref="Delegate"/>.</summary>
    public abstract class MulticastDelegate : Delegate { }

    /// <summary>A type handle.</summary>
    public struct RuntimeTypeHandle { }
    /// <summary>A method handle.</summary>
    public struct RuntimeMethodHandle { }
    /// <summary>A field handle.</summary>
    public struct RuntimeFieldHandle { }
    /// <summary>Type: present for the compiler, no reflection.</summary>
    public abstract class Type { }

    // The compiler's class for type objects (there are none at run time in a guest).
    internal sealed class RuntimeType : Type { }

    /// <summary>Releases resources deterministically (<c>using</c>).</summary>
    public interface IDisposable
    {
        /// <summary>Releases the resources.</summary>
        void Dispose();
    }
}

namespace System.Collections
{
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
}
