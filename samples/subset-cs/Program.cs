// subset-cs: checks, one by one, the C# features docs/csharp-guests.md lists as supported in C# guests, and prints
// "ok <name>" or "FAIL <name>" for each; exits with the number of failures (0: everything works).
// With the command line "fail-index" / "fail-oom" it instead commits that runtime error, to show the fail-fast path
// (a "panic: ..." message on the console, exit status 255).
using System;
using Paravirt.Abi;
using Paravirt.Guest;

internal static unsafe class Program
{
    private static int s_failures;
    private static int s_counter = 40;              // a static with an initializer (preinitialized by ILC)
    private static string s_greeting = "static string";
    private static Point s_origin = new Point(3, 4);
    private static Animal s_pet = new Dog("Rex");    // a static object (preinitialized)
    private static Animal? s_later;                   // a static object assigned at run time
    private static byte[]? s_huge;

    private static int Main()
    {
        string cmd = CommandLine();
        if (cmd == "fail-index")
        {
            int[] a = new int[2];
            int i = a.Length + 1;
            return a[i];
        }
        if (cmd == "fail-oom")
        {
            s_huge = new byte[0x7fff_0000];
            return s_huge.Length;
        }

        // Statics.
        s_counter += 2;
        Check("statics", s_counter == 42 && s_greeting == "static string" && s_origin.X == 3);

        // Structs: fields, methods, by-ref, copies.
        Point p = new Point(1, 2);
        Point q = p;
        q.X = 10;
        Move(ref p, 5);
        Check("structs", p.X == 6 && p.Y == 7 && q.X == 10 && p.LengthSquared() == 85);

        // Classes, new, fields, virtual and abstract calls, base calls.
        Animal dog = new Dog("Rex");
        Animal bird = new Bird();
        Check("classes-virtual", dog.Legs == 4 && bird.Legs == 2 && dog.Describe() == "Rex barks" && bird.Describe() == "a bird sings");
        Check("static-objects", s_pet.Describe() == "Rex barks");
        s_later = new Bird();
        Check("static-object-assigned", s_later != null && s_later.Legs == 2);

        // Casts to the exact type or a base class; is/as.
        object o = dog;
        Check("casts", o is Dog && (o as Bird) == null && ((Animal)o).Legs == 4 && ((Dog)o).Name == "Rex");

        // Strings: literals, length, indexer, concatenation, equality.
        string s = string.Concat("Hello", ", ", "guest");
        Check("strings", s.Length == 12 && s[7] == 'g' && s == "Hello, guest" && s != "hello" && ("a" + "b") == "ab");

        // Arrays: value and reference elements, bounds, nested.
        int[] squares = new int[10];
        for (int i = 0; i < squares.Length; i++)
            squares[i] = i * i;
        Animal?[] zoo = { new Dog("A"), new Bird(), null };
        int[][] jag = { new[] { 1, 2 }, new[] { 3 } };
        Check("arrays", squares[9] == 81 && Sum(squares) == 285 && zoo[0]!.Legs == 4 && zoo[2] == null && jag[1][0] == 3);

        // Unsafe: pointers, stackalloc, fixed, sizeof, fixed buffers (the ABI's ManifestEntry).
        byte* buf = stackalloc byte[16];
        for (int i = 0; i < 16; i++)
            buf[i] = (byte)i;
        long sum = 0;
        fixed (int* sp = squares)
        {
            for (int i = 0; i < 10; i++)
                sum += sp[i];
        }
        ManifestEntry entry = default;
        entry.Name[0] = (byte)'x';
        Check("unsafe", buf[15] == 15 && *(uint*)buf == 0x03020100 && sum == 285 && sizeof(BootInfo) == 80 && entry.Name[0] == 'x');

        // Generics: methods and types over value and reference types.
        var ints = new Stack<int>(4);
        ints.Push(1);
        ints.Push(2);
        var names = new Stack<string>(2);
        names.Push("x");
        Check("generics", Max(3, 9) == 9 && Max(7L, 2L) == 7L && ints.Pop() == 2 && ints.Count == 1 && names.Pop() == "x");

        // Span<T> over arrays and stack memory.
        Span<int> span = new Span<int>(squares, 2, 3);
        Span<byte> bytes = new Span<byte>(buf, 16);
        bytes.Fill(7);
        Check("span", span.Length == 3 && span[0] == 4 && span[2] == 16 && buf[3] == 7);

        // Enums (including the ABI's), switch, 64-bit arithmetic, checked overflow detection by hand.
        HypercallCode code = HypercallCode.ConsoleWrite;
        FeatureBits features = FeatureBits.Console | FeatureBits.Poll;
        Check("enums-switch", Classify(code) == 1 && (features & FeatureBits.Poll) != 0 && (uint)HypercallCode.Version == 0);
        ulong half = 0xFFFF_FFFFul;
        long minus7 = -7 + (long)(half >> 40);
        ulong big = half * half;
        Check("int64", big == 0xFFFF_FFFE_0000_0001ul && (big >> 60) == 0xF && minus7 / 2 == -3 && minus7 % 2 == -1);

        // Nullable value types; ABI constants from the shared Hypercall.Abi sources.
        int? maybe = null;
        int? some = 5;
        Check("nullable-abi", !maybe.HasValue && some.Value == 5 && HypercallPage.Magic == 0x43485650 && AbiVersionConstants.Major == 1);

        // Interfaces.
        IShape[] shapes = { new Square(3), new Rect(2, 5) };
        int area = 0;
        for (int i = 0; i < shapes.Length; i++)
            area += shapes[i].Area();
        Check("interfaces", area == 19);

        // Function pointers (delegates are not supported).
        delegate*<int, int, int> add = &Add;
        Check("function-pointers", add(2, 3) == 5);

        // The hypercall path directly: monotonic clock advances.
        ulong t0 = Guest.MonotonicNs();
        ulong t1 = Guest.MonotonicNs();
        Check("hypercalls", t1 >= t0 && Guest.HostAbiVersion() >= 0);

        Console.Write("subset-cs: ");
        Console.Write(s_failures);
        Console.WriteLine(" failures");
        return s_failures;
    }

