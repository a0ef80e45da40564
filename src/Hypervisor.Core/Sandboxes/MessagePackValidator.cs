using System.Text;
using System.Text.Unicode;

namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>Why a MessagePack payload was refused. Append-only.</summary>
public enum MessagePackError
{
    /// <summary>The payload is valid.</summary>
    None,
    /// <summary>A value is cut off: the payload ends inside a header, a string, binary, extension or collection.</summary>
    Truncated,
    /// <summary>The payload is larger than <see cref="MessagePackLimits.MaxBytes"/>.</summary>
    TooLarge,
    /// <summary>Arrays and maps are nested deeper than <see cref="MessagePackLimits.MaxDepth"/>.</summary>
    TooDeep,
    /// <summary>The byte 0xc1, which the specification never uses.</summary>
    InvalidFormat,
    /// <summary>Bytes follow the value.</summary>
    TrailingBytes,
    /// <summary>A string is not valid UTF-8.</summary>
    InvalidUtf8,
    /// <summary>A timestamp extension (type -1) whose length is not 4, 8 or 12.</summary>
    InvalidTimestamp,
    /// <summary>The value is well formed but not what the protocol expects here (e.g. a call that is not <c>[name, args]</c>).</summary>
    UnexpectedType,
}

/// <summary>Limits the host enforces on every MessagePack payload before anything decodes it.</summary>
/// <param name="MaxBytes">Largest payload in bytes.</param>
/// <param name="MaxDepth">Deepest nesting of arrays and maps (a scalar is depth 0, <c>[1]</c> depth 1).</param>
public readonly record struct MessagePackLimits(int MaxBytes, int MaxDepth)
{
    /// <summary>1 MiB, depth 32: ample for call arguments, small enough that a hostile guest cannot make the host work hard.</summary>
    public static MessagePackLimits Default => new(1 << 20, 32);
}

/// <summary>The verdict of <see cref="MessagePackValidator"/>.</summary>
/// <param name="Error">What is wrong, or <see cref="MessagePackError.None"/>.</param>
/// <param name="Offset">Byte offset at which the problem was found.</param>
/// <param name="Message">One line saying what is wrong (null when valid).</param>
public readonly record struct MessagePackCheck(MessagePackError Error, int Offset, string? Message)
{
    /// <summary>True when the payload is valid.</summary>
    public bool IsValid => Error == MessagePackError.None;

    /// <summary>A valid verdict.</summary>
    public static MessagePackCheck Valid => default;

    internal static MessagePackCheck Fail(MessagePackError error, int offset, string message) => new(error, offset, $"{message} (at byte {offset})");
}

/// <summary>
/// Validates untrusted MessagePack (msgpack.org specification) before anything decodes it: every length is checked
/// against the bytes that remain, every array or map count against the smallest bytes its elements need (so the work
/// is bounded by the payload size), nesting against a depth limit, strings for UTF-8, timestamps for their length.
/// A pure function from bytes to a verdict: it allocates nothing on success, never throws for any input, and never
/// recurses deeper than the depth limit — the entry point for a fuzz harness.
/// </summary>
public static class MessagePackValidator
{
    /// <summary>Deepest nesting any caller may ask for (bounds the recursion).</summary>
    public const int DepthCeiling = 256;

    /// <summary>Checks that <paramref name="payload"/> is exactly one well-formed MessagePack value within <paramref name="limits"/>.</summary>
    public static MessagePackCheck Validate(ReadOnlySpan<byte> payload, MessagePackLimits limits)
    {
        if (payload.Length > limits.MaxBytes)
        {
            return MessagePackCheck.Fail(MessagePackError.TooLarge, 0, $"the payload is {payload.Length} bytes, more than the {limits.MaxBytes}-byte limit");
        }
        if (payload.IsEmpty)
        {
            return MessagePackCheck.Fail(MessagePackError.Truncated, 0, "the payload is empty");
        }
        int maxDepth = Math.Clamp(limits.MaxDepth, 0, DepthCeiling);
        int pos = 0;
        MessagePackCheck check = Value(payload, ref pos, 0, maxDepth);
        if (!check.IsValid)
        {
            return check;
        }
        return pos == payload.Length
            ? MessagePackCheck.Valid
            : MessagePackCheck.Fail(MessagePackError.TrailingBytes, pos, $"{payload.Length - pos} bytes follow the value");
    }

