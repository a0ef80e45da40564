using System.Collections;
using MessagePack;

namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>
/// A function of the host that sandboxed guests may call (<c>pv_host_call</c>): a name and a handler whose arguments
/// and result travel as MessagePack. Made by <see cref="HostFunctionCollection"/>'s <c>Add</c> methods or
/// <c>AddParavirt().AddHostFunction(...)</c>.
/// </summary>
public sealed class HostFunction
{
    private readonly Func<ReadOnlyMemory<byte>, MessagePackSerializerOptions, byte[]> _invoke;

    private HostFunction(string name, Func<ReadOnlyMemory<byte>, MessagePackSerializerOptions, byte[]> invoke)
    {
        ValidateName(name);
        Name = name;
        _invoke = invoke;
    }

    /// <summary>The name guests call it by (1 to 47 bytes of UTF-8).</summary>
    public string Name { get; }

    /// <summary>
    /// A function over raw MessagePack: <paramref name="handler"/> gets the arguments array exactly as the guest sent it
    /// (already validated) and returns one MessagePack value.
    /// </summary>
    public static HostFunction FromRaw(string name, Func<ReadOnlyMemory<byte>, byte[]> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return new HostFunction(name, (args, _) => handler(args));
    }

    /// <summary>A function of no arguments.</summary>
    public static HostFunction From<TResult>(string name, Func<TResult> handler) =>
        Typed(name, handler, 0, (ref MessagePackReader r, MessagePackSerializerOptions o) => handler());

    /// <summary>A function of one argument.</summary>
    public static HostFunction From<T1, TResult>(string name, Func<T1, TResult> handler) =>
        Typed(name, handler, 1, (ref MessagePackReader r, MessagePackSerializerOptions o) => handler(Argument<T1>(ref r, o, name, 1)));

    /// <summary>A function of two arguments.</summary>
    public static HostFunction From<T1, T2, TResult>(string name, Func<T1, T2, TResult> handler) =>
        Typed(name, handler, 2, (ref MessagePackReader r, MessagePackSerializerOptions o) =>
            handler(Argument<T1>(ref r, o, name, 1), Argument<T2>(ref r, o, name, 2)));

    /// <summary>A function of three arguments.</summary>
    public static HostFunction From<T1, T2, T3, TResult>(string name, Func<T1, T2, T3, TResult> handler) =>
        Typed(name, handler, 3, (ref MessagePackReader r, MessagePackSerializerOptions o) =>
            handler(Argument<T1>(ref r, o, name, 1), Argument<T2>(ref r, o, name, 2), Argument<T3>(ref r, o, name, 3)));

    /// <summary>Reads the arguments of a typed call from the reader (in order, left to right) and runs the handler.</summary>
    private delegate TResult TypedCall<TResult>(ref MessagePackReader reader, MessagePackSerializerOptions options);

    /// <summary>
    /// What every typed <c>From</c> shares: the arguments array must have <paramref name="count"/> elements, and the
    /// handler's result goes back as one MessagePack value.
    /// </summary>
    private static HostFunction Typed<TResult>(string name, Delegate handler, int count, TypedCall<TResult> call)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return new HostFunction(name, (args, o) =>
        {
            var reader = new MessagePackReader(args);
            ExpectArguments(ref reader, count, name);
            return MessagePackSerializer.Serialize(call(ref reader, o), o);
        });
    }

    /// <summary>Runs the handler: arguments array in, one MessagePack value out.</summary>
    /// <exception cref="HostFunctionArgumentException">The arguments do not fit the handler's parameters.</exception>
    internal byte[] Invoke(ReadOnlyMemory<byte> arguments, MessagePackSerializerOptions options) => _invoke(arguments, options);

    private static void ExpectArguments(ref MessagePackReader reader, int count, string name)
    {
        int actual = reader.ReadArrayHeader();
        if (actual != count)
        {
            throw new HostFunctionArgumentException($"host function '{name}' takes {count} argument(s), the guest passed {actual}");
        }
    }

    private static T Argument<T>(ref MessagePackReader reader, MessagePackSerializerOptions options, string name, int index)
    {
        try
        {
            return MessagePackSerializer.Deserialize<T>(ref reader, options);
        }
        catch (MessagePackSerializationException ex)
        {
            throw new HostFunctionArgumentException($"argument {index} of host function '{name}' is not a {typeof(T).Name}: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
    }

    internal static void ValidateName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        int bytes = System.Text.Encoding.UTF8.GetByteCount(name);
        if (bytes > Abi.SandboxConstants.NameMax)
        {
            throw new ArgumentException($"function name '{name}' is {bytes} bytes of UTF-8; at most {Abi.SandboxConstants.NameMax} are allowed", nameof(name));
        }
    }
}

/// <summary>The guest's arguments do not fit a host function's parameters (the guest gets <see cref="Abi.HypercallStatus.Invalid"/> and the message).</summary>
public sealed class HostFunctionArgumentException : Exception
{
    /// <summary>Creates the exception.</summary>
    public HostFunctionArgumentException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public HostFunctionArgumentException() { }
    /// <summary>Creates the exception.</summary>
    public HostFunctionArgumentException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The host functions of a sandbox (or of every sandbox an application makes, through DI). Names are unique.</summary>
public sealed class HostFunctionCollection : IEnumerable<HostFunction>
{
    private readonly Dictionary<string, HostFunction> _functions = new(StringComparer.Ordinal);

    /// <summary>Number of functions.</summary>
    public int Count => _functions.Count;

    /// <summary>Adds <paramref name="function"/>.</summary>
    /// <exception cref="ArgumentException">A function of that name is already there.</exception>
    public HostFunctionCollection Add(HostFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        if (!_functions.TryAdd(function.Name, function))
        {
            throw new ArgumentException($"host function '{function.Name}' is added twice", nameof(function));
        }
        return this;
    }

    /// <summary>Adds a function of no arguments.</summary>
    public HostFunctionCollection Add<TResult>(string name, Func<TResult> handler) => Add(HostFunction.From(name, handler));

    /// <summary>Adds a function of one argument.</summary>
    public HostFunctionCollection Add<T1, TResult>(string name, Func<T1, TResult> handler) => Add(HostFunction.From(name, handler));

    /// <summary>Adds a function of two arguments.</summary>
    public HostFunctionCollection Add<T1, T2, TResult>(string name, Func<T1, T2, TResult> handler) => Add(HostFunction.From(name, handler));

    /// <summary>Adds a function of three arguments.</summary>
    public HostFunctionCollection Add<T1, T2, T3, TResult>(string name, Func<T1, T2, T3, TResult> handler) => Add(HostFunction.From(name, handler));

    /// <summary>Finds a function by name.</summary>
    public bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out HostFunction? function) => _functions.TryGetValue(name, out function);

    /// <inheritdoc/>
    public IEnumerator<HostFunction> GetEnumerator() => _functions.Values.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
