// Layout contract with the NativeAOT compiler: a string is { MethodTable*, int length, char data[], '\0' }.
using Internal.Runtime;
using System.Runtime;
using System.Runtime.CompilerServices;

namespace System
{
    /// <summary>An immutable UTF-16 string. Literals are built into the image; new strings come from the bump heap.</summary>
    public sealed class String
    {
        // Layout contract with the compiler: length, then the characters, then a '\0' the allocation size covers.
        private readonly int _stringLength;
        private char _firstChar;

        /// <summary>The empty string.</summary>
        public static string Empty => "";

        /// <summary>The number of UTF-16 code units.</summary>
        public int Length => _stringLength;

        /// <summary>The code unit at <paramref name="index"/> (fails fast when out of range).</summary>
        [IndexerName("Chars")]
        public char this[int index]
        {
            [Intrinsic]
            get
            {
                if ((uint)index >= (uint)_stringLength)
                    Paravirt.Guest.Guest.FailFast("string index out of range");
                return Unsafe.Add(ref _firstChar, index);
            }
        }

        /// <summary>A string from <paramref name="length"/> bytes of ASCII/Latin-1 text at <paramref name="value"/> + <paramref name="startIndex"/>.</summary>
        [MethodImpl(MethodImplOptions.InternalCall)]
        public extern unsafe String(sbyte* value, int startIndex, int length);

        // The compiler turns `new string(sbyte*, int, int)` into a call of this method (NativeAOT's string constructors).
        private static unsafe string Ctor(sbyte* value, int startIndex, int length)
        {
            if (length < 0 || startIndex < 0)
                Paravirt.Guest.Guest.FailFast("string: negative length or index");
            string result = FastAllocate(length);
            for (int i = 0; i < length; i++)
                Unsafe.Add(ref result._firstChar, i) = (char)(byte)value[startIndex + i];
            return result;
        }

        /// <summary>A string from a NUL-terminated ASCII/Latin-1 string.</summary>
        [MethodImpl(MethodImplOptions.InternalCall)]
        public extern unsafe String(sbyte* value);

        private static unsafe string Ctor(sbyte* value)
        {
            int length = 0;
            while (value[length] != 0)
                length++;
            return Ctor(value, 0, length);
        }

        /// <summary>A new string of <paramref name="length"/> NUL characters, to fill through <see cref="GetPinnableReference"/>.</summary>
        internal static unsafe string FastAllocate(int length)
        {
            return Unsafe.As<string>(Internal.Runtime.CompilerHelpers.StartupCodeHelpers.AllocArray(MethodTableOf(""), length));
        }

        internal static unsafe MethodTable* MethodTableOf(object o) => o.m_pMethodTable;

        /// <summary>A reference to the first character (for <c>fixed</c>).</summary>
        public ref readonly char GetPinnableReference() => ref _firstChar;

        /// <summary>Concatenates two strings into a new one.</summary>
        public static unsafe string Concat(string a, string b)
        {
            a ??= "";
            b ??= "";
            string result = FastAllocate(a._stringLength + b._stringLength);
            ref char dst = ref result._firstChar;
            for (int i = 0; i < a._stringLength; i++)
                Unsafe.Add(ref dst, i) = Unsafe.Add(ref a._firstChar, i);
            for (int i = 0; i < b._stringLength; i++)
                Unsafe.Add(ref dst, a._stringLength + i) = Unsafe.Add(ref b._firstChar, i);
            return result;
        }

        /// <summary>Concatenates three strings into a new one.</summary>
        public static string Concat(string a, string b, string c) => Concat(Concat(a, b), c);

        /// <summary>Concatenates four strings into a new one.</summary>
        public static string Concat(string a, string b, string c, string d) => Concat(Concat(a, b), Concat(c, d));

        /// <summary>Ordinal equality.</summary>
        public static bool Equals(string a, string b)
        {
            if ((object)a == b) return true;
            if (a is null || b is null || a._stringLength != b._stringLength) return false;
            for (int i = 0; i < a._stringLength; i++)
                if (Unsafe.Add(ref a._firstChar, i) != Unsafe.Add(ref b._firstChar, i)) return false;
            return true;
        }

        /// <summary>Ordinal equality.</summary>
        public static bool operator ==(string a, string b) => Equals(a, b);
        /// <summary>Ordinal inequality.</summary>
        public static bool operator !=(string a, string b) => !Equals(a, b);

        /// <summary>Ordinal equality with another object.</summary>
        public override bool Equals(object obj) => Equals(this, obj as string);

        /// <summary>An ordinal hash (FNV-1a over the code units).</summary>
        public override int GetHashCode()
        {
            uint h = 2166136261;
            for (int i = 0; i < _stringLength; i++)
                h = (h ^ Unsafe.Add(ref _firstChar, i)) * 16777619;
            return (int)h;
        }

        /// <summary>This string.</summary>
        public override string ToString() => this;
    }
}
