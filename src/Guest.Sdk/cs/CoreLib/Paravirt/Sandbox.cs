// Sandboxes for C# guests: serve typed calls from the host (guest functions) and call the host's functions, with a
// MessagePack reader and writer. The same protocol and semantics as the C SDK (native/include/paravirt/sandbox.h,
// msgpack.h; docs/sandboxes.md): calls arrive as [name, args] in the call buffer registered with sandbox_ready, results
// and errors (a negative status plus a MessagePack string) go back with sandbox_return. The image declares its
// functions in PV_NOTE_TYPE_SANDBOX notes, which the build generates from the project's
// <ParavirtGuestFunction Include="Name" /> items.
using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>A guest function: reads its arguments from <c>args</c> (positioned at the first, <c>args->Count</c> of them), writes one value to <c>result</c>, returns 0 or a negative status (see <see cref="Sandbox.Fail"/>).</summary>
    public unsafe struct GuestFunction
    {
        /// <summary>The name the host calls it by (as declared by a ParavirtGuestFunction item).</summary>
        public string Name;
        /// <summary>The function.</summary>
        public delegate*<MessagePackReader*, MessagePackWriter*, long> Function;

        /// <summary>Creates an entry.</summary>
        public GuestFunction(string name, delegate*<MessagePackReader*, MessagePackWriter*, long> function)
        {
            Name = name;
            Function = function;
        }
    }

    /// <summary>Serves the host's calls and calls host functions.</summary>
    public static unsafe class Sandbox
    {
        /// <summary>Bytes of the call buffer and of the result buffer.</summary>
        public const uint CallBufferSize = 256 * 1024;
        /// <summary>Bytes of the host-call request and response buffers.</summary>
        public const uint HostBufferSize = 64 * 1024;

        private static byte* _call;
        private static byte* _result;
        private static byte* _hostRequest;
        private static byte* _hostResponse;

        /// <summary>
        /// The ready point: registers the call buffer and serves calls to <paramref name="functions"/> forever. Returns
        /// only when the image runs as a plain guest (<see cref="HypercallStatus.NotImplemented"/>) or the host refuses.
        /// </summary>
        public static long Serve(GuestFunction[] functions)
        {
            if ((Guest.Features & FeatureBits.Sandbox) == 0)
                return (long)HypercallStatus.NotImplemented;
            _call = (byte*)Devices.AllocPages(CallBufferSize / 4096);
            _result = (byte*)Devices.AllocPages(CallBufferSize / 4096);
            if (_call == null || _result == null)
                return (long)HypercallStatus.NoMemory;
            long n = Hypercall.Call(HypercallCode.SandboxReady, (ulong)_call, CallBufferSize);
            while (true)
            {
                if (n < 0)
                    return n;
                MessagePackWriter result = new MessagePackWriter(_result, CallBufferSize);
                long status = (ulong)n <= CallBufferSize
                    ? Dispatch(functions, (uint)n, &result)
                    : Fail(&result, (long)HypercallStatus.Protocol, "the call overflows the call buffer");
                n = Hypercall.Call(HypercallCode.SandboxReturn, (ulong)status, (ulong)_result, result.Length);
            }
        }

        private static long Dispatch(GuestFunction[] functions, uint length, MessagePackWriter* result)
        {
            MessagePackReader call = new MessagePackReader(_call, length);
            byte* name = null;
            uint nameLength = 0;
            if (call.ReadArray() == 2)
                name = call.ReadString(&nameLength);
            uint argc = call.ReadArray();
            if (call.Error != 0 || name == null)
                return Fail(result, (long)HypercallStatus.Protocol, "malformed call: expected [name, args]");
            for (int i = 0; i < functions.Length; i++)
            {
                if (!Equals(functions[i].Name, name, nameLength))
                    continue;
                MessagePackReader args = call;
                args.Count = argc;
                long status = functions[i].Function(&args, result);
                if (status < 0)
                    return result->Length == 0 || result->Error != 0 ? Fail(result, status, "the guest function failed") : status;
                if (args.Error != 0)
                    return Fail(result, (long)HypercallStatus.Invalid, "the arguments do not match the function's parameters");
                if (result->Error != 0)
                    return Fail(result, (long)HypercallStatus.TooBig, "the result does not fit the result buffer");
                if (result->Length == 0)
                    result->WriteNil();
                return 0;
            }
            return Fail(result, (long)HypercallStatus.NotFound, "no such guest function");
        }

        private static bool Equals(string s, byte* utf8, uint length)
        {
            if (s.Length != length)
                return false;
            for (int i = 0; i < s.Length; i++)
            {
                if (s[i] != utf8[i])
                    return false;
            }
            return true;
        }

        /// <summary>Replaces whatever <paramref name="result"/> holds with <paramref name="message"/> and returns <paramref name="status"/> (negative).</summary>
        public static long Fail(MessagePackWriter* result, long status, string message)
        {
            result->Reset();
            result->WriteString(message);
            return status < 0 ? status : (long)HypercallStatus.Invalid;
        }

        /// <summary>Begins a call of host function <paramref name="name"/> with <paramref name="argc"/> arguments: write them to the returned writer, then <see cref="EndHostCall"/>.</summary>
        public static MessagePackWriter BeginHostCall(string name, uint argc)
        {
            if (_hostRequest == null)
            {
                _hostRequest = (byte*)Devices.AllocPages(HostBufferSize / 4096);
                _hostResponse = (byte*)Devices.AllocPages(HostBufferSize / 4096);
            }
            MessagePackWriter w = new MessagePackWriter(_hostRequest, _hostRequest == null || _hostResponse == null ? 0 : HostBufferSize);
            w.WriteArray(2);
            w.WriteString(name);
            w.WriteArray(argc);
            return w;
        }

        /// <summary>Makes the call; returns the result's length (and <paramref name="result"/> reads it), or a negative status (and <paramref name="result"/> reads the host's message).</summary>
        public static long EndHostCall(MessagePackWriter* request, MessagePackReader* result)
        {
            *result = new MessagePackReader(_hostResponse, 0);
            if (request->Error != 0)
                return request->Error;
            long n = Hypercall.Call(HypercallCode.HostCall, (ulong)_hostRequest, request->Length, (ulong)_hostResponse, HostBufferSize);
            if (n >= 0)
            {
                *result = new MessagePackReader(_hostResponse, (ulong)n <= HostBufferSize ? (uint)n : 0);
                return n;
            }
            MessagePackReader probe = new MessagePackReader(_hostResponse, HostBufferSize);
            probe.Skip();
            *result = new MessagePackReader(_hostResponse, probe.Error == 0 ? (uint)(probe.Position - _hostResponse) : 0);
            return n;
        }
    }

    /// <summary>Reads MessagePack from a buffer. Errors are sticky (<see cref="Error"/>, a negative status): a read of the wrong type or past the end sets it, and every later read returns zeros.</summary>
    public unsafe struct MessagePackReader
    {
        private byte* _pos;
        private readonly byte* _end;
        /// <summary>0, or the first error's status.</summary>
        public long Error;
        /// <summary>For a guest function's arguments: how many there are.</summary>
        public uint Count;

        /// <summary>A reader over <paramref name="length"/> bytes at <paramref name="data"/>.</summary>
        public MessagePackReader(byte* data, uint length)
        {
            _pos = data;
            _end = data + length;
            Error = 0;
            Count = 0;
        }

        /// <summary>The next unread byte.</summary>
        public byte* Position => _pos;

        private bool Need(uint n)
        {
            if (Error != 0)
                return false;
            if ((ulong)(_end - _pos) < n)
            {
                Error = (long)HypercallStatus.Protocol;
                return false;
            }
            return true;
        }

        private void Mismatch()
        {
            if (Error == 0)
                Error = (long)HypercallStatus.Invalid;
        }

        private static ulong BigEndian(byte* p, int n)
        {
            ulong v = 0;
            for (int i = 0; i < n; i++)
                v = (v << 8) | p[i];
            return v;
        }

        /// <summary>Reads nil.</summary>
        public void ReadNil()
        {
            if (!Need(1))
                return;
            if (*_pos != 0xc0)
            {
                Mismatch();
                return;
            }
            _pos++;
        }

        /// <summary>Reads a bool.</summary>
        public bool ReadBool()
        {
            if (!Need(1))
                return false;
            byte b = *_pos;
            if (b != 0xc2 && b != 0xc3)
            {
                Mismatch();
                return false;
            }
            _pos++;
            return b == 0xc3;
        }

        /// <summary>Reads any integer encoding whose value fits a long.</summary>
        public long ReadInt()
        {
            if (!Need(1))
                return 0;
            byte b = *_pos;
            if (b <= 0x7f)
            {
                _pos++;
                return b;
            }
            if (b >= 0xe0)
            {
                _pos++;
                return (sbyte)b;
            }
            int n;
            bool signed;
            switch (b)
            {
                case 0xcc: n = 1; signed = false; break;
                case 0xcd: n = 2; signed = false; break;
                case 0xce: n = 4; signed = false; break;
                case 0xcf: n = 8; signed = false; break;
                case 0xd0: n = 1; signed = true; break;
                case 0xd1: n = 2; signed = true; break;
                case 0xd2: n = 4; signed = true; break;
                case 0xd3: n = 8; signed = true; break;
                default: Mismatch(); return 0;
            }
            if (!Need((uint)(1 + n)))
                return 0;
            ulong v = BigEndian(_pos + 1, n);
            _pos += 1 + n;
            if (signed)
            {
                int shift = 64 - 8 * n;
                return (long)(v << shift) >> shift;
            }
            if (v > long.MaxValue)
            {
                Mismatch();
                return 0;
            }
            return (long)v;
        }

        private uint Header(byte fixLow, byte fixHigh, byte marker8, byte marker16, byte marker32)
        {
            if (!Need(1))
                return 0;
            byte b = *_pos;
            if (fixHigh != 0 && b >= fixLow && b <= fixHigh)
            {
                _pos++;
                return (uint)(b - fixLow);
            }
            int n = marker8 != 0 && b == marker8 ? 1 : b == marker16 ? 2 : b == marker32 ? 4 : 0;
            if (n == 0)
            {
                Mismatch();
                return 0;
            }
            if (!Need((uint)(1 + n)))
                return 0;
            uint length = (uint)BigEndian(_pos + 1, n);
            _pos += 1 + n;
            return length;
        }

        /// <summary>Reads a string: its UTF-8 bytes (pointing into the buffer) and their count in <paramref name="length"/>.</summary>
        public byte* ReadString(uint* length)
        {
            *length = 0;
            uint n = Header(0xa0, 0xbf, 0xd9, 0xda, 0xdb);
            if (Error != 0 || !Need(n))
                return null;
            byte* p = _pos;
            _pos += n;
            *length = n;
            return p;
        }

        /// <summary>Reads an array header: the element count.</summary>
        public uint ReadArray()
        {
            uint n = Header(0x90, 0x9f, 0, 0xdc, 0xdd);
            if (Error == 0 && n > (ulong)(_end - _pos))
                Error = (long)HypercallStatus.Protocol;
            return Error == 0 ? n : 0;
        }

        /// <summary>Reads a map header: the pair count.</summary>
        public uint ReadMap()
        {
            uint n = Header(0x80, 0x8f, 0, 0xde, 0xdf);
            if (Error == 0 && (ulong)n * 2 > (ulong)(_end - _pos))
                Error = (long)HypercallStatus.Protocol;
            return Error == 0 ? n : 0;
        }

        /// <summary>Reads a string and compares it with <paramref name="key"/> (ASCII), for map keys.</summary>
        public bool ReadKey(string key)
        {
            uint n;
            byte* s = ReadString(&n);
            if (s == null || n != key.Length)
                return false;
            for (int i = 0; i < key.Length; i++)
            {
                if (s[i] != key[i])
                    return false;
            }
            return true;
        }

        /// <summary>Skips one value, collections included (at most 32 levels deep).</summary>
        public void Skip() => Skip(0);

        private void Skip(int depth)
        {
            if (depth > 32 || !Need(1))
            {
                if (Error == 0)
                    Error = (long)HypercallStatus.Protocol;
                return;
            }
            byte b = *_pos;
            uint n;
            if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            {
                _pos++;
                return;
            }
            if (b <= 0x8f || b == 0xde || b == 0xdf)
            {
                n = ReadMap() * 2;
            }
            else if (b <= 0x9f || b == 0xdc || b == 0xdd)
            {
                n = ReadArray();
            }
            else
            {
                uint size;
                switch (b)
                {
                    case 0xcc: case 0xd0: size = 2; break;
                    case 0xcd: case 0xd1: size = 3; break;
                    case 0xca: case 0xce: case 0xd2: size = 5; break;
                    case 0xcb: case 0xcf: case 0xd3: size = 9; break;
                    case 0xd4: size = 3; break;
                    case 0xd5: size = 4; break;
                    case 0xd6: size = 6; break;
                    case 0xd7: size = 10; break;
                    case 0xd8: size = 18; break;
                    default:
                    {
                        uint length;
                        if (b >= 0xa0 && b <= 0xbf || b == 0xd9 || b == 0xda || b == 0xdb)
                            ReadString(&length);
                        else if (b == 0xc4 || b == 0xc5 || b == 0xc6)
                        {
                            length = Header(0, 0, 0xc4, 0xc5, 0xc6);
                            if (Need(length))
                                _pos += length;
                        }
                        else if (b == 0xc7 || b == 0xc8 || b == 0xc9)
                        {
                            length = Header(0, 0, 0xc7, 0xc8, 0xc9);
                            if (Need(length + 1))
                                _pos += length + 1;
                        }
                        else
                            Error = (long)HypercallStatus.Protocol;
                        return;
                    }
                }
                if (Need(size))
                    _pos += size;
                return;
            }
            for (uint i = 0; i < n && Error == 0; i++)
                Skip(depth + 1);
        }
    }

    /// <summary>Writes MessagePack into a buffer (the shortest encodings). A write past the end sets <see cref="Error"/> (TooBig) and later writes do nothing.</summary>
    public unsafe struct MessagePackWriter
    {
        private readonly byte* _start;
        private byte* _pos;
        private readonly byte* _end;
        /// <summary>0, or <see cref="HypercallStatus.TooBig"/>.</summary>
        public long Error;

        /// <summary>A writer over <paramref name="capacity"/> bytes at <paramref name="buffer"/>.</summary>
        public MessagePackWriter(byte* buffer, uint capacity)
        {
            _start = buffer;
            _pos = buffer;
            _end = buffer + capacity;
            Error = 0;
        }

        /// <summary>Bytes written.</summary>
        public uint Length => (uint)(_pos - _start);

        /// <summary>Forgets everything written.</summary>
        public void Reset()
        {
            _pos = _start;
            Error = 0;
        }

        private byte* Room(uint n)
        {
            if (Error != 0)
                return null;
            if ((ulong)(_end - _pos) < n)
            {
                Error = (long)HypercallStatus.TooBig;
                return null;
            }
            byte* p = _pos;
            _pos += n;
            return p;
        }

        private void Put(byte marker, ulong value, int n)
        {
            byte* p = Room((uint)(1 + n));
            if (p == null)
                return;
            p[0] = marker;
            for (int i = n; i >= 1; i--)
            {
                p[i] = (byte)value;
                value >>= 8;
            }
        }

        /// <summary>Writes nil.</summary>
        public void WriteNil() => Put(0xc0, 0, 0);

        /// <summary>Writes a bool.</summary>
        public void WriteBool(bool value) => Put(value ? (byte)0xc3 : (byte)0xc2, 0, 0);

        /// <summary>Writes a non-negative integer.</summary>
        public void WriteUInt(ulong v)
        {
            if (v <= 0x7f) Put((byte)v, 0, 0);
            else if (v <= 0xff) Put(0xcc, v, 1);
            else if (v <= 0xffff) Put(0xcd, v, 2);
            else if (v <= 0xffffffff) Put(0xce, v, 4);
            else Put(0xcf, v, 8);
        }

        /// <summary>Writes an integer.</summary>
        public void WriteInt(long v)
        {
            if (v >= 0) WriteUInt((ulong)v);
            else if (v >= -32) Put((byte)v, 0, 0);
            else if (v >= -128) Put(0xd0, (ulong)v, 1);
            else if (v >= -32768) Put(0xd1, (ulong)v, 2);
            else if (v >= int.MinValue) Put(0xd2, (ulong)v, 4);
            else Put(0xd3, (ulong)v, 8);
        }

        /// <summary>Writes a string header for <paramref name="length"/> bytes.</summary>
        private void StringHeader(uint length)
        {
            if (length <= 31) Put((byte)(0xa0 | length), 0, 0);
            else if (length <= 0xff) Put(0xd9, length, 1);
            else if (length <= 0xffff) Put(0xda, length, 2);
            else Put(0xdb, length, 4);
        }

        /// <summary>Writes <paramref name="text"/> as a UTF-8 string.</summary>
        public void WriteString(string text)
        {
            uint bytes = 0;
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                bytes += c < 0x80 ? 1u : c < 0x800 ? 2u : 3u; // every char >= 0x800 is 3 bytes (surrogates become U+FFFD below)
            }
            StringHeader(bytes);
            byte* p = Room(bytes);
            if (p == null)
                return;
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (c < 0x80)
                {
                    *p++ = (byte)c;
                }
                else if (c < 0x800)
                {
                    *p++ = (byte)(0xc0 | (c >> 6));
                    *p++ = (byte)(0x80 | (c & 0x3f));
                }
                else
                {
                    // Lone and paired surrogates alike become U+FFFD (3 bytes), so the output is always valid UTF-8.
                    int u = c >= 0xd800 && c <= 0xdfff ? 0xfffd : c;
                    *p++ = (byte)(0xe0 | (u >> 12));
                    *p++ = (byte)(0x80 | ((u >> 6) & 0x3f));
                    *p++ = (byte)(0x80 | (u & 0x3f));
                }
            }
        }

        /// <summary>Writes <paramref name="length"/> bytes of UTF-8 as a string.</summary>
        public void WriteString(byte* utf8, uint length)
        {
            StringHeader(length);
            WriteRaw(utf8, length);
        }

        /// <summary>Writes an array header.</summary>
        public void WriteArray(uint count)
        {
            if (count <= 15) Put((byte)(0x90 | count), 0, 0);
            else if (count <= 0xffff) Put(0xdc, count, 2);
            else Put(0xdd, count, 4);
        }

        /// <summary>Writes a map header.</summary>
        public void WriteMap(uint count)
        {
            if (count <= 15) Put((byte)(0x80 | count), 0, 0);
            else if (count <= 0xffff) Put(0xde, count, 2);
            else Put(0xdf, count, 4);
        }

        /// <summary>Copies already encoded MessagePack.</summary>
        public void WriteRaw(byte* data, uint length)
        {
            byte* p = Room(length);
            if (p == null)
                return;
            for (uint i = 0; i < length; i++)
                p[i] = data[i];
        }
    }
}
