namespace Paravirt.Hypervisor.Debugging.Gdb;

/// <summary>What one unit of GDB Remote Serial Protocol input is.</summary>
internal enum GdbFrameKind
{
    /// <summary>Not enough bytes yet for a whole unit.</summary>
    NeedMore,
    /// <summary><c>+</c>: the last packet arrived.</summary>
    Ack,
    /// <summary><c>-</c>: the last packet arrived damaged; send it again.</summary>
    Nak,
    /// <summary>A raw 0x03 byte: the user pressed Ctrl-C.</summary>
    Interrupt,
    /// <summary><c>$payload#xx</c> with a correct checksum.</summary>
    Packet,
    /// <summary><c>$payload#xx</c> with a wrong checksum or non-hex checksum digits: answer <c>-</c>.</summary>
    BadChecksum,
    /// <summary>A packet longer than the limit: it was skipped whole; answer with an error.</summary>
    TooLong,
    /// <summary>Bytes outside any packet (line noise): skipped.</summary>
    Garbage,
}

/// <summary>One unit of input: its kind and, for <see cref="GdbFrameKind.Packet"/>, the payload (escapes not yet undone).</summary>
internal readonly record struct GdbFrame(GdbFrameKind Kind, byte[]? Payload = null);

/// <summary>
/// The framing layer of the GDB Remote Serial Protocol as a pure function: bytes in, one frame and the number of
/// bytes it used out. No state, no I/O, no allocation beyond the payload, and no exception for any input (the gdb
/// client is untrusted: a fuzz target). A packet is <c>$</c>, the payload, <c>#</c> and two hex digits, the payload's
/// byte sum modulo 256.
/// </summary>
internal static class GdbPacketParser
{
    /// <summary>The largest payload accepted (the stub announces a smaller <c>PacketSize</c>).</summary>
    internal const int DefaultMaxPayload = 0x10000;

    /// <summary>Parses the first frame of <paramref name="input"/>; returns the bytes it spans (0 with <see cref="GdbFrameKind.NeedMore"/>).</summary>
    internal static int Parse(ReadOnlySpan<byte> input, int maxPayload, out GdbFrame frame)
    {
        if (input.IsEmpty)
        {
            frame = new GdbFrame(GdbFrameKind.NeedMore);
            return 0;
        }
        switch (input[0])
        {
            case (byte)'+':
                frame = new GdbFrame(GdbFrameKind.Ack);
                return 1;
            case (byte)'-':
                frame = new GdbFrame(GdbFrameKind.Nak);
                return 1;
            case 0x03:
                frame = new GdbFrame(GdbFrameKind.Interrupt);
                return 1;
            case (byte)'$':
                break;
            default:
                // Skip to the next byte that can start a frame.
                int next = input.IndexOfAny("$+-\x03"u8);
                frame = new GdbFrame(GdbFrameKind.Garbage);
                return next < 0 ? input.Length : next;
        }
        int hash = input[1..].IndexOf((byte)'#');
        if (hash < 0)
        {
            if (input.Length - 1 > maxPayload)
            {
                // No end in sight past the limit: drop what is here; the tail is skipped as garbage later.
                frame = new GdbFrame(GdbFrameKind.TooLong);
                return input.Length;
            }
            frame = new GdbFrame(GdbFrameKind.NeedMore);
            return 0;
        }
        hash++; // index in input
        if (input.Length < hash + 3)
        {
            frame = new GdbFrame(GdbFrameKind.NeedMore);
            return 0;
        }
        ReadOnlySpan<byte> payload = input[1..hash];
        int consumed = hash + 3;
        if (payload.Length > maxPayload)
        {
            frame = new GdbFrame(GdbFrameKind.TooLong);
            return consumed;
        }
        int high = HexValue(input[hash + 1]), low = HexValue(input[hash + 2]);
        byte sum = Checksum(payload);
        if (high < 0 || low < 0 || sum != (byte)((high << 4) | low))
        {
            frame = new GdbFrame(GdbFrameKind.BadChecksum);
            return consumed;
        }
        frame = new GdbFrame(GdbFrameKind.Packet, payload.ToArray());
        return consumed;
    }

    /// <summary>The payload's byte sum modulo 256.</summary>
    internal static byte Checksum(ReadOnlySpan<byte> payload)
    {
        int sum = 0;
        foreach (byte b in payload)
        {
            sum += b;
        }
        return (byte)sum;
    }

    /// <summary><c>$payload#xx</c>, with <c>#</c>, <c>$</c>, <c>}</c> and <c>*</c> in the payload escaped (<c>}</c> then the byte xor 0x20).</summary>
    internal static byte[] Frame(ReadOnlySpan<byte> payload)
    {
        var output = new List<byte>(payload.Length + 4) { (byte)'$' };
        foreach (byte b in payload)
        {
            if (b is (byte)'#' or (byte)'$' or (byte)'}' or (byte)'*')
            {
                output.Add((byte)'}');
                output.Add((byte)(b ^ 0x20));
            }
            else
            {
                output.Add(b);
            }
        }
        byte sum = Checksum(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(output)[1..]);
        output.Add((byte)'#');
        output.Add((byte)"0123456789abcdef"[sum >> 4]);
        output.Add((byte)"0123456789abcdef"[sum & 0xF]);
        return [.. output];
    }

    /// <summary>Undoes <c>}</c> escapes (binary data of <c>X</c> packets); false for a <c>}</c> at the very end.</summary>
    internal static bool TryUnescape(ReadOnlySpan<byte> data, out byte[] result)
    {
        var output = new List<byte>(data.Length);
        for (int i = 0; i < data.Length; i++)
        {
            if (data[i] == (byte)'}')
            {
                if (++i >= data.Length)
                {
                    result = [];
                    return false;
                }
                output.Add((byte)(data[i] ^ 0x20));
            }
            else
            {
                output.Add(data[i]);
            }
        }
        result = [.. output];
        return true;
    }

    /// <summary>The value of a hex digit, or -1.</summary>
    internal static int HexValue(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => -1,
    };
}
