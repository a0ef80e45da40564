using Internal.Runtime;
using System.Runtime.CompilerServices;

namespace System
{
    /// <summary>A bounds-checked view of contiguous memory: an array slice or raw (stack, guest) memory.</summary>
    public readonly ref struct Span<T>
    {
        private readonly ref T _reference;
        private readonly int _length;

        /// <summary>A view of a whole array.</summary>
        public Span(T[] array)
        {
            if (array == null)
            {
                this = default;
                return;
            }
            _reference = ref ArrayData(array);
            _length = array.Length;
        }

        /// <summary>A view of <paramref name="length"/> elements of an array from <paramref name="start"/>.</summary>
        public Span(T[] array, int start, int length)
        {
            if (array == null || (ulong)(uint)start + (uint)length > (uint)array.Length)
                Paravirt.Guest.Guest.FailFast("Span: range outside the array");
            _reference = ref Unsafe.Add(ref ArrayData(array), start);
            _length = length;
        }

        /// <summary>A view of <paramref name="length"/> elements at <paramref name="pointer"/>.</summary>
        public unsafe Span(void* pointer, int length)
        {
            if (length < 0)
                Paravirt.Guest.Guest.FailFast("Span: negative length");
            _reference = ref Unsafe.AsRef<T>(pointer);
            _length = length;
        }

        internal Span(ref T reference, int length)
        {
            _reference = ref reference;
            _length = length;
        }

        /// <summary>The number of elements.</summary>
        public int Length => _length;

        /// <summary>True when empty.</summary>
        public bool IsEmpty => _length == 0;

        /// <summary>The element at <paramref name="index"/> (fails fast when out of range).</summary>
        public ref T this[int index]
        {
            get
            {
                if ((uint)index >= (uint)_length)
                    Paravirt.Guest.Guest.FailFast("IndexOutOfRangeException (Span)");
                return ref Unsafe.Add(ref _reference, index);
            }
        }

        /// <summary>A sub-view.</summary>
        public Span<T> Slice(int start, int length)
        {
            if ((ulong)(uint)start + (uint)length > (uint)_length)
                Paravirt.Guest.Guest.FailFast("Span.Slice: range outside the span");
            return new Span<T>(ref Unsafe.Add(ref _reference, start), length);
        }

        /// <summary>A sub-view to the end.</summary>
        public Span<T> Slice(int start) => Slice(start, _length - start);

        /// <summary>Sets every element to <paramref name="value"/>.</summary>
        public void Fill(T value)
        {
            for (int i = 0; i < _length; i++)
                Unsafe.Add(ref _reference, i) = value;
        }

        /// <summary>Sets every element to default.</summary>
        public void Clear() => Fill(default);

        /// <summary>A reference to the first element (for <c>fixed</c>).</summary>
        public ref T GetPinnableReference() => ref _reference;

        /// <summary>A read-only view.</summary>
        public static implicit operator ReadOnlySpan<T>(Span<T> span) => new ReadOnlySpan<T>(span);

        /// <summary>A view of a whole array.</summary>
        public static implicit operator Span<T>(T[] array) => new Span<T>(array);

        internal static unsafe ref T ArrayData(T[] array)
        {
            // Elements start 16 bytes into an array object: MethodTable*, length, padding.
            byte* obj = Internal.Runtime.CompilerHelpers.StartupCodeHelpers.AddressOf(array);
            return ref Unsafe.AsRef<T>(obj + 16);
        }
    }

    /// <summary>A read-only bounds-checked view of contiguous memory: a <see cref="Span{T}"/> that hands out read-only references.</summary>
    public readonly ref struct ReadOnlySpan<T>
    {
        private readonly Span<T> _span;

        /// <summary>A view of a whole array.</summary>
        public ReadOnlySpan(T[] array) => _span = new Span<T>(array);

        /// <summary>A view of <paramref name="length"/> elements at <paramref name="pointer"/>.</summary>
        public unsafe ReadOnlySpan(void* pointer, int length) => _span = new Span<T>(pointer, length);

        internal ReadOnlySpan(Span<T> span) => _span = span;

        /// <summary>The number of elements.</summary>
        public int Length => _span.Length;

        /// <summary>True when empty.</summary>
        public bool IsEmpty => _span.IsEmpty;

        /// <summary>The element at <paramref name="index"/> (fails fast when out of range).</summary>
        public ref readonly T this[int index] => ref _span[index];

        /// <summary>A sub-view.</summary>
        public ReadOnlySpan<T> Slice(int start, int length) => new ReadOnlySpan<T>(_span.Slice(start, length));

        /// <summary>A reference to the first element (for <c>fixed</c>).</summary>
        public ref readonly T GetPinnableReference() => ref _span.GetPinnableReference();

        /// <summary>A view of a whole array.</summary>
        public static implicit operator ReadOnlySpan<T>(T[] array) => new ReadOnlySpan<T>(array);
    }
}
