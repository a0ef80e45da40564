using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>
    /// Text output through the console-write hypercall (the host's console stream) and the debug-write hypercall
    /// (early boot and panics). Strings are written as UTF-8; numbers are formatted without allocating.
    /// </summary>
    public static unsafe class Console
    {
        private const int ChunkBytes = 256;

        /// <summary>Writes <paramref name="text"/> to the console.</summary>
        public static void Write(string text) => WriteString(HypercallCode.ConsoleWrite, text);

        /// <summary>Writes <paramref name="text"/> and a newline to the console.</summary>
        public static void WriteLine(string text)
        {
            WriteString(HypercallCode.ConsoleWrite, text);
            WriteString(HypercallCode.ConsoleWrite, "\n");
        }

        /// <summary>
        /// Reports a failed step on the console as one line, <c>PROGRAM: FAILED: WHAT (DETAIL)</c> (DETAIL: the status or
        /// value that was wrong), and returns <paramref name="exitStatus"/>, so <c>Main</c> can return what it gives.
        /// </summary>
        public static int Failed(string program, string what, long detail, int exitStatus)
        {
            Write(program);
            Write(": FAILED: ");
            Write(what);
            Write(" (");
            Write(detail);
            WriteLine(")");
            return exitStatus;
        }

        /// <summary>Writes a signed decimal number to the console.</summary>
        public static void Write(long value)
        {
            byte* buf = stackalloc byte[24];
            int n = FormatDecimal(value, buf);
            WriteBytes(HypercallCode.ConsoleWrite, buf, n);
        }

        /// <summary>Writes an unsigned number in hexadecimal (lower case, no prefix, at least <paramref name="digits"/> digits).</summary>
        public static void WriteHex(ulong value, int digits = 1)
        {
            byte* buf = stackalloc byte[16];
            int n = 0;
            for (int shift = 60; shift >= 0; shift -= 4)
            {
                int d = (int)(value >> shift) & 0xf;
                if (n == 0 && d == 0 && shift >= digits * 4)
                    continue;
                buf[n++] = (byte)(d < 10 ? '0' + d : 'a' + d - 10);
            }
            WriteBytes(HypercallCode.ConsoleWrite, buf, n);
        }

        /// <summary>Writes raw bytes to the console.</summary>
        public static long WriteBytes(byte* data, int length) => WriteBytes(HypercallCode.ConsoleWrite, data, length);

        /// <summary>Writes <paramref name="text"/> to the debug output (debug-write hypercall).</summary>
        public static void WriteDebug(string text) => WriteString(HypercallCode.DebugWrite, text);

        /// <summary>Formats <paramref name="value"/> in decimal into <paramref name="buf"/> (at least 20 bytes); returns the length.</summary>
        public static int FormatDecimal(long value, byte* buf)
        {
            byte* tmp = stackalloc byte[20];
            ulong v = value < 0 ? (ulong)(-(value + 1)) + 1 : (ulong)value;
            int n = 0;
            do
            {
                tmp[n++] = (byte)('0' + (int)(v % 10));
                v /= 10;
            } while (v != 0);
            int len = 0;
            if (value < 0)
                buf[len++] = (byte)'-';
            while (n > 0)
                buf[len++] = tmp[--n];
            return len;
        }

        // UTF-16 to UTF-8 in chunks on the stack, so writing never allocates.
        private static void WriteString(HypercallCode code, string text)
        {
            if (text is null)
                return;
            byte* buf = stackalloc byte[ChunkBytes];
            int n = 0;
            for (int i = 0; i < text.Length; i++)
            {
                if (n > ChunkBytes - 4)
                {
                    WriteBytes(code, buf, n);
                    n = 0;
                }
                uint c = text[i];
                if (c >= 0xD800 && c <= 0xDBFF && i + 1 < text.Length && text[i + 1] >= 0xDC00 && text[i + 1] <= 0xDFFF)
                {
                    c = 0x10000 + ((c - 0xD800) << 10) + ((uint)text[i + 1] - 0xDC00);
                    i++;
                }
                else if (c >= 0xD800 && c <= 0xDFFF)
                {
                    c = 0xFFFD; // a lone surrogate
                }
                if (c < 0x80)
                {
                    buf[n++] = (byte)c;
                }
                else if (c < 0x800)
                {
                    buf[n++] = (byte)(0xC0 | (c >> 6));
                    buf[n++] = (byte)(0x80 | (c & 0x3F));
                }
                else if (c < 0x10000)
                {
                    buf[n++] = (byte)(0xE0 | (c >> 12));
                    buf[n++] = (byte)(0x80 | ((c >> 6) & 0x3F));
                    buf[n++] = (byte)(0x80 | (c & 0x3F));
                }
                else
                {
                    buf[n++] = (byte)(0xF0 | (c >> 18));
                    buf[n++] = (byte)(0x80 | ((c >> 12) & 0x3F));
                    buf[n++] = (byte)(0x80 | ((c >> 6) & 0x3F));
                    buf[n++] = (byte)(0x80 | (c & 0x3F));
                }
            }
            WriteBytes(code, buf, n);
        }

        // Writes all bytes, retrying short writes, as the C runtime's pv_write_all does.
        private static long WriteBytes(HypercallCode code, byte* data, int length)
        {
            long done = 0;
            while (done < length)
            {
                long n = Hypercall.Call(code, (ulong)(data + done), (ulong)(length - done));
                if (n == (long)HypercallStatus.TryAgain)
                    continue; // the host's output queue is full (a slow reader); the host already waited a little
                if (n < 0)
                    return done > 0 ? done : n;
                if (n == 0 || n > length - done)
                    break;
                done += n;
            }
            return done;
        }
    }
}
