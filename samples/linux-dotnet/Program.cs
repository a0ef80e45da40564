// linux-dotnet: an ordinary .NET console app (full BCL: generics, collections, LINQ, exceptions, async/await,
// threads, the GC, FileStream), published with NativeAOT as a static Linux executable that runs unchanged as a
// Paravirt guest on the Linux personality and natively. Its output depends only on its arguments, environment and
// the disk file, so the tests compare the two runs byte for byte.
//
// The disk: the path in DISK (the guest: /dev/disk0, a 1 MiB block device; natively: a 1 MiB file).
// `linux-dotnet hypercall` instead calls the host's user-defined hypercalls 0x1000 and 0x1001 (Paravirt.Guest.Linux).

using System.Runtime.CompilerServices;
using System.Text;
using Paravirt.Guest.Linux;

if (args is ["hypercall"])
{
    Console.WriteLine($"on paravirt: {(Hypercall.IsAvailable ? "yes" : "no")}");
    Console.WriteLine($"hypercall 0x1000(20, 2) = {Hypercall.Call(0x1000, 20, 2)}");
    byte[] text = Encoding.ASCII.GetBytes("from .NET to the host");
    long n = Hypercall.Call(0x1001, text);
    Console.WriteLine($"hypercall 0x1001 = {n} \"{Encoding.ASCII.GetString(text)}\"");
    return 0;
}

Console.WriteLine($"linux-dotnet: {args.Length} argument(s): {string.Join(' ', args.Select(a => $"[{a}]"))}");
Console.WriteLine($"environment: PARAVIRT_SAMPLE={Environment.GetEnvironmentVariable("PARAVIRT_SAMPLE") ?? "(unset)"}");

// generics, Dictionary, LINQ, string formatting, Math
var squares = new Dictionary<string, int>();
for (int i = 0; i < 100; i++)
{
    squares[$"k{i}"] = i * i;
}
var evens = squares.Where(kv => kv.Value % 2 == 0).OrderByDescending(kv => kv.Value).Take(3).Select(kv => kv.Key).ToList();
Console.WriteLine($"dictionary: {squares.Count} entries, sum {squares.Values.Sum()}, largest even squares {string.Join(",", evens)}");
Console.WriteLine($"math: sqrt(2) = {Math.Sqrt(2.0):F10}, pi = {Math.PI:F8}, 1e6/7 = {1e6 / 7:N3}, 0.1+0.2 = {0.1 + 0.2:R}");
Console.WriteLine($"generic: max {Max([3, 17, 5])} / {Max(["pear", "apple", "zucchini"])}");

// exceptions thrown and caught, with a finally and a filter
try
{
    Throw(3);
}
catch (InvalidOperationException e) when (e.Message.Contains("depth 0", StringComparison.Ordinal))
{
    Console.WriteLine($"exception: caught {e.GetType().Name}: {e.Message}");
}
finally
{
    Console.WriteLine("exception: finally ran");
}

// a null dereference becomes a NullReferenceException (a SIGSEGV the runtime turns into one)
try
{
    Console.WriteLine(Length(null));
}
catch (NullReferenceException)
{
    Console.WriteLine("null dereference: caught NullReferenceException");
}

// async/await with Task.Delay, and a thread
int before = Environment.CurrentManagedThreadId;
await Task.Delay(20);
string afterDelay = await Task.Run(async () =>
{
    await Task.Delay(10);
    return "task result";
});
Console.WriteLine($"async: awaited Task.Delay and {afterDelay}");

int threadSum = 0;
var thread = new Thread(() =>
{
    for (int i = 1; i <= 1000; i++)
    {
        threadSum += i;
    }
}) { Name = "worker" };
thread.Start();
thread.Join();
Console.WriteLine($"thread: joined, sum {threadSum}");

var results = await Task.WhenAll(Enumerable.Range(1, 8).Select(n => Task.Run(() => Enumerable.Range(1, n * 1000).Sum(x => (long)x))));
Console.WriteLine($"tasks: {results.Length} done, total {results.Sum()}");

// the GC under allocation pressure
WeakReference weak = AllocateGarbage();
GC.Collect();
GC.WaitForPendingFinalizers();
GC.Collect();
var keep = new List<byte[]>();
long allocated = 0;
for (int i = 0; i < 2000; i++)
{
    byte[] b = new byte[(i % 50 + 1) * 1024];
    allocated += b.Length;
    if (i % 100 == 0)
    {
        keep.Add(b);
    }
}
GC.Collect();
Console.WriteLine($"gc: {allocated / 1024} KiB allocated, {keep.Count} arrays kept, weak reference {(weak.IsAlive ? "ALIVE" : "collected")}");

// FileStream on the disk
string? disk = Environment.GetEnvironmentVariable("DISK");
if (disk is not null)
{
    using var fs = new FileStream(disk, FileMode.Open, FileAccess.ReadWrite, FileShare.None, bufferSize: 4096);
    byte[] pattern = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 4096).Select(i => (char)('a' + i % 26))));
    fs.Seek(8192, SeekOrigin.Begin);
    for (int i = 0; i < 16; i++)
    {
        fs.Write(pattern);
    }
    fs.Flush(flushToDisk: true);
    fs.Seek(8192 + 1000, SeekOrigin.Begin);
    byte[] back = new byte[64 * 1024];
    int read = fs.ReadAtLeast(back, back.Length, throwOnEndOfStream: false);
    long checksum = back.Take(read).Select((b, i) => (long)b * (i % 251 + 1)).Sum();
    Console.WriteLine($"disk: length {fs.Length}, read {read} bytes back, checksum {checksum}, text \"{Encoding.ASCII.GetString(back, 0, 12)}\"");
}
else
{
    Console.WriteLine("disk: DISK is not set");
}

return 5;

static T Max<T>(IEnumerable<T> items) where T : IComparable<T> => items.Aggregate((a, b) => a.CompareTo(b) >= 0 ? a : b);

[MethodImpl(MethodImplOptions.NoInlining)]
static void Throw(int depth)
{
    if (depth == 0)
    {
        throw new InvalidOperationException($"thrown at depth {depth}");
    }
    Throw(depth - 1);
}

[MethodImpl(MethodImplOptions.NoInlining)]
static int Length(string? s) => s!.Length;

[MethodImpl(MethodImplOptions.NoInlining)]
static WeakReference AllocateGarbage() => new(new byte[100_000]);
