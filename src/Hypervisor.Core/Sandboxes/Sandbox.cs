using System.Buffers;
using System.Diagnostics;
using MessagePack;
using Microsoft.Extensions.Logging.Abstractions;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Backends.Whp;

namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>
/// A guest made once and called many times: an image that declares guest functions (<c>PV_GUEST_FUNCTION</c>) is
/// initialized up to its ready point (<c>pv_sandbox_serve</c>), then <see cref="Call{TResult}(string, object?[])"/> runs one function per
/// call with MessagePack arguments and result, while the guest may call the host's functions. <see cref="Snapshot"/>
/// freezes it between calls and <see cref="Restore"/> returns to a snapshot by copying only the pages that changed;
/// new sandboxes can be made from a snapshot without initializing again, sharing its memory copy-on-write.
/// </summary>
/// <remarks>
/// Threading: one call at a time per sandbox (a second concurrent call, or a call from inside one of its host
/// functions, throws <see cref="InvalidOperationException"/>); the vCPU runs on the calling thread. Any number of
/// sandboxes may run in parallel on different threads, each with its own memory, vCPU and devices.
/// Failure: a fault, stack overflow, timeout, exhausted budget, cancellation, exit or protocol violation during a
/// call throws <see cref="SandboxCallFailedException"/> and poisons the sandbox: calls throw
/// <see cref="SandboxPoisonedException"/> until <see cref="Restore"/> (or automatically with
/// <see cref="SandboxOptions.RestoreAfterEachCall"/>). An error the guest function returns on purpose throws
/// <see cref="GuestFunctionException"/> and leaves the sandbox usable.
/// </remarks>
public sealed partial class Sandbox : IDisposable
{
    private static readonly Lazy<(BackendSelector Selector, HypercallDispatcher Dispatcher)> Standalone = new(() =>
        (new BackendSelector([new KvmBackend(), new WhpBackend(), new EmulatorBackend()]),
         new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls(), new SandboxHypercalls()])));

    private readonly GuestMachine _machine;
    private readonly SnapshotMemory _snapshots;
    private readonly SandboxOptions _options;
    private readonly HostFunctionCollection _hostFunctions;
    private readonly HashSet<string> _functions;
    private readonly VirtualDevice[] _devices;
    private readonly ILogger _logger;
    private readonly Channel _channel;
    private readonly MessagePackSerializerOptions _serializer;
    private readonly ArrayBufferWriter<byte> _request = new(256);
    private SandboxSnapshot? _initial;
    private bool _ownsInitial;
    private int _busy;
    private int _callThread;
    private volatile bool _disposing;
    private readonly CancellationTokenSource _disposal = new();
    private SandboxState _state = SandboxState.Ready;
    private string? _poisonReason;

    private Sandbox(GuestImage image, SandboxOptions options, BackendChoice choice, HypercallDispatcher dispatcher,
        IEnumerable<HostFunction> sharedFunctions, IEnumerable<IDeviceFactory> sharedDevices, ParavirtMetrics? metrics,
        SandboxSnapshot? from)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(options);
        if (from is not null)
        {
            ObjectDisposedException.ThrowIf(from.Memory.IsDisposed, from);
        }
        _options = options;
        _serializer = options.SerializerOptions ?? SandboxOptions.DefaultSerializerOptions;
        _logger = options.LoggerFactory?.CreateLogger<Sandbox>() ?? NullLogger<Sandbox>.Instance;
        _hostFunctions = [];
        foreach (HostFunction f in sharedFunctions)
        {
            _hostFunctions.Add(f);
        }
        foreach (HostFunction f in options.HostFunctions)
        {
            _hostFunctions.Add(f);
        }
        if (image.Functions.Count == 0)
        {
            throw new SandboxInitializationException("the image declares no guest functions (PV_GUEST_FUNCTION): it is not a sandbox guest; run it with GuestRunner or `paravirt run`");
        }
        _functions = new HashSet<string>(image.Functions, StringComparer.Ordinal);
        _channel = new Channel(this);

        var devices = new List<VirtualDevice>();
        GuestMachine? machine = null;
        try
        {
            foreach (Func<VirtualDevice> factory in options.Devices)
            {
                devices.Add(factory() ?? throw new InvalidOperationException("a sandbox device factory returned null"));
            }
            foreach (IDeviceFactory factory in sharedDevices)
            {
                devices.Add(factory.Create());
            }
            var runOptions = new GuestRunOptions
            {
                Backend = choice.Backend.Name,
                MemorySize = options.MemorySize,
                ConsoleOutput = options.ConsoleOutput,
                Devices = devices,
                CommandLine = options.CommandLine,
                Limits = options.Limits,
            };
            machine = GuestMachine.Create(image, runOptions, choice, dispatcher, _logger, metrics, _channel, from?.Memory);
            _machine = machine;
            _devices = [.. devices];
            _snapshots = new SnapshotMemory(machine.Memory, from?.Memory);
            if (from is null)
            {
                Initialize();
            }
            else
            {
                LoadSnapshotState(from);
            }
            if (options.RestoreAfterEachCall)
            {
                _ownsInitial = from is null;
                _initial = from ?? Snapshot();
            }
        }
        catch
        {
            _snapshots?.Dispose();
            machine?.Dispose();
            devices.ForEach(static d => d.Dispose());
            throw;
        }
    }

    /// <summary>Makes a sandbox from the guest image at <paramref name="imagePath"/> and runs its initialization (no DI needed; the backends and hypercalls are the built-in ones).</summary>
    /// <exception cref="ImageFormatException">The image cannot be read or used.</exception>
    /// <exception cref="BackendUnavailableException">The backend cannot run here.</exception>
    /// <exception cref="SandboxInitializationException">The guest did not reach its ready point.</exception>
    public static Sandbox Create(string imagePath, SandboxOptions? options = null) =>
        Create(ElfLoader.LoadFile(imagePath, AbiVersion.Current), options);

    /// <summary>Makes a sandbox from <paramref name="image"/> and runs its initialization.</summary>
    public static Sandbox Create(GuestImage image, SandboxOptions? options = null)
    {
        options ??= new SandboxOptions();
        (BackendSelector selector, HypercallDispatcher dispatcher) = Standalone.Value;
        return new Sandbox(image, options, selector.Select(options.Backend), dispatcher, [], [], null, null);
    }

    /// <summary>Makes a sandbox from <paramref name="snapshot"/>: its memory shares the snapshot's pages copy-on-write and the guest continues from the snapshot's state, without initializing again.</summary>
    public static Sandbox Create(SandboxSnapshot snapshot, SandboxOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        options ??= new SandboxOptions { MemorySize = snapshot.MemorySize };
        (BackendSelector selector, HypercallDispatcher dispatcher) = Standalone.Value;
        return new Sandbox(snapshot.Image, options with { MemorySize = snapshot.MemorySize }, selector.Select(options.Backend), dispatcher, [], [], null, snapshot);
    }

    /// <summary>For <see cref="SandboxFactory"/>: a sandbox with the application's backends, hypercalls, host functions and devices.</summary>
    internal static Sandbox Create(GuestImage image, SandboxOptions options, BackendChoice choice, HypercallDispatcher dispatcher,
        IEnumerable<HostFunction> hostFunctions, IEnumerable<IDeviceFactory> devices, ParavirtMetrics? metrics, SandboxSnapshot? from) =>
        new(image, from is null ? options : options with { MemorySize = from.MemorySize }, choice, dispatcher, hostFunctions, devices, metrics, from);

    /// <summary>The guest functions the image declares, in the order of its notes.</summary>
    public IReadOnlyList<string> Functions => _machine.Image.Functions;

    /// <summary>The backend running the sandbox.</summary>
    public string Backend => _machine.BackendName;

    /// <summary>Whether the sandbox accepts calls.</summary>
    public SandboxState State => _state;

    /// <summary>Why the sandbox is poisoned (null otherwise).</summary>
    public string? PoisonReason => _poisonReason;

    /// <summary>The sandbox's devices (created for it, disposed with it).</summary>
    public IReadOnlyList<VirtualDevice> Devices => _devices;

    /// <summary>Exit and hypercall counts over the sandbox's life.</summary>
    public RunStatistics Statistics => _machine.Statistics;

    /// <summary>Pages the last restore copied (for tests and benchmarks).</summary>
    internal int LastRestoredPages => _snapshots.LastRestoredPages;

    internal GuestMachine Machine => _machine;

    /// <summary>True while a call (or a snapshot or restore) is running (for tests).</summary>
    internal bool IsBusy => Volatile.Read(ref _busy) != 0;

    /// <summary>
    /// Calls guest function <paramref name="function"/> with <paramref name="args"/> (each serialized with
    /// <see cref="SandboxOptions.SerializerOptions"/> by its run-time type) and returns its result as
    /// <typeparamref name="TResult"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The image declares no such function, or the arguments exceed the guest's call buffer.</exception>
    /// <exception cref="GuestFunctionException">The guest function returned an error (the sandbox stays usable).</exception>
    /// <exception cref="SandboxCallFailedException">The call failed; the sandbox is poisoned.</exception>
    /// <exception cref="SandboxPoisonedException">An earlier call poisoned the sandbox.</exception>
    /// <exception cref="InvalidOperationException">Another call is running on this sandbox.</exception>
    public TResult Call<TResult>(string function, params object?[] args) => Call<TResult>(function, args, CancellationToken.None);

    /// <summary>As <see cref="Call{TResult}(string, object?[])"/>, cancellable (cancellation poisons the sandbox).</summary>
    public TResult Call<TResult>(string function, object?[] args, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        return CallTyped<object?[], TResult>(function, args, static (ref MessagePackWriter w, object?[] a, MessagePackSerializerOptions o) =>
        {
            w.WriteArrayHeader(a.Length);
            foreach (object? arg in a)
            {
                if (arg is null)
                {
                    w.WriteNil();
                }
                else
                {
                    MessagePackSerializer.Serialize(arg.GetType(), ref w, arg, o);
                }
            }
        }, cancellationToken);
    }

    /// <summary>
    /// Calls a guest function of one argument with static types: serialization goes through
    /// <c>MessagePackSerializer.Serialize&lt;T1&gt;</c>, so with an ahead-of-time resolver (MessagePack's <c>mpc</c>)
    /// it needs no run-time code generation (NativeAOT).
    /// </summary>
    public TResult Call<T1, TResult>(string function, T1 arg1, CancellationToken cancellationToken = default) =>
        CallTyped<T1, TResult>(function, arg1, static (ref MessagePackWriter w, T1 a, MessagePackSerializerOptions o) =>
        {
            w.WriteArrayHeader(1);
            MessagePackSerializer.Serialize(ref w, a, o);
        }, cancellationToken);

    /// <summary>Calls a guest function of two arguments with static types (as <see cref="Call{T1, TResult}"/>).</summary>
    public TResult Call<T1, T2, TResult>(string function, T1 arg1, T2 arg2, CancellationToken cancellationToken = default) =>
        CallTyped<(T1, T2), TResult>(function, (arg1, arg2), static (ref MessagePackWriter w, (T1, T2) a, MessagePackSerializerOptions o) =>
        {
            w.WriteArrayHeader(2);
            MessagePackSerializer.Serialize(ref w, a.Item1, o);
            MessagePackSerializer.Serialize(ref w, a.Item2, o);
        }, cancellationToken);

    private delegate void ArgumentWriter<TState>(ref MessagePackWriter writer, TState state, MessagePackSerializerOptions options);

    /// <summary>One call whose arguments are serialized straight behind the envelope and whose result is decoded from the sandbox's own result buffer (no intermediate copies).</summary>
    private TResult CallTyped<TState, TResult>(string function, TState state, ArgumentWriter<TState> write, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(function);
        EnterCall(function);
        try
        {
            ArrayBufferWriter<byte> request = BeginRequest(function);
            var writer = new MessagePackWriter(request);
            write(ref writer, state, _serializer);
            writer.Flush();
            return Decode<TResult>(function, Invoke(function, cancellationToken));
        }
        finally
        {
            ExitCall();
        }
    }

    /// <summary>Runs <see cref="Call{TResult}(string, object?[], CancellationToken)"/> on a thread-pool thread.</summary>
    public Task<TResult> CallAsync<TResult>(string function, object?[] args, CancellationToken cancellationToken = default) =>
        Task.Run(() => Call<TResult>(function, args, cancellationToken), CancellationToken.None);

    /// <summary>
    /// Calls guest function <paramref name="function"/> with an already serialized MessagePack arguments array and
    /// returns its result as raw, validated MessagePack (one value).
    /// </summary>
    public byte[] CallRaw(string function, ReadOnlySpan<byte> argumentsArray, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(function);
        EnterCall(function);
        try
        {
            BeginRequest(function).Write(argumentsArray);
            return Invoke(function, cancellationToken).ToArray();
        }
        finally
        {
            ExitCall();
        }
    }

    /// <summary>Ends a call: restores the initial snapshot when asked to, then lets the next call in.</summary>
    private void ExitCall()
    {
        if (_options.RestoreAfterEachCall && _initial is not null && !_disposing)
        {
            RestoreCore(_initial);
        }
        Volatile.Write(ref _callThread, 0);
        Volatile.Write(ref _busy, 0);
    }

    /// <summary>The request buffer, holding the envelope's header <c>[name, </c>; the arguments array follows.</summary>
    private ArrayBufferWriter<byte> BeginRequest(string function)
    {
        ArrayBufferWriter<byte> request = _request;
        request.ResetWrittenCount();
        var writer = new MessagePackWriter(request);
        writer.WriteArrayHeader(2);
        writer.Write(function);
        writer.Flush();
        return request;
    }

    /// <summary>Freezes the sandbox between calls (memory, vCPU, session, call buffer). Cost grows with the pages changed since the last snapshot or restore.</summary>
    /// <exception cref="InvalidOperationException">A call is running, or the sandbox is poisoned.</exception>
    /// <exception cref="Devices.DeviceSnapshotException">An attached device does not support snapshots (<see cref="Devices.VirtualDevice.SupportsSnapshots"/>); nothing changed.</exception>
    public SandboxSnapshot Snapshot()
    {
        ObjectDisposedException.ThrowIf(_state == SandboxState.Disposed, this);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException("a call is running on this sandbox: snapshot between calls");
        }
        try
        {
            if (_state == SandboxState.Poisoned)
            {
                throw new InvalidOperationException($"the sandbox is poisoned ({_poisonReason}): restore a snapshot before taking one");
            }
            // Devices first: one that cannot be snapshotted refuses before the memory snapshot moves the dirty-page base.
            Devices.DeviceState[] devices = [.. _devices.Select(static d => d.Save())];
            _machine.Vm.CollectDirtyPages();
            VcpuState vcpu = _machine.Vcpu.GetState();
            MemorySnapshot memory = _snapshots.Take(_machine.TracksDirtyPages);
            return new SandboxSnapshot(_machine.Image, _machine.Memory.Size, memory, vcpu, _machine.Session.SaveState(), _channel.CallBuffer, _channel.CallBufferSize, devices);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Returns the sandbox to <paramref name="snapshot"/> (of this sandbox or of any sandbox of the same image and memory size) and clears a poisoned state. Copies only the pages changed since the last snapshot or restore.</summary>
    /// <exception cref="ArgumentException">The snapshot is of another image or memory size.</exception>
    /// <exception cref="InvalidOperationException">A call is running.</exception>
    public void Restore(SandboxSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ObjectDisposedException.ThrowIf(_state == SandboxState.Disposed, this);
        ObjectDisposedException.ThrowIf(snapshot.Memory.IsDisposed, snapshot);
        if (!ReferenceEquals(snapshot.Image, _machine.Image) || snapshot.MemorySize != _machine.Memory.Size)
        {
            throw new ArgumentException("the snapshot is of another image or memory size", nameof(snapshot));
        }
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException("a call is running on this sandbox: restore between calls");
        }
        try
        {
            RestoreCore(snapshot);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    private void RestoreCore(SandboxSnapshot snapshot)
    {
        _machine.Vm.CollectDirtyPages();
        _snapshots.Restore(snapshot.Memory, _machine.TracksDirtyPages);
        LoadSnapshotState(snapshot);
    }

    private void LoadSnapshotState(SandboxSnapshot snapshot)
    {
        if (snapshot.Devices.Count != _devices.Length)
        {
            throw new ArgumentException($"the snapshot has {snapshot.Devices.Count} device(s), this sandbox {_devices.Length}: give it the same devices", nameof(snapshot));
        }
        for (int i = 0; i < _devices.Length; i++)
        {
            _devices[i].Load(snapshot.Devices[i], _machine.Session);
        }
        _machine.Vcpu.SetState(snapshot.Vcpu);
        _machine.Session.LoadState(snapshot.Session);
        _channel.Load(snapshot.CallBuffer, snapshot.CallBufferSize);
        _state = SandboxState.Ready;
        _poisonReason = null;
    }

    /// <summary>
    /// Stops the sandbox and releases its memory, vCPU and devices. A call running on another thread is interrupted
    /// (it fails with <see cref="SandboxFailure.Canceled"/>) and waited for first, so nothing runs on freed memory.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called from inside one of this sandbox's calls (a host function).</exception>
    public void Dispose()
    {
        if (_state == SandboxState.Disposed)
        {
            return;
        }
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            if (Volatile.Read(ref _callThread) == Environment.CurrentManagedThreadId)
            {
                throw new InvalidOperationException("a sandbox cannot be disposed from inside one of its own calls");
            }
            _disposing = true;
            _disposal.Cancel(); // kicks the vCPU: the running call ends as Canceled
            var wait = new SpinWait();
            while (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
            {
                wait.SpinOnce(sleep1Threshold: 20);
            }
        }
        _state = SandboxState.Disposed;
        _disposal.Dispose();
        if (_ownsInitial)
        {
            _initial?.Dispose();
        }
        _snapshots.Dispose();
        _machine.Dispose();
        foreach (VirtualDevice d in _devices)
        {
            d.Dispose();
        }
    }

    // ---- calls ----

    private void Initialize()
    {
        long started = Stopwatch.GetTimestamp();
        MachineStop end = _machine.Run(CancellationToken.None, _options.InitializationTimeout, null, "reach its ready point (pv_sandbox_serve)");
        _machine.Drain(end.Outcome, started, _options.InitializationTimeout);
        if (!end.Paused || !_channel.IsReady)
        {
            string why = end.Paused ? _channel.TakeProtocolError() ?? "it paused without registering its call buffer" : end.Message;
            throw new SandboxInitializationException($"the guest did not reach its ready point: {why}");
        }
    }

    private void EnterCall(string function)
    {
        ObjectDisposedException.ThrowIf(_state == SandboxState.Disposed, this);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException("another call is running on this sandbox (one call at a time; use one sandbox per thread)");
        }
        Volatile.Write(ref _callThread, Environment.CurrentManagedThreadId);
        if (_state == SandboxState.Poisoned)
        {
            Volatile.Write(ref _busy, 0);
            throw new SandboxPoisonedException($"the sandbox refuses calls: an earlier call poisoned it ({_poisonReason}); restore a snapshot first");
        }
        if (!_functions.Contains(function))
        {
            Volatile.Write(ref _busy, 0);
            throw new ArgumentException($"the guest declares no function '{function}' (it has: {string.Join(", ", _machine.Image.Functions)})", nameof(function));
        }
    }

    /// <summary>Runs the call in the request buffer; returns the validated result (valid until the next call).</summary>
    private ReadOnlyMemory<byte> Invoke(string function, CancellationToken cancellationToken)
    {
        ReadOnlySpan<byte> call = _request.WrittenSpan;
        if ((uint)call.Length > _channel.CallBufferSize)
        {
            throw new ArgumentException($"the call to '{function}' is {call.Length} bytes; the guest's call buffer holds {_channel.CallBufferSize}");
        }
        _machine.Memory.Write(new GuestAddress(_channel.CallBuffer), call);
        HypercallTrap.Complete(_machine.Vcpu, call.Length);
        if (_options.CallInstructionBudget is ulong budget)
        {
            _machine.Vcpu.SetInstructionBudget(budget);
        }
        _channel.BeginCall();

        long started = Stopwatch.GetTimestamp();
        MachineStop end;
        if (!cancellationToken.CanBeCanceled)
        {
            end = _machine.Run(_disposal.Token, _options.CallTimeout, _options.CallInstructionBudget, "finish the call");
        }
        else
        {
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposal.Token);
            end = _machine.Run(cancel.Token, _options.CallTimeout, _options.CallInstructionBudget, "finish the call");
        }
        // Devices deliver what the call produced and console output reaches its reader (bounded), before the call returns.
        _machine.Drain(end.Outcome, started, _options.CallTimeout);

        if (end.Paused && _channel.TakeProtocolError() is string violation)
        {
            throw Poison(function, SandboxFailure.ProtocolViolation, violation, null);
        }
        if (end.Paused && _channel.TryTakeResult(out long status, out ReadOnlyMemory<byte> payload))
        {
            if (status == 0)
            {
                return payload;
            }
            throw new GuestFunctionException(function, (HypercallStatus)status, DecodeMessage(payload.Span));
        }
        if (end.Paused)
        {
            throw Poison(function, SandboxFailure.ProtocolViolation, "the guest paused without returning from the call", null);
        }
        (SandboxFailure failure, ulong? address) = end.Outcome switch
        {
            RunOutcome.Exited => (SandboxFailure.Exited, (ulong?)null),
            RunOutcome.TimedOut => (SandboxFailure.TimedOut, null),
            RunOutcome.BudgetExhausted => (SandboxFailure.BudgetExhausted, null),
            RunOutcome.Canceled => (SandboxFailure.Canceled, null),
            RunOutcome.BackendFailed => (SandboxFailure.BackendFailed, null),
            _ when end.StackOverflow => (SandboxFailure.StackOverflow, end.FaultAddress),
            _ => (SandboxFailure.Faulted, end.FaultAddress == 0 ? null : end.FaultAddress),
        };
        throw Poison(function, failure, end.Message, address);
    }

    private SandboxCallFailedException Poison(string function, SandboxFailure failure, string message, ulong? address)
    {
        _state = SandboxState.Poisoned;
        _poisonReason = $"{failure} in '{function}': {message}";
        LogPoisoned(_logger, function, failure, message);
        return new SandboxCallFailedException(function, failure, message, address);
    }

    private TResult Decode<TResult>(string function, ReadOnlyMemory<byte> payload)
    {
        try
        {
            return MessagePackSerializer.Deserialize<TResult>(payload, _serializer);
        }
        catch (MessagePackSerializationException ex)
        {
            throw new GuestFunctionException(function, HypercallStatus.Protocol, $"its result is not a {typeof(TResult).Name}: {ex.InnerException?.Message ?? ex.Message}");
        }
    }

    /// <summary>An error message the guest sent: a validated MessagePack str (anything else is shown as such).</summary>
    private static string DecodeMessage(ReadOnlySpan<byte> payload)
    {
        int pos = 0;
        return MessagePackValidator.TryString(payload, ref pos, out ReadOnlySpan<byte> text) && pos == payload.Length
            ? System.Text.Encoding.UTF8.GetString(text)
            : $"(a {payload.Length}-byte message that is not a MessagePack string)";
    }

    [LoggerMessage(EventId = 400, Level = LogLevel.Warning, Message = "sandbox call '{Function}' failed ({Failure}): {Message}; the sandbox is poisoned until restored")]
    private static partial void LogPoisoned(ILogger logger, string function, SandboxFailure failure, string message);

    [LoggerMessage(EventId = 401, Level = LogLevel.Error, Message = "host function '{Name}' threw; the guest gets HostFunctionFailed")]
    private static partial void LogHostFunctionFailed(ILogger logger, Exception exception, string name);

    [LoggerMessage(EventId = 402, Level = LogLevel.Debug, Message = "host function call refused: {Reason}")]
    private static partial void LogHostCallRefused(ILogger logger, string reason);

    /// <summary>
    /// The guest-call hypercalls of this sandbox. Every guest-supplied address and length is checked through
    /// <see cref="GuestMemory"/>'s <c>Try</c> accessors; every payload is copied out once and validated before use.
    /// </summary>
    private sealed class Channel(Sandbox sandbox) : ISandboxChannel
    {
        private bool _inCall;
        private bool _hasResult;
        private long _status;
        private byte[] _result = new byte[256];
        private int _resultLength;
        private string? _protocolError;

        public ulong CallBuffer { get; private set; }
        public uint CallBufferSize { get; private set; }
        public bool IsReady => CallBufferSize != 0;

        public void Load(ulong buffer, uint size)
        {
            CallBuffer = buffer;
            CallBufferSize = size;
            _inCall = false;
            _hasResult = false;
            _protocolError = null;
        }

        public void BeginCall()
        {
            _inCall = true;
            _hasResult = false;
            _protocolError = null;
        }

        public bool TryTakeResult(out long status, out ReadOnlyMemory<byte> payload)
        {
            status = _status;
            payload = _result.AsMemory(0, _resultLength);
            bool had = _hasResult;
            _hasResult = false;
            return had;
        }

        public string? TakeProtocolError()
        {
            string? e = _protocolError;
            _protocolError = null;
            return e;
        }

        private long Violation(string message, GuestSession session)
        {
            _protocolError = message;
            _inCall = false;
            session.PauseRequested = true;
            return (long)HypercallStatus.Protocol;
        }

        public long Ready(in HypercallArgs args, GuestSession session)
        {
            if (IsReady)
            {
                return Violation("the guest called sandbox_ready again after its initialization", session);
            }
            if (args.A2 < SandboxConstants.MinCallBuffer || args.A2 > SandboxConstants.MaxCallBuffer)
            {
                return Violation($"the guest's call buffer of {args.A2} bytes is outside {SandboxConstants.MinCallBuffer}..{SandboxConstants.MaxCallBuffer}", session);
            }
            if (!session.Memory.Contains(new GuestAddress(args.A1), args.A2) || args.A1 < EntryConvention.ImageMinAddress)
            {
                return Violation($"the guest's call buffer 0x{args.A1:x}+0x{args.A2:x} is not inside its memory (above 1 MiB)", session);
            }
            CallBuffer = args.A1;
            CallBufferSize = (uint)args.A2;
            session.PauseRequested = true;
            return 0;
        }

        public long Return(in HypercallArgs args, GuestSession session)
        {
            if (!_inCall)
            {
                return Violation("the guest called sandbox_return outside a call", session);
            }
            long status = unchecked((long)args.A1);
            ulong length = args.A3;
            MessagePackLimits limits = sandbox._options.PayloadLimits;
            if (status > 0)
            {
                return Violation($"sandbox_return status {status} is neither 0 nor a negative status", session);
            }
            if (length > (ulong)limits.MaxBytes)
            {
                return Violation($"the guest's result is {length} bytes, more than the {limits.MaxBytes}-byte limit", session);
            }
            if (!session.Memory.TryGetReadOnlySpan(new GuestAddress(args.A2), length, out ReadOnlySpan<byte> shared))
            {
                return Violation($"the guest's result 0x{args.A2:x}+0x{length:x} is outside its memory", session);
            }
            if (_result.Length < shared.Length)
            {
                _result = new byte[Math.Max(shared.Length, _result.Length * 2)];
            }
            shared.CopyTo(_result); // copied once, then validated: the guest cannot change it under us
            _resultLength = shared.Length;
            MessagePackCheck check = MessagePackValidator.Validate(_result.AsSpan(0, _resultLength), limits);
            if (!check.IsValid)
            {
                return Violation($"the guest's {(status == 0 ? "result" : "error message")} is not valid MessagePack: {check.Message}", session);
            }
            _status = status;
            _hasResult = true;
            _inCall = false;
            session.PauseRequested = true;
            return 0;
        }

        public long HostCall(in HypercallArgs args, GuestSession session)
        {
            MessagePackLimits limits = sandbox._options.PayloadLimits;
            ulong length = args.A2;
            ulong response = args.A3;
            ulong capacity = args.A4;
            if (!session.Memory.Contains(new GuestAddress(response), capacity))
            {
                return (long)HypercallStatus.Fault; // nowhere to put a message
            }
            if (length > (ulong)limits.MaxBytes)
            {
                return Refuse(session, response, capacity, HypercallStatus.TooBig, $"the host-function call is {length} bytes, more than the {limits.MaxBytes}-byte limit");
            }
            if (!session.Memory.TryGetReadOnlySpan(new GuestAddress(args.A1), length, out ReadOnlySpan<byte> shared))
            {
                return (long)HypercallStatus.Fault;
            }
            byte[] request = shared.ToArray(); // copied once, then validated
            MessagePackCheck check = MessagePackValidator.ValidateCall(request, limits, out string name, out int argsOffset, out _);
            if (!check.IsValid)
            {
                return Refuse(session, response, capacity, HypercallStatus.Protocol, $"malformed host-function call: {check.Message}");
            }
            if (!sandbox._hostFunctions.TryGet(name, out HostFunction? function))
            {
                return Refuse(session, response, capacity, HypercallStatus.NotFound, $"the host has no function '{name}'");
            }
            byte[] result;
            try
            {
                result = function.Invoke(request.AsMemory(argsOffset), sandbox._serializer);
            }
            catch (HostFunctionArgumentException ex)
            {
                return Refuse(session, response, capacity, HypercallStatus.Invalid, ex.Message);
            }
#pragma warning disable CA1031 // a host function's bug must reach the guest as an error status, not take the host down
            catch (Exception ex) when (ex is not OutOfMemoryException)
#pragma warning restore CA1031
            {
                LogHostFunctionFailed(sandbox._logger, ex, name);
                return Write(session, response, capacity, HypercallStatus.HostFunctionFailed, $"host function '{name}' failed: {ex.GetType().Name}: {ex.Message}");
            }
            if ((ulong)result.Length > capacity)
            {
                return Refuse(session, response, capacity, HypercallStatus.TooBig, $"the result of host function '{name}' is {result.Length} bytes; the guest's response buffer holds {capacity}");
            }
            session.Memory.Write(new GuestAddress(response), result);
            return result.Length;
        }

        private long Refuse(GuestSession session, ulong response, ulong capacity, HypercallStatus status, string message)
        {
            LogHostCallRefused(sandbox._logger, message);
            return Write(session, response, capacity, status, message);
        }

        /// <summary>Writes <paramref name="message"/> as a MessagePack str (truncated to fit) and returns <paramref name="status"/>.</summary>
        private static long Write(GuestSession session, ulong response, ulong capacity, HypercallStatus status, string message)
        {
            byte[] packed = MessagePackSerializer.Serialize(message, MessagePackSerializerOptions.Standard);
            if ((ulong)packed.Length > capacity)
            {
                int room = (int)Math.Min(capacity, 256);
                packed = room > 5 ? MessagePackSerializer.Serialize(message[..Math.Min(message.Length, room - 5)], MessagePackSerializerOptions.Standard) : [];
                if ((ulong)packed.Length > capacity)
                {
                    packed = [];
                }
            }
            session.Memory.TryWrite(new GuestAddress(response), packed);
            return (long)status;
        }
    }
}