    /// <summary>
    /// Checks a call envelope <c>[name: str, args: array]</c> (what the host sends a guest function and a guest sends
    /// a host function): valid MessagePack, then the shape. On success returns the name, and the offset and count of
    /// the arguments array.
    /// </summary>
    public static MessagePackCheck ValidateCall(ReadOnlySpan<byte> payload, MessagePackLimits limits, out string name, out int argumentsOffset, out int argumentCount)
    {
        name = "";
        argumentsOffset = 0;
        argumentCount = 0;
        MessagePackCheck check = Validate(payload, limits);
        if (!check.IsValid)
        {
            return check;
        }
        int pos = 0;
        if (!TryCollectionHeader(payload, ref pos, map: false, out long count) || count != 2)
        {
            return MessagePackCheck.Fail(MessagePackError.UnexpectedType, 0, "a call is [name, args]: a two-element array");
        }
        int nameAt = pos;
        if (!TryString(payload, ref pos, out ReadOnlySpan<byte> nameBytes))
        {
            return MessagePackCheck.Fail(MessagePackError.UnexpectedType, nameAt, "the call's first element must be the function name (a string)");
        }
        if (nameBytes.Length == 0 || nameBytes.Length > Abi.SandboxConstants.NameMax)
        {
            return MessagePackCheck.Fail(MessagePackError.UnexpectedType, nameAt, $"a function name has 1 to {Abi.SandboxConstants.NameMax} bytes (got {nameBytes.Length})");
        }
        argumentsOffset = pos;
        if (!TryCollectionHeader(payload, ref pos, map: false, out count))
        {
            return MessagePackCheck.Fail(MessagePackError.UnexpectedType, argumentsOffset, "the call's second element must be the arguments (an array)");
        }
        name = Encoding.UTF8.GetString(nameBytes);
        argumentCount = (int)count; // at most payload.Length: checked by Validate
        return MessagePackCheck.Valid;
    }

    private static MessagePackCheck Value(ReadOnlySpan<byte> p, ref int pos, int depth, int maxDepth)
    {
        int at = pos;
        if (pos >= p.Length)
        {
            return Truncated(at, "a value");
        }
        byte b = p[pos++];
        switch (b)
        {
            case <= 0x7f: // positive fixint
            case >= 0xe0: // negative fixint
            case 0xc0 or 0xc2 or 0xc3: // nil, false, true
                return MessagePackCheck.Valid;
            case >= 0x80 and <= 0x8f:
                return Collection(p, ref pos, at, b & 0x0f, map: true, depth, maxDepth);
            case >= 0x90 and <= 0x9f:
                return Collection(p, ref pos, at, b & 0x0f, map: false, depth, maxDepth);
            case >= 0xa0 and <= 0xbf:
                return Str(p, ref pos, at, b & 0x1f);
            case 0xc1:
                return MessagePackCheck.Fail(MessagePackError.InvalidFormat, at, "0xc1 is never used in MessagePack");
            case 0xc4 or 0xc5 or 0xc6: // bin 8/16/32
                return Skip(p, ref pos, at, b, "binary");
            case 0xc7 or 0xc8 or 0xc9: // ext 8/16/32
            {
                int width = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
                if (!TryLength(p, ref pos, width, out long length) || pos >= p.Length)
                {
                    return Truncated(at, "an extension header");
                }
                sbyte type = (sbyte)p[pos++];
                return Ext(p, ref pos, at, type, length);
            }
            case 0xca: return Fixed(p, ref pos, at, 4);
            case 0xcb: return Fixed(p, ref pos, at, 8);
            case 0xcc or 0xd0: return Fixed(p, ref pos, at, 1);
            case 0xcd or 0xd1: return Fixed(p, ref pos, at, 2);
            case 0xce or 0xd2: return Fixed(p, ref pos, at, 4);
            case 0xcf or 0xd3: return Fixed(p, ref pos, at, 8);
            case >= 0xd4 and <= 0xd8: // fixext 1, 2, 4, 8, 16
            {
                if (pos >= p.Length)
                {
                    return Truncated(at, "an extension header");
                }
                sbyte type = (sbyte)p[pos++];
                return Ext(p, ref pos, at, type, 1L << (b - 0xd4));
            }
            case 0xd9 or 0xda or 0xdb: // str 8/16/32
            {
                int width = b == 0xd9 ? 1 : b == 0xda ? 2 : 4;
                if (!TryLength(p, ref pos, width, out long length))
                {
                    return Truncated(at, "a string header");
                }
                return Str(p, ref pos, at, length);
            }
            case 0xdc or 0xdd: // array 16/32
            case 0xde or 0xdf: // map 16/32
            {
                int width = (b & 1) == 0 ? 2 : 4;
                if (!TryLength(p, ref pos, width, out long count))
                {
                    return Truncated(at, "a collection header");
                }
                return Collection(p, ref pos, at, count, map: b >= 0xde, depth, maxDepth);
            }
        }
    }

