using System.Text;

namespace Paravirt.Hypervisor.Debugging.Symbols;

/// <summary>
/// Malformed debug information in a guest image. Thrown only inside the symbol readers and always caught at their
/// entry points (the section or entry is skipped): the image is hostile input and never crashes the host.
/// </summary>
internal sealed class DebugInfoFormatException : Exception
{
    public DebugInfoFormatException(string message) : base(message) { }
    public DebugInfoFormatException() { }
    public DebugInfoFormatException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// A bounds-checked little-endian cursor over a window [start, end) of an image file: every read checks that it
/// stays inside the window, with overflow-safe arithmetic; a read past the end throws
/// <see cref="DebugInfoFormatException"/>.
/// </summary>
internal struct ByteReader
{
    private readonly byte[] _data;
    private readonly int _end;

    public ByteReader(byte[] data, int start, int end)
    {
        if ((uint)start > (uint)data.Length || (uint)end > (uint)data.Length || start > end)
        {
            throw new DebugInfoFormatException($"range [{start}, {end}) outside {data.Length} bytes");
        }
        _data = data;
        Position = start;
        _end = end;
    }

    /// <summary>Current offset in the file.</summary>
    public int Position { get; private set; }

    /// <summary>End of the window.</summary>
    public readonly int End => _end;

    public readonly bool AtEnd => Position >= _end;

    public readonly int Remaining => _end - Position;

    /// <summary>A reader over the next <paramref name="length"/> bytes; this one moves past them.</summary>
    public ByteReader Slice(ulong length)
    {
        Need(length);
        var sub = new ByteReader(_data, Position, Position + (int)length);
        Position += (int)length;
        return sub;
    }

    public void Seek(int position)
    {
        if (position < 0 || position > _end)
        {
            throw new DebugInfoFormatException($"seek to {position} outside the window");
        }
        Position = position;
    }

    public void Skip(ulong count)
    {
        Need(count);
        Position += (int)count;
    }

    public byte U8()
    {
        Need(1);
        return _data[Position++];
    }

    public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    /// <summary>The next <paramref name="count"/> bytes; the reader moves past them.</summary>
    private ReadOnlySpan<byte> Take(int count)
    {
        Need((ulong)count);
        var bytes = _data.AsSpan(Position, count);
        Position += count;
        return bytes;
    }

    /// <summary>An unsigned LEB128 (at most 10 bytes; bits past 64 are dropped).</summary>
    public ulong Uleb()
    {
        ulong result = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            byte b = U8();
            if (shift < 64)
            {
                result |= (ulong)(b & 0x7F) << shift;
            }
            if ((b & 0x80) == 0)
            {
                return result;
            }
        }
        throw new DebugInfoFormatException("LEB128 longer than 10 bytes");
    }

    /// <summary>A signed LEB128.</summary>
    public long Sleb()
    {
        long result = 0;
        int shift = 0;
        byte b;
        do
        {
            if (shift >= 70)
            {
                throw new DebugInfoFormatException("LEB128 longer than 10 bytes");
            }
            b = U8();
            if (shift < 64)
            {
                result |= (long)(b & 0x7F) << shift;
            }
            shift += 7;
        }
        while ((b & 0x80) != 0);
        if (shift < 64 && (b & 0x40) != 0)
        {
            result |= -1L << shift;
        }
        return result;
    }

    /// <summary>A NUL-terminated string inside the window (at most <paramref name="max"/> bytes are kept).</summary>
    public string CString(int max = 4096)
    {
        int start = Position;
        int nul = Array.IndexOf(_data, (byte)0, start, _end - start);
        if (nul < 0)
        {
            throw new DebugInfoFormatException("unterminated string");
        }
        Position = nul + 1;
        return Encoding.UTF8.GetString(_data, start, Math.Min(nul - start, max));
    }

    /// <summary>The string at <paramref name="offset"/> of a string section [start, end).</summary>
    public static string StringAt(byte[] data, int sectionStart, int sectionEnd, ulong offset, int max = 4096)
    {
        if (offset >= (ulong)(sectionEnd - sectionStart))
        {
            throw new DebugInfoFormatException($"string offset {offset} outside its section");
        }
        var r = new ByteReader(data, sectionStart + (int)offset, sectionEnd);
        return r.CString(max);
    }

    private readonly void Need(ulong count)
    {
        if (count > (ulong)(_end - Position))
        {
            throw new DebugInfoFormatException($"read of {count} bytes at {Position} past the end ({_end})");
        }
    }
}
