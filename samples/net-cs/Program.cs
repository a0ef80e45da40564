// net-cs: the "pong" side of samples/net's ping-pong, written in C#, over the C# net driver
// (Paravirt.Guest.NetDevice: the same ring protocol as the C driver pv_net_* in native/runtime/devices.c).
//
// Run it on one switch with the C `net` guest in role=ping (`paravirt run net.elf net-cs.elf --net switch:s0`, the
// C guest with role=ping). It checks each frame (ethertype 0x88B5, magic "PVNT", round, length, payload, FNV-1a of
// the payload), echoes it with the addresses swapped (duplicates of the previous round again, not counted) and,
// after rounds=N (default 100) rounds, prints "net-cs: pong N rounds, checksum 0x..." with the same checksum as the
// pinger's. It also answers samples/net's auto-role hellos with its own hello, so an auto pinger finds it.
// Exit status: 0 success, 1 no device, 2 I/O error, 3 corrupt frame, 4 timeout.
using Paravirt.Abi;
using Paravirt.Guest;

internal static unsafe class Program
{
    private const uint EtherType = 0x88B5;
    private const uint Magic = 0x50564E54;      // "PVNT"
    private const uint HelloMagic = 0x50564845; // "PVHE"
    private const uint Hdr = 14;
    private const uint Meta = 12;               // magic, round, length

    private static NetDevice? s_nic;
    private static byte* s_rx;
    private static byte* s_tx;

    private static int Main()
    {
        long r = NetDevice.Open("net0", out NetDevice? nic);
        if (r < 0 || nic == null)
            return Fail(1, "no net device net0", r);
        s_nic = nic;
        s_rx = (byte*)Devices.AllocPages(3);
        s_tx = (byte*)Devices.AllocPages(3);
        if (s_rx == null || s_tx == null)
            return Fail(2, "no memory for the frames", (long)HypercallStatus.NoMemory);
        uint rounds = (uint)CommandLineU64("rounds=", 100);
        Console.Write("net-cs: pong on net0 ");
        for (int i = 0; i < 6; i++)
        {
            if (i != 0)
                Console.Write(":");
            Console.WriteHex(nic.Mac[i], 2);
        }
        Console.Write(" mtu ");
        Console.Write(nic.Mtu);
        Console.WriteLine("");

        uint total = 0;
        uint next = 0;
        ulong giveUp = Guest.MonotonicNs() + 60UL * 1000 * 1000 * 1000;
        while (next < rounds)
        {
            long n = nic.Receive(s_rx, NetConstants.MaxFrame, giveUp);
            if (n == (long)HypercallStatus.TimedOut)
                return Fail(4, "no frame from the pinger", n);
            if (n < 0)
                return Fail(2, "recv", n);
            if (IsHello(n))
            {
                if ((r = SendHello()) < 0)
                    return Fail(2, "send hello", r);
                continue;
            }
            long got = Parse((uint)n, out uint sum);
            if (got == -2)
                return Fail(3, "corrupt frame", next);
            if (got < 0 || got > next)
                continue;
            // Echo (also a duplicate of the previous round: our answer was lost or late).
            for (int i = 0; i < 6; i++)
            {
                s_tx[i] = s_rx[6 + i];
                s_tx[6 + i] = nic.Mac[i];
            }
            for (long i = 12; i < n; i++)
                s_tx[i] = s_rx[i];
            if ((r = nic.Send(s_tx, (ulong)n)) < 0)
                return Fail(2, "send", r);
            if (got == next)
            {
                total = ((total ^ sum) * 16777619u) + (uint)got;
                next++;
            }
        }
        Console.Write("net-cs: pong ");
        Console.Write(rounds);
        Console.Write(" rounds, checksum 0x");
        Console.WriteHex(total, 8);
        Console.WriteLine("");
        return 0;
    }

    private static uint Get32(byte* p) => p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);

    private static void Put32(byte* p, uint v)
    {
        p[0] = (byte)v;
        p[1] = (byte)(v >> 8);
        p[2] = (byte)(v >> 16);
        p[3] = (byte)(v >> 24);
    }

    private static uint Fnv1a(byte* p, uint n)
    {
        uint h = 2166136261u;
        for (uint i = 0; i < n; i++)
            h = (h ^ p[i]) * 16777619u;
        return h;
    }

    private static bool OurEtherType(byte* f) => f[12] == (byte)(EtherType >> 8) && f[13] == (byte)(EtherType & 0xff);

    private static bool IsHello(long n)
    {
        if (n < Hdr + 4 || !OurEtherType(s_rx) || Get32(s_rx + Hdr) != HelloMagic)
            return false;
        for (int i = 0; i < 6; i++)
        {
            if (s_rx[6 + i] != s_nic!.Mac[i])
                return true;
        }
        return false; // our own
    }

    // A broadcast hello from our MAC, as samples/net's: an auto-role peer learns of us (and, with the higher MAC, pongs).
    private static long SendHello()
    {
        byte* hello = stackalloc byte[60];
        for (int i = 0; i < 60; i++)
            hello[i] = 0;
        for (int i = 0; i < 6; i++)
        {
            hello[i] = 0xff;
            hello[6 + i] = s_nic!.Mac[i];
        }
        hello[12] = (byte)(EtherType >> 8);
        hello[13] = (byte)(EtherType & 0xff);
        Put32(hello + Hdr, HelloMagic);
        return s_nic!.Send(hello, 60);
    }

    // The frame's round, or -1 when it is not ours, or -2 when corrupt (as samples/net's parse).
    private static long Parse(uint n, out uint checksum)
    {
        checksum = 0;
        if (n < Hdr + Meta + 4 || !OurEtherType(s_rx) || Get32(s_rx + Hdr) != Magic)
            return -1;
        uint len = Get32(s_rx + Hdr + 8);
        if ((ulong)len + Hdr + Meta + 4 != n)
            return -2;
        uint sum = Fnv1a(s_rx + Hdr + Meta, len);
        if (sum != Get32(s_rx + Hdr + Meta + len))
            return -2;
        checksum = sum;
        return Get32(s_rx + Hdr + 4);
    }

    // The value of "key=N" on the command line, or the default.
    private static ulong CommandLineU64(string key, ulong fallback)
    {
        BootInfo* bi = Guest.BootInfo;
        byte* cmd = (byte*)bi->CommandLine;
        ulong len = bi->CommandLineLength;
        if (cmd == null)
            return fallback;
        for (ulong at = 0; at + (ulong)key.Length <= len; at++)
        {
            if (at != 0 && cmd[at - 1] != ' ')
                continue;
            bool match = true;
            for (int i = 0; i < key.Length && match; i++)
                match = cmd[at + (ulong)i] == key[i];
            if (!match)
                continue;
            ulong v = 0;
            ulong j = at + (ulong)key.Length;
            if (j >= len || cmd[j] < '0' || cmd[j] > '9')
                return fallback;
            while (j < len && cmd[j] >= '0' && cmd[j] <= '9')
                v = (v * 10) + (ulong)(cmd[j++] - '0');
            return v;
        }
        return fallback;
    }

    private static int Fail(int status, string what, long detail) => Console.Failed("net-cs", what, detail, status);
}