    private static MessagePackCheck Collection(ReadOnlySpan<byte> p, ref int pos, int at, long count, bool map, int depth, int maxDepth)
    {
        if (depth + 1 > maxDepth)
        {
            return MessagePackCheck.Fail(MessagePackError.TooDeep, at, $"arrays and maps nest deeper than the limit of {maxDepth}");
        }
        long elements = map ? count * 2 : count;
        if (elements > p.Length - pos)
        {
            // Every element takes at least one byte: a count beyond the remaining bytes is a lie, refused before any work.
            return Truncated(at, $"{(map ? "a map" : "an array")} of {count} entries");
        }
        for (long i = 0; i < elements; i++)
        {
            MessagePackCheck c = Value(p, ref pos, depth + 1, maxDepth);
            if (!c.IsValid)
            {
                return c;
            }
        }
        return MessagePackCheck.Valid;
    }

    private static MessagePackCheck Str(ReadOnlySpan<byte> p, ref int pos, int at, long length)
    {
        if (length > p.Length - pos)
        {
            return Truncated(at, $"a string of {length} bytes");
        }
        if (!Utf8.IsValid(p.Slice(pos, (int)length)))
        {
            return MessagePackCheck.Fail(MessagePackError.InvalidUtf8, at, "a string is not valid UTF-8");
        }
        pos += (int)length;
        return MessagePackCheck.Valid;
    }

    private static MessagePackCheck Skip(ReadOnlySpan<byte> p, ref int pos, int at, byte b, string what)
    {
        int width = b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4;
        if (!TryLength(p, ref pos, width, out long length) || length > p.Length - pos)
        {
            return Truncated(at, what);
        }
        pos += (int)length;
        return MessagePackCheck.Valid;
    }

    private static MessagePackCheck Ext(ReadOnlySpan<byte> p, ref int pos, int at, sbyte type, long length)
    {
        if (length > p.Length - pos)
        {
            return Truncated(at, $"an extension of {length} bytes");
        }
        if (type == -1 && length is not (4 or 8 or 12))
        {
            return MessagePackCheck.Fail(MessagePackError.InvalidTimestamp, at, $"a timestamp (extension -1) has 4, 8 or 12 bytes, not {length}");
        }
        pos += (int)length;
        return MessagePackCheck.Valid;
    }

    private static MessagePackCheck Fixed(ReadOnlySpan<byte> p, ref int pos, int at, int size)
    {
        if (size > p.Length - pos)
        {
            return Truncated(at, "a number");
        }
        pos += size;
        return MessagePackCheck.Valid;
    }

    private static bool TryLength(ReadOnlySpan<byte> p, ref int pos, int width, out long length)
    {
        if (width > p.Length - pos)
        {
            length = 0;
            return false;
        }
        ReadOnlySpan<byte> s = p.Slice(pos, width);
        length = width switch
        {
            1 => s[0],
            2 => BinaryPrimitives.ReadUInt16BigEndian(s),
            _ => BinaryPrimitives.ReadUInt32BigEndian(s),
        };
        pos += width;
        return true;
    }

    /// <summary>Reads an array or map header of an already validated payload.</summary>
    internal static bool TryCollectionHeader(ReadOnlySpan<byte> p, ref int pos, bool map, out long count)
    {
        count = 0;
        if (pos >= p.Length)
        {
            return false;
        }
        byte b = p[pos];
        if (!map && b is >= 0x90 and <= 0x9f || map && b is >= 0x80 and <= 0x8f)
        {
            count = b & 0x0f;
            pos++;
            return true;
        }
        int width = (map, b) switch
        {
            (false, 0xdc) or (true, 0xde) => 2,
            (false, 0xdd) or (true, 0xdf) => 4,
            _ => 0,
        };
        if (width == 0)
        {
            return false;
        }
        int q = pos + 1;
        if (!TryLength(p, ref q, width, out count))
        {
            return false;
        }
        pos = q;
        return true;
    }

    /// <summary>Reads a string of an already validated payload.</summary>
    internal static bool TryString(ReadOnlySpan<byte> p, ref int pos, out ReadOnlySpan<byte> value)
    {
        value = default;
        if (pos >= p.Length)
        {
            return false;
        }
        byte b = p[pos];
        int q = pos + 1;
        long length;
        if (b is >= 0xa0 and <= 0xbf)
        {
            length = b & 0x1f;
        }
        else if (b is 0xd9 or 0xda or 0xdb)
        {
            if (!TryLength(p, ref q, b == 0xd9 ? 1 : b == 0xda ? 2 : 4, out length))
            {
                return false;
            }
        }
        else
        {
            return false;
        }
        if (length > p.Length - q)
        {
            return false;
        }
        value = p.Slice(q, (int)length);
        pos = q + (int)length;
        return true;
    }

    private static MessagePackCheck Truncated(int at, string what) =>
        MessagePackCheck.Fail(MessagePackError.Truncated, at, $"{what} is cut off by the end of the payload");
}
