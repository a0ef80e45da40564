// The console ring driver for C# guests: the counterpart of the C runtime's pv_cons_* (native/runtime/devices.c).
using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>
    /// The paravirtual console: the console page (<see cref="ConsoleInterface"/>, xencons style) attached with
    /// <see cref="HypercallCode.ConsoleAttach"/>. Output goes into the out ring (one doorbell per write: the console
    /// has no output event index); input is read from the in ring, waiting on the device's event port.
    /// </summary>
    public sealed unsafe class ConsoleRing
    {
        /// <summary>
        /// The console's input ended and every byte was read (the host set <see cref="ConsoleInputFlags.EndOfInput"/>):
        /// the C driver's <c>PV_CONS_EOF</c>. Below every <see cref="HypercallStatus"/> (negated errno values, at most
        /// 4095), so it never collides with one.
        /// </summary>
        public const long EndOfInput = -4096;

        private byte* _page;

        private ConsoleRing() { }

        /// <summary>Device index.</summary>
        public uint Index { get; private set; }
        /// <summary>Event port of the device.</summary>
        public uint Port { get; private set; }

        /// <summary>Attaches console <paramref name="name"/> (the first console when null); returns 0 and the console, or a negative status.</summary>
        public static long Attach(string? name, out ConsoleRing? console)
        {
            console = null;
            DeviceInfo info;
            long index = Devices.Find(DeviceKind.Console, name, &info);
            if (index < 0)
                return index;
            byte* page = (byte*)Devices.AllocBytes(ConsoleInterface.Size);
            if (page == null)
                return (long)HypercallStatus.NoMemory;
            var c = new ConsoleRing { _page = page, Index = (uint)index };
            long port = Hypercall.Call(HypercallCode.ConsoleAttach, (ulong)index, (ulong)page);
            if (port < 0)
                return port;
            c.Port = (uint)port;
            console = c;
            return 0;
        }

        private uint* U32(uint offset) => (uint*)(_page + offset);

        /// <summary>Writes all <paramref name="length"/> bytes (waiting while the ring is full); returns the length or a negative status.</summary>
        public long Write(byte* data, ulong length)
        {
            ulong done = 0;
            while (done < length)
            {
                uint prod = *U32(ConsoleInterface.OutProdOffset);
                uint cons = *U32(ConsoleInterface.OutConsOffset);
                Devices.Barrier();
                uint used = prod - cons;
                if (used > ConsoleInterface.OutSize)
                    return (long)HypercallStatus.Broken; // the host corrupted out_cons
                uint space = ConsoleInterface.OutSize - used;
                if (space == 0)
                {
                    // Full: ask the host to drain (it does so synchronously) and, if it could not, wait a little.
                    long r = Devices.EventSend(Port);
                    if (r < 0)
                        return r;
                    Devices.Barrier();
                    if (*U32(ConsoleInterface.OutConsOffset) == cons)
                    {
                        r = Devices.Poll(Guest.MonotonicNs() + 1000000u, 1ul << (int)Port);
                        if (r < 0)
                            return r;
                    }
                    continue;
                }
                uint n = (uint)(length - done < space ? length - done : space);
                byte* ring = _page + ConsoleInterface.OutOffset;
                for (uint i = 0; i < n; i++)
                    ring[(prod + i) & (ConsoleInterface.OutSize - 1)] = data[done + i];
                Devices.Barrier(); // the bytes before the index
                *U32(ConsoleInterface.OutProdOffset) = prod + n;
                done += n;
            }
            long rr = Devices.EventSend(Port);
            return rr < 0 ? rr : (long)length;
        }

        /// <summary>Writes <paramref name="text"/> (ASCII; other characters become '?'); returns its length or a negative status.</summary>
        public long Write(string text)
        {
            byte* buf = stackalloc byte[256];
            long total = 0;
            int i = 0;
            while (i < text.Length)
            {
                int n = 0;
                while (n < 256 && i < text.Length)
                {
                    char ch = text[i++];
                    buf[n++] = ch < 0x80 ? (byte)ch : (byte)'?';
                }
                long r = Write(buf, (ulong)n);
                if (r < 0)
                    return r;
                total += r;
            }
            return total;
        }

        /// <summary>Reads up to <paramref name="capacity"/> bytes of input without waiting; returns the count (0: none now), <see cref="EndOfInput"/>, or a negative status.</summary>
        public long Read(byte* buffer, ulong capacity)
        {
            // in_flags before in_prod: the host publishes the final in_prod before it sets EndOfInput.
            uint flags = *U32(ConsoleInterface.InFlagsOffset);
            Devices.Barrier();
            uint cons = *U32(ConsoleInterface.InConsOffset);
            uint prod = *U32(ConsoleInterface.InProdOffset);
            Devices.Barrier(); // the index before the bytes
            uint avail = prod - cons;
            if (avail > ConsoleInterface.InSize)
                return (long)HypercallStatus.Broken;
            if (avail == 0 && (flags & (uint)ConsoleInputFlags.EndOfInput) != 0)
                return EndOfInput;
            if (avail == 0 || capacity == 0)
                return 0;
            uint n = capacity < avail ? (uint)capacity : avail;
            byte* ring = _page + ConsoleInterface.InOffset;
            for (uint i = 0; i < n; i++)
                buffer[i] = ring[(cons + i) & (ConsoleInterface.InSize - 1)];
            Devices.Barrier(); // the bytes were read before in_cons frees them
            *U32(ConsoleInterface.InConsOffset) = cons + n;
            if (avail == ConsoleInterface.InSize)
                Devices.EventSend(Port); // the ring was full: the host may hold more input
            return n;
        }

        /// <summary>Reads at least one byte, waiting until the deadline (TimedOut); returns the count, <see cref="EndOfInput"/>, or a negative status.</summary>
        public long ReadWait(byte* buffer, ulong capacity, ulong deadlineNs)
        {
            for (;;)
            {
                long n = Read(buffer, capacity);
                if (n != 0 || capacity == 0)
                    return n;
                long r = Devices.Poll(deadlineNs, 1ul << (int)Port);
                if (r < 0)
                    return r;
                if (r == 0)
                {
                    // One last look: input may have landed together with the timeout.
                    n = Read(buffer, capacity);
                    return n != 0 ? n : (long)HypercallStatus.TimedOut;
                }
            }
        }

        /// <summary>
        /// Reads one line (without its '\n'; '\r' dropped; bytes past <paramref name="capacity"/> - 1 dropped) into
        /// <paramref name="line"/>, NUL-terminated; returns its length, TimedOut, or <see cref="EndOfInput"/> when the input
        /// ended with no line left (a last line without '\n' is returned as a line first).
        /// </summary>
        public long ReadLine(byte* line, ulong capacity, ulong deadlineNs)
        {
            ulong len = 0;
            ulong seen = 0;
            for (;;)
            {
                byte ch;
                long r = ReadWait(&ch, 1, deadlineNs);
                if (r == EndOfInput && seen > 0)
                    break; // the last line had no '\n'
                if (r < 0)
                    return r;
                seen++;
                if (ch == (byte)'\n')
                    break;
                if (ch == (byte)'\r')
                    continue;
                if (capacity > 0 && len < capacity - 1)
                    line[len++] = ch;
            }
            if (capacity > 0)
                line[len] = 0;
            return (long)len;
        }
    }
}
