using Internal.Runtime;
// Managed helpers the NativeAOT compiler binds by type and method name (ILCompiler's JitHelper): memory moves,
// array stores, boxing and casts, checked arithmetic. Implemented for this library's subset: no GC (plain stores),
// exact-type casts only, every failure is a fail-fast.
using System.Runtime.CompilerServices;
using Internal.Runtime.CompilerHelpers;
using Paravirt.Guest;

namespace System
{
    internal static unsafe class SpanHelpers
    {
        internal static void Memmove(ref byte dest, ref byte src, nuint len)
        {
            byte* d = (byte*)Unsafe.AsPointer(ref dest);
            byte* s = (byte*)Unsafe.AsPointer(ref src);
            if (d == s || len == 0)
                return;
            if (d < s || d >= s + len)
            {
                for (nuint i = 0; i < len; i++)
                    d[i] = s[i];
            }
            else
            {
                for (nuint i = len; i > 0; i--)
                    d[i - 1] = s[i - 1];
            }
        }

        internal static void Fill(ref byte dest, byte value, nuint len)
        {
            byte* d = (byte*)Unsafe.AsPointer(ref dest);
            for (nuint i = 0; i < len; i++)
                d[i] = value;
        }

        internal static void ClearWithoutReferences(ref byte dest, nuint len) => Fill(ref dest, 0, len);
    }

    internal static unsafe class Buffer
    {
        // Without a GC a block copy containing references needs no barrier.
        internal static void BulkMoveWithWriteBarrier(ref byte dest, ref byte src, nuint len) => SpanHelpers.Memmove(ref dest, ref src, len);
    }

    /// <summary>Math helpers the compiler calls for checked arithmetic and conversions.</summary>
    public static class Math
    {
        internal static int DivInt32(int a, int b) => a / b;
        internal static uint DivUInt32(uint a, uint b) => a / b;
        internal static long DivInt64(long a, long b) => a / b;
        internal static ulong DivUInt64(ulong a, ulong b) => a / b;
        internal static int ModInt32(int a, int b) => a % b;
        internal static uint ModUInt32(uint a, uint b) => a % b;
        internal static long ModInt64(long a, long b) => a % b;
        internal static ulong ModUInt64(ulong a, ulong b) => a % b;

        internal static long MultiplyChecked(long a, long b)
        {
            long r = a * b;
            if ((a != 0 && r / a != b) || (a == -1 && b == long.MinValue) || (b == -1 && a == long.MinValue))
                Guest.FailFast("OverflowException");
            return r;
        }

        internal static ulong MultiplyChecked(ulong a, ulong b)
        {
            ulong r = a * b;
            if (a != 0 && r / a != b)
                Guest.FailFast("OverflowException");
            return r;
        }

        internal static int ConvertToInt32Checked(double v)
        {
            if (!(v > -2147483649.0 && v < 2147483648.0)) Guest.FailFast("OverflowException");
            return (int)v;
        }

        internal static uint ConvertToUInt32Checked(double v)
        {
            if (!(v > -1.0 && v < 4294967296.0)) Guest.FailFast("OverflowException");
            return (uint)v;
        }

        internal static long ConvertToInt64Checked(double v)
        {
            if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) Guest.FailFast("OverflowException");
            return (long)v;
        }

        internal static ulong ConvertToUInt64Checked(double v)
        {
            if (!(v > -1.0 && v < 18446744073709551616.0)) Guest.FailFast("OverflowException");
            return (ulong)v;
        }

        /// <summary>The smaller of two ints.</summary>
        public static int Min(int a, int b) => a < b ? a : b;
        /// <summary>The larger of two ints.</summary>
        public static int Max(int a, int b) => a > b ? a : b;
        /// <summary>The smaller of two longs.</summary>
        public static long Min(long a, long b) => a < b ? a : b;
        /// <summary>The larger of two longs.</summary>
        public static long Max(long a, long b) => a > b ? a : b;
        /// <summary>The smaller of two ulongs.</summary>
        public static ulong Min(ulong a, ulong b) => a < b ? a : b;
        /// <summary>The larger of two ulongs.</summary>
        public static ulong Max(ulong a, ulong b) => a > b ? a : b;
    }
}

namespace System.Runtime
{
    // Casts and array stores. Only exact types are recognised: a cast to a base class or an interface fails fast
    // (documented in docs/csharp-guests.md); isinst to a different type answers null.
    internal static unsafe class TypeCast
    {
        private const int ArrayDataOffset = 16;

