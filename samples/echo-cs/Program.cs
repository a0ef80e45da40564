// echo-cs: a line service written in C#, over the C# console ring driver (Paravirt.Guest.ConsoleRing: the same
// protocol as the C driver pv_cons_* in native/runtime/devices.c).
//
// Attaches console0, answers "READY", then reads lines from the console's input ring and writes each back
// uppercased ("ECHO <LINE>") into the output ring, until the line QUIT (answered "BYE", exit 0) or the end of the
// input (exit 0, no BYE). Lines longer than 255 bytes are cut. Exit status: 0 after QUIT or at the end of input,
// 1 no console, 2 I/O error (or no line for 60 s).
using Paravirt.Abi;
using Paravirt.Guest;

internal static unsafe class Program
{
    private const ulong LineCapacity = 256;
    private const ulong IdleNs = 60UL * 1000 * 1000 * 1000;

    private static int Main()
    {
        long r = ConsoleRing.Attach("console0", out ConsoleRing? con);
        if (r < 0 || con == null)
            return Fail(1, "no console console0", r);
        if ((r = con.Write("READY\n")) < 0)
            return Fail(2, "write", r);
        byte* line = stackalloc byte[(int)LineCapacity];
        byte* answer = stackalloc byte[(int)LineCapacity + 8];
        long lines = 0;
        bool ended = false;
        for (;;)
        {
            long n = con.ReadLine(line, LineCapacity, Guest.MonotonicNs() + IdleNs);
            if (n == ConsoleRing.EndOfInput)
            {
                ended = true; // the host's input ended: as QUIT, without the BYE
                break;
            }
            if (n < 0)
                return Fail(2, "read line", n);
            if (n == 4 && line[0] == 'Q' && line[1] == 'U' && line[2] == 'I' && line[3] == 'T')
                break;
            answer[0] = (byte)'E';
            answer[1] = (byte)'C';
            answer[2] = (byte)'H';
            answer[3] = (byte)'O';
            answer[4] = (byte)' ';
            for (long i = 0; i < n; i++)
            {
                byte c = line[i];
                answer[5 + i] = c >= 'a' && c <= 'z' ? (byte)(c - 32) : c;
            }
            answer[5 + n] = (byte)'\n';
            if ((r = con.Write(answer, (ulong)(n + 6))) < 0)
                return Fail(2, "write", r);
            lines++;
        }
        if (!ended && (r = con.Write("BYE\n")) < 0)
            return Fail(2, "write", r);
        Console.Write("echo-cs: ");
        Console.Write(lines);
        Console.WriteLine(" lines echoed");
        return 0;
    }

    private static int Fail(int status, string what, long detail) => Console.Failed("echo-cs", what, detail, status);
}
