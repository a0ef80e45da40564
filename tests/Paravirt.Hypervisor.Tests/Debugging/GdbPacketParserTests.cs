using Paravirt.Hypervisor.Debugging.Gdb;

namespace Paravirt.Hypervisor.Tests.Debugging;

/// <summary>The RSP framing parser: every frame kind, split input, and a seeded random-packet campaign.</summary>
public sealed class GdbPacketParserTests
{
    private static (GdbFrame Frame, int Used) Parse(string input, int max = GdbPacketParser.DefaultMaxPayload)
    {
        int used = GdbPacketParser.Parse(Encoding.Latin1.GetBytes(input), max, out GdbFrame frame);
        return (frame, used);
    }

    [Theory]
    [InlineData("+", "Ack", 1)]
    [InlineData("-", "Nak", 1)]
    [InlineData("\x03$g#67", "Interrupt", 1)]
    [InlineData("$g#67", "Packet", 5)]
    [InlineData("$g#67+", "Packet", 5)]
    [InlineData("$g#00", "BadChecksum", 5)]
    [InlineData("$g#zz", "BadChecksum", 5)]
    [InlineData("$g#6", "NeedMore", 0)]
    [InlineData("$g", "NeedMore", 0)]
    [InlineData("", "NeedMore", 0)]
    [InlineData("xyz$g#67", "Garbage", 3)]
    [InlineData("#67", "Garbage", 3)]
    public void Frames_are_recognized(string input, string kind, int used)
    {
        (GdbFrame frame, int n) = Parse(input);
        Assert.Equal(kind, frame.Kind.ToString());
        Assert.Equal(used, n);
    }

    [Fact]
    public void A_packet_payload_is_returned_without_the_framing_and_checksums_are_case_insensitive()
    {
        (GdbFrame frame, _) = Parse("$qSupported:swbreak+#8B");
        Assert.Equal(GdbFrameKind.Packet, frame.Kind);
        Assert.Equal("qSupported:swbreak+", Encoding.ASCII.GetString(frame.Payload!));
        Assert.Equal(0x8B, GdbPacketParser.Checksum("qSupported:swbreak+"u8));
    }

    [Fact]
    public void Packets_longer_than_the_limit_are_skipped_whole()
    {
        (GdbFrame frame, int used) = Parse("$" + new string('a', 100) + "#00$g#67", max: 10);
        Assert.Equal(GdbFrameKind.TooLong, frame.Kind);
        Assert.Equal(104, used);
        (frame, used) = Parse("$" + new string('a', 100), max: 10); // no end yet, already past the limit
        Assert.Equal(GdbFrameKind.TooLong, frame.Kind);
        Assert.Equal(101, used);
    }

    [Fact]
    public void Framing_escapes_the_special_bytes_and_unescaping_restores_them()
    {
        byte[] payload = [(byte)'l', (byte)'#', (byte)'$', (byte)'}', (byte)'*', 0, 0xFF];
        byte[] framed = GdbPacketParser.Frame(payload);
        Assert.Equal("$l}\x03}\x04}]}\x0a\0\xFF#", Encoding.Latin1.GetString(framed[..^2]));
        int used = GdbPacketParser.Parse(framed, 100, out GdbFrame frame);
        Assert.Equal(framed.Length, used);
        Assert.Equal(GdbFrameKind.Packet, frame.Kind);
        Assert.True(GdbPacketParser.TryUnescape(frame.Payload!, out byte[] back));
        Assert.Equal(payload, back);
        Assert.False(GdbPacketParser.TryUnescape("ab}"u8, out _));
    }

    /// <summary>
    /// Random byte streams made of packet pieces (valid and broken frames, escapes, interrupts, noise) fed in random
    /// splits: the parser never throws, never claims more bytes than it got, always makes progress on non-empty
    /// input once the input is complete, and reassembles every valid packet exactly.
    /// </summary>
    [Fact]
    public void Seeded_random_packet_streams_never_break_the_parser()
    {
        var random = new Random(20261126);
        for (int round = 0; round < 2000; round++)
        {
            var stream = new List<byte>();
            var expected = new List<string>();
            int pieces = random.Next(1, 12);
            for (int i = 0; i < pieces; i++)
            {
                switch (random.Next(7))
                {
                    case 0:
                    {
                        string payload = RandomPayload(random);
                        expected.Add(payload);
                        stream.AddRange(GdbPacketParser.Frame(Encoding.Latin1.GetBytes(payload)));
                        break;
                    }
                    case 1: stream.Add(0x03); break;
                    case 2: stream.Add((byte)(random.Next(2) == 0 ? '+' : '-')); break;
                    case 3:
                    {
                        byte[] bad = GdbPacketParser.Frame(Encoding.Latin1.GetBytes(RandomPayload(random)));
                        bad[^1] ^= 0x01; // a broken checksum digit
                        stream.AddRange(bad);
                        break;
                    }
                    case 4:
                        // Line noise (no '$' or '#', which would swallow the next packet, as on a real serial line).
                        for (int n = random.Next(1, 40); n > 0; n--)
                        {
                            byte b = (byte)random.Next(256);
                            stream.Add(b is (byte)'$' or (byte)'#' ? (byte)'.' : b);
                        }
                        break;
                    case 5: stream.AddRange("$#00"u8.ToArray()); break;
                    default: stream.AddRange(Encoding.Latin1.GetBytes("$" + new string('z', random.Next(0, 300)) + "#qq")); break; // long, or non-hex checksum
                }
            }
            byte[] bytes = [.. stream];
            var seen = new List<string>();
            int offset = 0, guard = 0;
            int available = 0;
            while (offset < bytes.Length && guard++ < 100_000)
            {
                available = Math.Min(bytes.Length, Math.Max(available, offset) + random.Next(0, 64)); // bytes arrive in random chunks
                int used = GdbPacketParser.Parse(bytes.AsSpan(offset, available - offset), 256, out GdbFrame frame);
                Assert.InRange(used, 0, available - offset);
                if (used == 0)
                {
                    Assert.Equal(GdbFrameKind.NeedMore, frame.Kind);
                    if (available == bytes.Length)
                    {
                        break; // an incomplete tail: the connection would wait for more
                    }
                    continue;
                }
                if (frame.Kind == GdbFrameKind.Packet && GdbPacketParser.TryUnescape(frame.Payload!, out byte[] p))
                {
                    seen.Add(Encoding.Latin1.GetString(p));
                }
                offset += used;
            }
            Assert.True(guard < 100_000, "the parser stopped making progress");
            // Every intact packet comes out, in order (noise never hides one).
            int at = 0;
            foreach (string e in expected)
            {
                int found = seen.IndexOf(e, at);
                Assert.True(found >= 0, $"round {round}: packet '{e}' was lost");
                at = found + 1;
            }
        }
    }

    private static string RandomPayload(Random random)
    {
        const string alphabet = "0123456789abcdefgmMpPqQvXZz,:;=#$}*+-\x03 ";
        var sb = new StringBuilder();
        for (int n = random.Next(0, 60); n > 0; n--)
        {
            sb.Append(alphabet[random.Next(alphabet.Length)]);
        }
        return sb.ToString();
    }
}
