namespace Paravirt.Fuzz;

/// <summary>
/// One fuzz target: <see cref="Run"/> takes one input and returns normally for every input the surface must accept
/// or refuse cleanly; a bug (an escaped host exception, a broken invariant such as a frame delivered to the wrong VM)
/// throws, which afl-fuzz records as a crash. A harness is reused for many inputs and resets what it touches.
/// </summary>
internal abstract class Harness : IDisposable
{
    public abstract void Run(ReadOnlySpan<byte> data);

    /// <summary>How many times the target was exercised past input decoding (a smoke run checks the harness is not hollow).</summary>
    public long Exercised { get; protected set; }

    public virtual void Dispose()
    {
    }

    /// <summary>Every harness, by the name the campaign script and the smoke tests use.</summary>
    public static IReadOnlyDictionary<string, Func<Harness>> All { get; } = new Dictionary<string, Func<Harness>>(StringComparer.Ordinal)
    {
        ["elf"] = () => new Harnesses.ElfHarness(),
        ["hypercalls"] = () => new Harnesses.HypercallHarness(),
        ["console"] = () => new Harnesses.ConsoleHarness(),
        ["block"] = () => new Harnesses.BlockHarness(),
        ["net"] = () => new Harnesses.NetHarness(),
        ["switch"] = () => new Harnesses.SwitchHarness(),
        ["cli"] = () => new Harnesses.CliHarness(),
        ["emulator"] = () => new Harnesses.EmulatorDifferentialHarness(),
        ["calls"] = () => new Harnesses.CallsHarness(),
        ["gdb"] = () => new Harnesses.GdbHarness(),
    };
}

/// <summary>A broken invariant: a bug the harness found (not an input the surface refused).</summary>
internal sealed class FuzzFindingException(string message) : Exception(message)
{
    public FuzzFindingException() : this("fuzz finding") { }

    public FuzzFindingException(string message, Exception inner) : this(message + ": " + inner.Message) { }
}

/// <summary>Reads structured values from a fuzz input; past the end it yields zeros (an input is never "too short").</summary>
internal ref struct FuzzReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _pos;

    public readonly int Remaining => Math.Max(0, _data.Length - _pos);

    public readonly bool AtEnd => _pos >= _data.Length;

    public byte U8() => _pos < _data.Length ? _data[_pos++] : (byte)0;

    public ushort U16() => (ushort)(U8() | (U8() << 8));

    public uint U32() => U16() | ((uint)U16() << 16);

    public ulong U64() => U32() | ((ulong)U32() << 32);

    /// <summary>Up to <paramref name="max"/> bytes (fewer at the end of the input).</summary>
    public ReadOnlySpan<byte> Bytes(int max)
    {
        int n = Math.Min(max, Remaining);
        ReadOnlySpan<byte> s = _data.Slice(_pos, n);
        _pos += n;
        return s;
    }

    /// <summary>A value a hostile guest would pass: small, near a boundary, an address in memory, or anything.</summary>
    public ulong Interesting(ulong memorySize)
    {
        byte kind = U8();
        return (kind & 7) switch
        {
            0 => U8(),
            1 => U32() % memorySize,
            2 => memorySize - (ulong)(U8() + 1),
            3 => (U32() % memorySize) & ~0xFFFUL,
            4 => ulong.MaxValue - U8(),
            5 => 1UL << (U8() & 63),
            6 => U16(),
            _ => U64(),
        };
    }
}
