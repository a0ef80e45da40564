// plugin-cs: a C# sandbox guest. Main initializes once, then serves the host's calls (Sandbox.Serve); the functions
// read MessagePack arguments and write a MessagePack result, as samples/plugin-guest does in C.
//
//   Add(a, b)        -> a + b
//   Scale(point, k)  -> point with X and Y multiplied by k (a map {"X", "Y"} or an array [X, Y])
//   Count()          -> how often Count ran since initialization
//   Greet(name)      -> "<greeting>, <name>!", the greeting from the host function GetGreeting()
//   Fail(message)    -> an error (Invalid) carrying the message
using Paravirt.Abi;
using Paravirt.Guest;

internal static unsafe class Program
{
    private static ulong _count;

    private static int Main()
    {
        GuestFunction[] functions =
        [
            new GuestFunction("Add", &Add),
            new GuestFunction("Scale", &Scale),
            new GuestFunction("Count", &Count),
            new GuestFunction("Greet", &Greet),
            new GuestFunction("Fail", &Fail),
        ];
        long status = Sandbox.Serve(functions);
        Console.Write("plugin-cs: not running in a sandbox (status ");
        Console.Write(status);
        Console.WriteLine(")");
        return 0;
    }

    private static long Add(MessagePackReader* args, MessagePackWriter* result)
    {
        long a = args->ReadInt();
        long b = args->ReadInt();
        result->WriteInt(a + b);
        return 0;
    }

    private static long Scale(MessagePackReader* args, MessagePackWriter* result)
    {
        long x = 0, y = 0;
        uint n = args->ReadMap();
        for (uint i = 0; i < n && args->Error == 0; i++)
        {
            if (args->ReadKey("X"))
                x = args->ReadInt();
            else
                y = args->ReadInt();
        }
        long k = args->ReadInt();
        result->WriteMap(2);
        result->WriteString("X");
        result->WriteInt(x * k);
        result->WriteString("Y");
        result->WriteInt(y * k);
        return 0;
    }

    private static long Count(MessagePackReader* args, MessagePackWriter* result)
    {
        result->WriteUInt(++_count);
        return 0;
    }

    private static long Greet(MessagePackReader* args, MessagePackWriter* result)
    {
        uint nameLength;
        byte* name = args->ReadString(&nameLength);
        MessagePackWriter request = Sandbox.BeginHostCall("GetGreeting", 0);
        MessagePackReader reply;
        long status = Sandbox.EndHostCall(&request, &reply);
        uint greetingLength;
        byte* greeting = reply.ReadString(&greetingLength);
        if (status < 0 || greeting == null)
            return Sandbox.Fail(result, status, "GetGreeting failed");
        byte* text = stackalloc byte[256];
        uint n = 0;
        for (uint i = 0; i < greetingLength && n < 200; i++)
            text[n++] = greeting[i];
        text[n++] = (byte)',';
        text[n++] = (byte)' ';
        for (uint i = 0; i < nameLength && n < 250; i++)
            text[n++] = name[i];
        text[n++] = (byte)'!';
        result->WriteString(text, n);
        return 0;
    }

    private static long Fail(MessagePackReader* args, MessagePackWriter* result)
    {
        uint n;
        byte* message = args->ReadString(&n);
        result->WriteString(message, n);
        return (long)HypercallStatus.Invalid;
    }
}
