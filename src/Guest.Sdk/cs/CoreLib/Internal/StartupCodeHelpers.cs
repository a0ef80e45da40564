// The runtime helpers the NativeAOT compiler calls from generated code, implemented for a unikernel: no GC (a
// bump allocator, objects are never freed or moved), one thread (no GC transitions), no exceptions (fail fast).
using System;
using Internal.Runtime;
using System.Runtime;
using System.Runtime.CompilerServices;
using Paravirt.Guest;

namespace Internal.Runtime.CompilerHelpers
{
    // ILC looks this class up by name; the helpers below are bound by their RuntimeExport names.
    internal static unsafe class StartupCodeHelpers
    {
        // Zeroed, 8-byte aligned memory from the guest heap (native/cs/csglue.c); fails fast when exhausted.
        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_cs_alloc")]
        private static extern void* Alloc(nuint size);

        internal static object AllocArray(MethodTable* mt, int count)
        {
            if (count < 0)
                Guest.FailFast("negative array length");
            ulong size = mt->BaseSize + (ulong)(uint)count * mt->ComponentSize;
            if (size > 0x7fff_ffff)
                Guest.FailFast("array too large");
            size = (size + 7) & ~7ul;
            MethodTable** obj = (MethodTable**)Alloc((nuint)size);
            *obj = mt;
            *(int*)(obj + 1) = count;
            return ObjectAt(obj);
        }

        internal static object NewObject(MethodTable* mt) => RhpNewFast(mt);

        [RuntimeExport("RhpNewFast")]
        private static object RhpNewFast(MethodTable* mt)
        {
            MethodTable** obj = (MethodTable**)Alloc((mt->BaseSize + 7) & ~7u);
            *obj = mt;
            return ObjectAt(obj);
        }

        [RuntimeExport("RhpNewFinalizable")]
        private static object RhpNewFinalizable(MethodTable* mt) => RhpNewFast(mt); // finalizers never run

        [RuntimeExport("RhpNewArray")]
        private static object RhpNewArray(MethodTable* mt, int count) => AllocArray(mt, count);

        [RuntimeExport("RhpNewArrayFast")]
        private static object RhpNewArrayFast(MethodTable* mt, int count) => AllocArray(mt, count);

        [RuntimeExport("RhpNewPtrArrayFast")]
        private static object RhpNewPtrArrayFast(MethodTable* mt, int count) => AllocArray(mt, count);

        [RuntimeExport("RhNewString")]
        private static object RhNewString(MethodTable* mt, int count) => AllocArray(mt, count);

        // The object at an address.
        private static object ObjectAt(void* address)
        {
            nint a = (nint)address;
            return Unsafe.As<nint, object>(ref a);
        }

        // Elements of an array start after { MethodTable*, int length, int padding }.
        private const int ArrayDataOffset = 16;

        // The address of an object (objects never move).
        internal static byte* AddressOf(object o) => *(byte**)Unsafe.AsPointer(ref o);

        // Write barriers: without a GC a reference store is a plain store.
        [RuntimeExport("RhpAssignRef")]
        private static void RhpAssignRef(void** dst, void* value) => *dst = value;

        [RuntimeExport("RhpCheckedAssignRef")]
        private static void RhpCheckedAssignRef(void** dst, void* value) => *dst = value;

        [RuntimeExport("RhpByRefAssignRef")]
        private static void RhpByRefAssignRef(void** dst, void** src) => *dst = *src;

        // GC transitions around calls into and out of native code: nothing to do without a GC.
        [RuntimeExport("RhpReversePInvoke")]
        private static void RhpReversePInvoke(nint frame) { }

        [RuntimeExport("RhpReversePInvokeReturn")]
        private static void RhpReversePInvokeReturn(nint frame) { }

        [RuntimeExport("RhpPInvoke")]
        private static void RhpPInvoke(nint frame) { }

        [RuntimeExport("RhpPInvokeReturn")]
        private static void RhpPInvokeReturn(nint frame) { }

        [RuntimeExport("RhpGcPoll")]
        private static void RhpGcPoll() { }

        [RuntimeExport("RhpFallbackFailFast")]
        private static void RhpFallbackFailFast() => Guest.FailFast("runtime fail-fast");
    }

    // The compiler calls these where IL would throw; a guest has no exceptions, so each one ends the guest with a
    // message on the debug console and exit status 255 (like the C runtime's pv_panic).
    internal static class ThrowHelpers
    {
        private static void ThrowIndexOutOfRangeException() => Guest.FailFast("IndexOutOfRangeException");
        private static void ThrowDivideByZeroException() => Guest.FailFast("DivideByZeroException");
        private static void ThrowOverflowException() => Guest.FailFast("OverflowException");
        private static void ThrowNullReferenceException() => Guest.FailFast("NullReferenceException");
        private static void ThrowArrayTypeMismatchException() => Guest.FailFast("ArrayTypeMismatchException");
        private static void ThrowInvalidCastException() => Guest.FailFast("InvalidCastException");
        private static void ThrowPlatformNotSupportedException() => Guest.FailFast("PlatformNotSupportedException");
        private static void ThrowArgumentException() => Guest.FailFast("ArgumentException");
        private static void ThrowArgumentOutOfRangeException() => Guest.FailFast("ArgumentOutOfRangeException");
        private static void ThrowNotImplementedException() => Guest.FailFast("NotImplementedException");
        private static void ThrowInvalidProgramException() => Guest.FailFast("InvalidProgramException");
        private static void ThrowTypeLoadException() => Guest.FailFast("TypeLoadException");
        private static void ThrowMissingMethodException() => Guest.FailFast("MissingMethodException");
        private static void ThrowMissingFieldException() => Guest.FailFast("MissingFieldException");
        private static void ThrowFeatureBodyRemoved() => Guest.FailFast("a feature removed by the compiler was used");
        private static void ThrowInstanceBodyRemoved() => Guest.FailFast("a method removed by the compiler was called");
        private static void ThrowUnavailableType() => Guest.FailFast("an unavailable type was used");
        private static void ThrowBadImageFormatException() => Guest.FailFast("BadImageFormatException");
    }
}
