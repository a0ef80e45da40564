namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// A zeroed native buffer with a guaranteed alignment. WHP's <c>WHV_REGISTER_VALUE</c> and
/// <c>WHV_RUN_VP_EXIT_CONTEXT</c> are 16-byte aligned in C (<c>DECLSPEC_ALIGN(16)</c> on <c>WHV_UINT128</c>), C#
/// cannot give a struct that alignment, and a misaligned register array makes WHP fault (Hyperlight issue #908,
/// win32metadata issue #2278): every buffer handed to WHP comes from here, allocated once per vCPU.
/// </summary>
internal sealed unsafe class AlignedBuffer : IDisposable
{
    private void* _pointer;

    /// <summary>Allocates <paramref name="size"/> zeroed bytes aligned to <paramref name="alignment"/> (a power of two).</summary>
    public AlignedBuffer(int size, int alignment = 16)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(alignment), alignment, "alignment must be a power of two");
        }
        // Safe: owned allocation, freed exactly once in Dispose; zeroed before use.
        _pointer = NativeMemory.AlignedAlloc((nuint)size, (nuint)alignment);
        NativeMemory.Clear(_pointer, (nuint)size);
        Size = size;
        Alignment = alignment;
    }

    /// <summary>Size in bytes.</summary>
    public int Size { get; }

    /// <summary>The guaranteed alignment.</summary>
    public int Alignment { get; }

    /// <summary>Start of the buffer.</summary>
    public void* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return _pointer;
        }
    }

    /// <summary>The buffer as <paramref name="count"/> values of <typeparamref name="T"/>; throws when they do not fit.</summary>
    public Span<T> AsSpan<T>(int count) where T : unmanaged
    {
        if ((uint)count > (uint)(Size / sizeof(T)))
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"{count} values of {typeof(T).Name} do not fit in {Size} bytes");
        }
        // Safe: count * sizeof(T) <= Size was checked above.
        return new Span<T>(Pointer, count);
    }

    /// <summary>Frees the buffer.</summary>
    public void Dispose()
    {
        void* p = _pointer;
        if (p != null)
        {
            _pointer = null;
            NativeMemory.AlignedFree(p);
        }
    }
}
