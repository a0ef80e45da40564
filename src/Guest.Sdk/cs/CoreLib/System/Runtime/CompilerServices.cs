// Attributes and intrinsics the C# compiler and the NativeAOT compiler look for by name.
namespace System.Runtime
{
    /// <summary>Exports a managed method under a native symbol name (used by the runtime helpers ILC calls).</summary>
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class RuntimeExportAttribute : Attribute
    {
        public RuntimeExportAttribute(string entry) { }
    }

    /// <summary>Binds an extern method to a native symbol: a direct call, no P/Invoke transition (there is no GC).</summary>
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class RuntimeImportAttribute : Attribute
    {
        public RuntimeImportAttribute(string lib) { }
        public RuntimeImportAttribute(string lib, string entry) { }
    }

}

namespace Internal.Runtime
{
    /// <summary>The head of the compiler's type descriptor (NativeAOT's MethodTable): the fields this library reads.</summary>
    internal unsafe struct MethodTable
    {
        internal ushort ComponentSize;   // low half of the 32-bit flags word: element size of arrays and strings
        internal ushort Flags;
        internal uint BaseSize;          // object size without elements, including the MethodTable pointer
        internal MethodTable* RelatedType; // base type, or element type of an array
        internal ushort NumVtableSlots;
        internal ushort NumInterfaces;
        internal uint HashCode;
    }
}

namespace System.Runtime.CompilerServices
{
    /// <summary>Method implementation flags.</summary>
    [Flags]
    public enum MethodImplOptions
    {
        /// <summary>None.</summary>
        Unmanaged = 0x0004,
        /// <summary>Do not inline.</summary>
        NoInlining = 0x0008,
        /// <summary>Preserve the signature.</summary>
        PreserveSig = 0x0080,
        /// <summary>Implemented by the runtime.</summary>
        InternalCall = 0x1000,
        /// <summary>Synchronized (not supported).</summary>
        Synchronized = 0x0020,
        /// <summary>Do not optimize.</summary>
        NoOptimization = 0x0040,
        /// <summary>Inline aggressively.</summary>
        AggressiveInlining = 0x0100,
        /// <summary>Optimize aggressively.</summary>
        AggressiveOptimization = 0x0200,
    }

    /// <summary>Method implementation attribute.</summary>
    [AttributeUsage(AttributeTargets.Constructor | AttributeTargets.Method)]
    public sealed class MethodImplAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public MethodImplAttribute(MethodImplOptions methodImplOptions) { }
    }

    /// <summary>Marks a method the compiler implements.</summary>
    [AttributeUsage(AttributeTargets.Class | AttributeTargets.Struct | AttributeTargets.Method | AttributeTargets.Constructor | AttributeTargets.Field, Inherited = false)]
    internal sealed class IntrinsicAttribute : Attribute { }

    /// <summary>Extension methods.</summary>
    [AttributeUsage(AttributeTargets.Method | AttributeTargets.Class | AttributeTargets.Assembly)]
    public sealed class ExtensionAttribute : Attribute { }

    /// <summary>Fixed-size buffers.</summary>
    [AttributeUsage(AttributeTargets.Field, Inherited = false)]
    public sealed class FixedBufferAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public FixedBufferAttribute(Type elementType, int length) { }
    }

    /// <summary>Compiler-generated code.</summary>
    [AttributeUsage(AttributeTargets.All, Inherited = true)]
    public sealed class CompilerGeneratedAttribute : Attribute { }

    /// <summary>A struct with a fixed buffer.</summary>
    [AttributeUsage(AttributeTargets.Struct)]
    public sealed class UnsafeValueTypeAttribute : Attribute { }

    /// <summary>readonly.</summary>
    [AttributeUsage(AttributeTargets.All, Inherited = false)]
    public sealed class IsReadOnlyAttribute : Attribute { }

    /// <summary>ref struct.</summary>
    [AttributeUsage(AttributeTargets.Struct)]
    public sealed class IsByRefLikeAttribute : Attribute { }

    /// <summary>unmanaged constraint.</summary>
    [AttributeUsage(AttributeTargets.All)]
    public sealed class IsUnmanagedAttribute : Attribute { }

    /// <summary>Indexer name.</summary>
    [AttributeUsage(AttributeTargets.Property, Inherited = true)]
    public sealed class IndexerNameAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public IndexerNameAttribute(string indexerName) { }
    }

    /// <summary>volatile modifier.</summary>
    public static class IsVolatile { }

    /// <summary>Features the compiler checks for.</summary>
    public static class RuntimeFeature
    {
        /// <summary>ref fields.</summary>
        public const string ByRefFields = nameof(ByRefFields);
        /// <summary>Unmanaged function pointer calling conventions.</summary>
        public const string UnmanagedSignatureCallingConvention = nameof(UnmanagedSignatureCallingConvention);
        /// <summary>Default interface methods.</summary>
        public const string DefaultImplementationsOfInterfaces = nameof(DefaultImplementationsOfInterfaces);
        /// <summary>Numeric IntPtr.</summary>
        public const string NumericIntPtr = nameof(NumericIntPtr);
    }

    /// <summary>Runtime helpers the compiler uses.</summary>
    public static class RuntimeHelpers
    {
        /// <summary>Byte offset of the first character of a string object.</summary>
        public static int OffsetToStringData => 12;
    }

    /// <summary>Unsafe reference operations; the compiler (ILC) supplies the bodies.</summary>
    public static unsafe class Unsafe
    {
        /// <summary>source + elementOffset elements.</summary>
        [Intrinsic]
        public static extern ref T Add<T>(ref T source, int elementOffset);
        /// <summary>source + elementOffset elements.</summary>
        [Intrinsic]
        public static extern ref T Add<T>(ref T source, nint elementOffset);
        /// <summary>Reinterprets a reference.</summary>
        [Intrinsic]
        public static extern ref TTo As<TFrom, TTo>(ref TFrom source);
        /// <summary>Reinterprets an object reference without a type check.</summary>
        [Intrinsic]
        public static extern T As<T>(object o) where T : class;
        /// <summary>The address of a reference.</summary>
        [Intrinsic]
        public static extern void* AsPointer<T>(ref T value);
        /// <summary>A reference from an address.</summary>
        [Intrinsic]
        public static extern ref T AsRef<T>(void* source);
        /// <summary>sizeof(T).</summary>
        [Intrinsic]
        public static extern int SizeOf<T>();
    }

    // Static constructors: the compiler calls into this class to run a type's cctor once before first use.
    internal static class ClassConstructorRunner
    {
        private static IntPtr CheckStaticClassConstructionReturnNonGCStaticBase(ref StaticClassConstructionContext context, IntPtr nonGcStaticBase)
        {
            CheckStaticClassConstruction(ref context);
            return nonGcStaticBase;
        }

        private static object CheckStaticClassConstructionReturnGCStaticBase(ref StaticClassConstructionContext context, object gcStaticBase)
        {
            CheckStaticClassConstruction(ref context);
            return gcStaticBase;
        }

        private static unsafe void CheckStaticClassConstruction(ref StaticClassConstructionContext context)
        {
            // One vCPU, no threads: a flag is enough. Cleared before the call so a cctor cycle does not recurse.
            if (context.cctorMethodAddress != 0)
            {
                nint address = context.cctorMethodAddress;
                context.cctorMethodAddress = 0;
                ((delegate*<void>)address)();
            }
        }
    }

    /// <summary>Per-type static-constructor state (layout is a compiler contract).</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    public struct StaticClassConstructionContext
    {
        /// <summary>The cctor's address, zero once it ran.</summary>
        public nint cctorMethodAddress;
    }
}