        private static bool IsExactly(object obj, MethodTable* type) => obj.m_pMethodTable == type;

        private static bool IsSubclass(object obj, MethodTable* type)
        {
            for (MethodTable* mt = obj.m_pMethodTable; mt != null; mt = mt->RelatedType)
            {
                if (mt == type)
                    return true;
                // Arrays keep the element type in RelatedType; stop at them rather than walk elements.
                if (mt->ComponentSize != 0)
                    return false;
            }
            return false;
        }

        internal static object IsInstanceOfClass(MethodTable* type, object obj) => obj == null || IsSubclass(obj, type) ? obj : null;
        internal static object IsInstanceOfAny(MethodTable* type, object obj) => obj == null || IsExactly(obj, type) ? obj : null;
        internal static object IsInstanceOfInterface(MethodTable* type, object obj)
        {
            Guest.FailFast("interface casts are not supported in C# guests");
            return null;
        }

        // Exceptions do not exist in a guest; the compiler asks for the helper anyway.
        internal static object IsInstanceOfException(MethodTable* type, object obj) => IsInstanceOfClass(type, obj);

        internal static object CheckCastClass(MethodTable* type, object obj)
        {
            if (obj != null && !IsSubclass(obj, type))
                Guest.FailFast("InvalidCastException");
            return obj;
        }

        internal static object CheckCastClassSpecial(MethodTable* type, object obj) => CheckCastClass(type, obj);

        internal static object CheckCastAny(MethodTable* type, object obj)
        {
            if (obj != null && !IsExactly(obj, type))
                Guest.FailFast("InvalidCastException (only exact-type casts are supported)");
            return obj;
        }

        internal static object CheckCastInterface(MethodTable* type, object obj)
        {
            Guest.FailFast("interface casts are not supported in C# guests");
            return obj;
        }

        internal static void StelemRef(object[] array, nint index, object obj)
        {
            if ((nuint)index >= (uint)array.Length)
                Guest.FailFast("IndexOutOfRangeException");
            if (obj != null && !IsSubclass(obj, array.m_pMethodTable->RelatedType))
                Guest.FailFast("ArrayTypeMismatchException");
            *(void**)(StartupCodeHelpers.AddressOf(array) + ArrayDataOffset + index * sizeof(void*)) = StartupCodeHelpers.AddressOf(obj);
        }

        internal static ref object LdelemaRef(object[] array, nint index, MethodTable* elementType)
        {
            if ((nuint)index >= (uint)array.Length)
                Guest.FailFast("IndexOutOfRangeException");
            if (array.m_pMethodTable->RelatedType != elementType)
                Guest.FailFast("ArrayTypeMismatchException");
            return ref *(object*)(StartupCodeHelpers.AddressOf(array) + ArrayDataOffset + index * sizeof(void*));
        }
    }

    // Boxing: an object with the value's MethodTable followed by the value.
    internal static unsafe class RuntimeExports
    {
        internal static object RhBox(MethodTable* type, ref byte data)
        {
            object box = StartupCodeHelpers.NewObject(type);
            uint size = type->BaseSize - 2 * (uint)sizeof(void*); // BaseSize covers the MethodTable pointer and min size
            byte* dst = StartupCodeHelpers.AddressOf(box) + sizeof(void*);
            SpanHelpers.Memmove(ref *dst, ref data, ValueSize(type));
            return box;
        }

        private static nuint ValueSize(MethodTable* type)
        {
            // Value types: BaseSize = sizeof(MethodTable*) + field size, rounded up, at least 3 pointers.
            // Copying the whole payload (BaseSize - pointer) may read a little past a small value on the stack;
            // boxes of values smaller than the payload are copied by size classes the compiler aligns, so cap at
            // BaseSize - pointer.
            return type->BaseSize - (nuint)sizeof(void*);
        }

        internal static ref byte RhUnbox2(MethodTable* type, object obj)
        {
            if (obj == null || obj.m_pMethodTable != type)
                Guest.FailFast("InvalidCastException (unbox)");
            return ref *(StartupCodeHelpers.AddressOf(obj) + sizeof(void*));
        }

        internal static void RhUnboxNullable(ref byte data, MethodTable* type, object obj)
        {
            Guest.FailFast("unboxing to Nullable<T> is not supported in C# guests");
        }

        internal static void RhUnboxTypeTest(MethodTable* type, MethodTable* boxType)
        {
            if (type != boxType)
                Guest.FailFast("InvalidCastException (unbox)");
        }
    }
}