    private static void Check(string name, bool ok)
    {
        Console.Write(ok ? "ok " : "FAIL ");
        Console.WriteLine(name);
        if (!ok)
            s_failures++;
    }

    private static string CommandLine()
    {
        BootInfo* bi = Guest.BootInfo;
        if (bi->CommandLine == 0 || bi->CommandLineLength == 0)
            return "";
        return new string((sbyte*)bi->CommandLine, 0, (int)bi->CommandLineLength);
    }

    private static void Move(ref Point p, int by)
    {
        p.X += by;
        p.Y += by;
    }

    private static int Sum(int[] values)
    {
        int total = 0;
        foreach (int v in values)
            total += v;
        return total;
    }

    private static T Max<T>(T a, T b) where T : IComparable<T> => a.CompareTo(b) >= 0 ? a : b;

    private static int Add(int a, int b) => a + b;

    private static int Classify(HypercallCode code)
    {
        switch (code)
        {
            case HypercallCode.Version:
            case HypercallCode.Features:
                return 0;
            case HypercallCode.ConsoleWrite:
            case HypercallCode.DebugWrite:
                return 1;
            default:
                return 2;
        }
    }
}

internal struct Point
{
    public int X;
    public int Y;

    public Point(int x, int y)
    {
        X = x;
        Y = y;
    }

    public readonly int LengthSquared() => X * X + Y * Y;
}

internal abstract class Animal
{
    public abstract int Legs { get; }

    public virtual string Describe() => "an animal";
}

internal sealed class Dog : Animal
{
    public Dog(string name) => Name = name;

    public string Name { get; }

    public override int Legs => 4;

    public override string Describe() => Name + " barks";
}

internal sealed class Bird : Animal
{
    public override int Legs => 2;

    public override string Describe() => "a bird sings";
}

// A small generic container: no GC, so it never shrinks; grows by allocating a new array.
internal sealed class Stack<T>
{
    private T[] _items;

    public Stack(int capacity) => _items = new T[capacity];

    public int Count { get; private set; }

    public void Push(T item)
    {
        if (Count == _items.Length)
        {
            T[] bigger = new T[_items.Length * 2];
            for (int i = 0; i < Count; i++)
                bigger[i] = _items[i];
            _items = bigger;
        }
        _items[Count++] = item;
    }

    public T Pop() => _items[--Count];
}

internal interface IShape
{
    int Area();
}

internal sealed class Square : IShape
{
    private readonly int _side;
    public Square(int side) => _side = side;
    public int Area() => _side * _side;
}

internal sealed class Rect : IShape
{
    private readonly int _w, _h;
    public Rect(int w, int h) { _w = w; _h = h; }
    public int Area() => _w * _h;
}