namespace System.Runtime.InteropServices
{
    /// <summary>Field layout kinds.</summary>
    public enum LayoutKind
    {
        /// <summary>In declaration order.</summary>
        Sequential = 0,
        /// <summary>At explicit offsets.</summary>
        Explicit = 2,
        /// <summary>Compiler's choice.</summary>
        Auto = 3,
    }

    /// <summary>Character sets.</summary>
    public enum CharSet
    {
        /// <summary>None.</summary>
        None = 1,
        /// <summary>ANSI.</summary>
        Ansi = 2,
        /// <summary>Unicode.</summary>
        Unicode = 3,
        /// <summary>Auto.</summary>
        Auto = 4,
    }

    /// <summary>Type layout.</summary>
    [AttributeUsage(AttributeTargets.Class | AttributeTargets.Struct, Inherited = false)]
    public sealed class StructLayoutAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public StructLayoutAttribute(LayoutKind layoutKind) { }
        /// <summary>Packing.</summary>
        public int Pack;
        /// <summary>Size.</summary>
        public int Size;
        /// <summary>Character set.</summary>
        public CharSet CharSet;
    }

    /// <summary>Explicit field offset.</summary>
    [AttributeUsage(AttributeTargets.Field, Inherited = false)]
    public sealed class FieldOffsetAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public FieldOffsetAttribute(int offset) { }
    }

    /// <summary>in parameter.</summary>
    [AttributeUsage(AttributeTargets.Parameter, Inherited = false)]
    public sealed class InAttribute : Attribute { }

    /// <summary>out parameter.</summary>
    [AttributeUsage(AttributeTargets.Parameter, Inherited = false)]
    public sealed class OutAttribute : Attribute { }
}

namespace System.Reflection
{
    /// <summary>The default member (indexers).</summary>
    [AttributeUsage(AttributeTargets.Class | AttributeTargets.Struct | AttributeTargets.Interface)]
    public sealed class DefaultMemberAttribute : Attribute
    {
        /// <summary>Creates the attribute.</summary>
        public DefaultMemberAttribute(string memberName) { }
    }
}

namespace System.Runtime.InteropServices
{
    /// <summary>Present because the compiler looks it up; guests cannot use it.</summary>
    public unsafe interface IDynamicInterfaceCastable
    {
        internal static nint GetDynamicInterfaceImplementation(IDynamicInterfaceCastable instance, Internal.Runtime.MethodTable* interfaceType, ushort slot)
        {
            Paravirt.Guest.Guest.FailFast("IDynamicInterfaceCastable is not supported in C# guests");
            return 0;
        }
    }
}
