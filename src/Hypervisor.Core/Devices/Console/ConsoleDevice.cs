using System.Buffers;
using System.IO.Pipelines;

namespace Paravirt.Hypervisor.Devices.Console;

/// <summary>
/// A paravirtual console, as Xen's <c>xencons_interface</c>: the guest shares one <see cref="ConsoleInterface"/> page
/// (its one queue, a region: <see cref="HypercallCode.DeviceAttach"/> or the ABI 1.0 <see cref="HypercallCode.ConsoleAttach"/>) with an output byte ring it produces and an input byte ring the host
/// produces. Output goes to a <see cref="PipeWriter"/>; input comes from a <see cref="PipeReader"/>, is queued
/// (at most <see cref="InputQueueLimit"/> bytes; the reader waits while the queue is full) and copied into the input
/// ring on the vCPU thread when there is room, then the guest's event port is signalled. When the input source ends
/// (and every byte of it is in the ring) the host sets <see cref="ConsoleInputFlags.EndOfInput"/> in the page's
/// <c>in_flags</c> (<see cref="FeatureBits.ConsoleEndOfInput"/>); a console without an input source reads as ended.
/// </summary>
/// <remarks>
/// Indices are validated the hostile way: <c>out_prod - out_cons &gt; OutSize</c> or <c>in_prod - in_cons &gt; InSize</c>
/// breaks the device. The host's own indices (<c>out_cons</c>, <c>in_prod</c>) are kept privately and only written to
/// the page. Output is back-pressured: while the previous flush to the writer is incomplete the host leaves the
/// guest's output in its ring (the guest sees a full ring) and pumps again only when that flush completes, so a slow
/// reader neither blocks nor busies the vCPU thread. The writer's <c>FlushAsync</c> must not block its caller (the
/// pipes of <see cref="PipeWriter.Create(Stream, StreamPipeWriterOptions?)"/> over files, pipes, sockets and the
/// console do not). Output counts against the run's <see cref="Running.GuestLimits.ConsoleOutputLimit"/>.
/// </remarks>
public sealed class ConsoleDevice : VirtualDevice
{
    /// <summary>Input bytes queued on the host before the input reader waits.</summary>
    public const int InputQueueLimit = 64 * 1024;

    private readonly PipeWriter _output;
    private readonly PipeReader? _input;
    private readonly object _inLock = new();
    private readonly byte[] _inQueue = new byte[InputQueueLimit];
    private readonly SemaphoreSlim _inSpace = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _inputTask = Task.CompletedTask;
    private int _inHead;
    private int _inCount;
    private ulong _page;
    private uint _outCons;
    private uint _inProd;
    private Task<FlushResult>? _pendingFlush;
    private bool _outputFailed;
    private volatile bool _inputEnded;
    private bool _endSignalled;
    private long _bytesOut;
    private long _bytesIn;

    /// <summary>Creates a console writing output to <paramref name="output"/> and reading input from <paramref name="input"/>.</summary>
    /// <param name="name">Device name (e.g. "console0").</param>
    /// <param name="output">Receives the guest's output; completed when the device is disposed.</param>
    /// <param name="input">Supplies input, or null for none; completed when the device is disposed.</param>
    public ConsoleDevice(string name, PipeWriter output, PipeReader? input = null)
        : base(name)
    {
        _output = output ?? throw new ArgumentNullException(nameof(output));
        _input = input;
        if (input is not null)
        {
            _inputTask = Task.Run(() => ReadInputAsync(input, _stop.Token));
        }
        else
        {
            _inputEnded = true; // nothing will ever arrive: the guest reads end of input
        }
    }

    /// <summary>Creates a console on streams (e.g. standard output and input).</summary>
    /// <param name="name">Device name.</param>
    /// <param name="output">Receives the guest's output.</param>
    /// <param name="input">Supplies input, or null for none.</param>
    public ConsoleDevice(string name, Stream output, Stream? input = null)
        : this(name, PipeWriter.Create(output ?? throw new ArgumentNullException(nameof(output)), new StreamPipeWriterOptions(leaveOpen: true)),
              input is null ? null : PipeReader.Create(input, new StreamPipeReaderOptions(leaveOpen: true)))
    {
    }

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Console;

    /// <summary>Output bytes taken from the guest.</summary>
    public long BytesOut => Interlocked.Read(ref _bytesOut);

    /// <summary>Input bytes delivered to the guest.</summary>
    public long BytesIn => Interlocked.Read(ref _bytesIn);

    /// <inheritdoc/>
    public override IReadOnlyList<DeviceQueue> Queues { get; } = [DeviceQueue.Region("page", ConsoleInterface.Size)];

    /// <inheritdoc/>
    public override bool SupportsSnapshots => true;

    /// <inheritdoc/>
    protected override HypercallStatus OnActivate(DeviceActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        _page = activation.Address(0).Value;
        _outCons = ReadIndex(activation.Session, ConsoleInterface.OutConsOffset);
        _inProd = ReadIndex(activation.Session, ConsoleInterface.InProdOffset);
        _endSignalled = false;
        WriteIndex(activation.Session, ConsoleInterface.InFlagsOffset, 0);
        return HypercallStatus.Ok;
    }

    /// <inheritdoc/>
    protected override void OnReset() => (_page, _outCons, _inProd, _endSignalled) = (0UL, 0u, 0u, false);

    /// <summary>The page, the host's ring indices and whether the end of input was flagged (the flag lives in the page, so a restore brings back its own).</summary>
    protected override object? SaveState() => IsAttached ? (_page, _outCons, _inProd, _endSignalled) : null;

    /// <inheritdoc/>
    protected override void LoadState(object? state, DeviceActivation? activation) =>
        (_page, _outCons, _inProd, _endSignalled) = state is (ulong page, uint outCons, uint inProd, bool ended) && activation is not null ? (page, outCons, inProd, ended) : (0UL, 0u, 0u, false);

    /// <inheritdoc/>
    protected override void OnNotify(GuestSession session, int queue) => OnPump(session);

    /// <inheritdoc/>
    protected override void OnPump(GuestSession session)
    {
        bool notify = DrainOutput(session);
        if (!IsBroken)
        {
            notify |= FillInput(session);
        }
        if (notify && !IsBroken)
        {
            Notify(session, 0);
        }
    }

    /// <summary>
    /// End of run: let an in-flight flush finish, move the guest's last output, and wait for that flush too, each wait
    /// ending at <paramref name="drainDeadline"/> (what a stalled reader did not take by then stays behind).
    /// </summary>
    protected override void OnStop(GuestSession session, long drainDeadline)
    {
        if (WaitForPendingFlush(Remaining(drainDeadline)))
        {
            DrainOutput(session);
            WaitForPendingFlush(Remaining(drainDeadline));
        }
    }

    private static TimeSpan Remaining(long deadline)
    {
        TimeSpan left = System.Diagnostics.Stopwatch.GetElapsedTime(System.Diagnostics.Stopwatch.GetTimestamp(), deadline);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Waits (bounded) for the flush in flight; true when none is left in flight.</summary>
    private bool WaitForPendingFlush(TimeSpan timeout)
    {
        if (_pendingFlush is not { } pending)
        {
            return true;
        }
        try
        {
            if (!pending.Wait(timeout))
            {
                return false;
            }
        }
        catch (AggregateException)
        {
        }
        _pendingFlush = null;
        if (!pending.IsCompletedSuccessfully || pending.Result.IsCompleted)
        {
            _outputFailed = true;
        }
        return true;
    }

    /// <summary>Moves the guest's output to the writer; true when ring space was freed.</summary>
    private bool DrainOutput(GuestSession session)
    {
        if (!_outputFailed && _pendingFlush is { } pending)
        {
            if (!pending.IsCompleted)
            {
                return false; // the flush's continuation asks for a pump when the reader caught up
            }
            _pendingFlush = null;
            if (!pending.IsCompletedSuccessfully || pending.Result.IsCompleted)
            {
                _outputFailed = true; // the reader failed or finished: discard from now on
            }
        }
        uint prod = ReadIndex(session, ConsoleInterface.OutProdOffset);
        uint available = prod - _outCons;
        if (available > ConsoleInterface.OutSize)
        {
            MarkBroken($"the guest's console output index is corrupt (out_prod - out_cons = {available} > {ConsoleInterface.OutSize})");
            return false;
        }
        if (available == 0)
        {
            return false;
        }
        Interlocked.MemoryBarrier(); // read the bytes after out_prod
        uint allowed = (uint)session.TakeConsoleAllowance(available);
        session.CountConsoleDiscarded(available - allowed);
        if (!_outputFailed && allowed > 0)
        {
            // A failed output, or one past the run's output limit, discards the guest's bytes: the guest must not
            // stall on a full ring.
            bool ok = session.Memory.TryGetReadOnlySpan(new GuestAddress(_page + ConsoleInterface.OutOffset), ConsoleInterface.OutSize, out ReadOnlySpan<byte> ring);
            System.Diagnostics.Debug.Assert(ok, "the page was validated at attach");
            WriteOutput(ring, allowed);
        }
        _outCons = prod;
        Interlocked.Add(ref _bytesOut, available);
        session.Metrics?.RecordDeviceBytes(Name, "out", available);
        Interlocked.MemoryBarrier(); // the bytes were consumed before out_cons says so
        WriteIndex(session, ConsoleInterface.OutConsOffset, _outCons);
        return true;
    }

    /// <summary>Copies <paramref name="available"/> bytes from the output ring at <c>_outCons</c> to the writer and starts a flush.</summary>
    private void WriteOutput(ReadOnlySpan<byte> ring, uint available)
    {
        try
        {
            Span<byte> dst = _output.GetSpan((int)available)[..(int)available];
            int start = (int)(_outCons & (ConsoleInterface.OutSize - 1));
            int first = Math.Min((int)available, (int)ConsoleInterface.OutSize - start);
            ring.Slice(start, first).CopyTo(dst);
            ring[..((int)available - first)].CopyTo(dst[first..]);
            _output.Advance((int)available);
            // The flush's completion must not be posted to whatever SynchronizationContext the vCPU thread has
            // (a pipe created with useSynchronizationContext would never resume while the vCPU thread runs the guest).
            SynchronizationContext? context = SynchronizationContext.Current;
            SynchronizationContext.SetSynchronizationContext(null);
            try
            {
                ValueTask<FlushResult> flush = _output.FlushAsync();
                if (!flush.IsCompletedSuccessfully)
                {
                    _pendingFlush = flush.AsTask();
                    // One pump when the reader caught up (not one per poll while it has not: that spun the vCPU).
                    _pendingFlush.ContinueWith(static (_, s) => ((ConsoleDevice)s!).RequestPump(), this,
                        CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                }
                else if (flush.Result.IsCompleted)
                {
                    _outputFailed = true; // the reader is done: discard from now on
                }
            }
            finally
            {
                SynchronizationContext.SetSynchronizationContext(context);
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException)
        {
            _outputFailed = true; // the output went away: the guest's output is discarded from now on
        }
    }

    /// <summary>Copies queued input into the guest's input ring, then signals the end of input once it is all there; true when the guest should be told.</summary>
    private bool FillInput(GuestSession session)
    {
        bool ended = _inputEnded; // read first: every byte of an ended input was queued before the flag was set
        if (Volatile.Read(ref _inCount) == 0)
        {
            return ended && SignalEndOfInput(session);
        }
        uint cons = ReadIndex(session, ConsoleInterface.InConsOffset);
        uint used = _inProd - cons;
        if (used > ConsoleInterface.InSize)
        {
            MarkBroken($"the guest's console input index is corrupt (in_prod - in_cons = {used} > {ConsoleInterface.InSize})");
            return false;
        }
        uint space = ConsoleInterface.InSize - used;
        if (space == 0)
        {
            return false; // the guest has not consumed yet; the next pump or doorbell retries
        }
        Span<byte> ring = session.Memory.GetSpan(new GuestAddress(_page + ConsoleInterface.InOffset), ConsoleInterface.InSize);
        int n;
        lock (_inLock)
        {
            n = (int)Math.Min(space, (uint)_inCount);
            // Two circular buffers: copy in at most three contiguous pieces (each bounded by both wraps), not per byte.
            for (int done = 0; done < n;)
            {
                int from = (_inHead + done) % InputQueueLimit;
                int to = (int)((_inProd + (uint)done) & (ConsoleInterface.InSize - 1));
                int chunk = Math.Min(n - done, Math.Min(InputQueueLimit - from, (int)ConsoleInterface.InSize - to));
                _inQueue.AsSpan(from, chunk).CopyTo(ring.Slice(to, chunk));
                done += chunk;
            }
            _inHead = (_inHead + n) % InputQueueLimit;
            _inCount -= n;
        }
        _inSpace.Release();
        Interlocked.MemoryBarrier(); // the bytes are visible before in_prod
        _inProd += (uint)n;
        WriteIndex(session, ConsoleInterface.InProdOffset, _inProd);
        Interlocked.Add(ref _bytesIn, n);
        session.Metrics?.RecordDeviceBytes(Name, "in", n);
        if (ended && Volatile.Read(ref _inCount) == 0)
        {
            SignalEndOfInput(session);
        }
        return true;
    }

    /// <summary>Sets <see cref="ConsoleInputFlags.EndOfInput"/> after the final in_prod (once); true when it was set now.</summary>
    private bool SignalEndOfInput(GuestSession session)
    {
        if (_endSignalled)
        {
            return false;
        }
        _endSignalled = true;
        Interlocked.MemoryBarrier(); // the final in_prod is visible before the flag
        WriteIndex(session, ConsoleInterface.InFlagsOffset, (uint)ConsoleInputFlags.EndOfInput);
        return true;
    }

    private async Task ReadInputAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                ReadResult result = await reader.ReadAsync(cancellationToken);
                ReadOnlySequence<byte> buffer = result.Buffer;
                long taken = Enqueue(buffer);
                if (taken > 0)
                {
                    RequestPump();
                }
                if (taken < buffer.Length)
                {
                    reader.AdvanceTo(buffer.GetPosition(taken)); // keep the rest; wait for queue space
                    await _inSpace.WaitAsync(cancellationToken);
                    continue;
                }
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return; // the device is being disposed: not an end of input the guest should see
        }
#pragma warning disable CA1031 // The input source failing ends input; it must not take the host down.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
        _inputEnded = true;
        RequestPump();
    }

    private long Enqueue(ReadOnlySequence<byte> buffer)
    {
        lock (_inLock)
        {
            long take = Math.Min(buffer.Length, InputQueueLimit - _inCount);
            int tail = (_inHead + _inCount) % InputQueueLimit;
            foreach (ReadOnlyMemory<byte> segment in buffer.Slice(0, take))
            {
                ReadOnlySpan<byte> rest = segment.Span;
                while (!rest.IsEmpty)
                {
                    int chunk = Math.Min(rest.Length, InputQueueLimit - tail);
                    rest[..chunk].CopyTo(_inQueue.AsSpan(tail));
                    rest = rest[chunk..];
                    tail = (tail + chunk) % InputQueueLimit;
                }
            }
            _inCount += (int)take;
            return take;
        }
    }

    private uint ReadIndex(GuestSession session, uint offset)
    {
        bool ok = session.Memory.TryRead(new GuestAddress(_page + offset), out uint value);
        System.Diagnostics.Debug.Assert(ok, "the page was validated at attach");
        return value;
    }

    private void WriteIndex(GuestSession session, uint offset, uint value)
    {
        bool ok = session.Memory.TryWrite(new GuestAddress(_page + offset), in value);
        System.Diagnostics.Debug.Assert(ok, "the page was validated at attach");
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stop.Cancel();
            _input?.CancelPendingRead();
            try
            {
                _inputTask.Wait(TimeSpan.FromMilliseconds(200)); // a blocking read (a terminal) cannot be cancelled; it is abandoned
            }
            catch (AggregateException)
            {
            }
            _input?.Complete();
            // Completing the writer while a flush is still writing to the stream races the pipe's buffers (and can
            // write the same bytes twice): wait for it, briefly (the end of the run already waited for slow readers);
            // a reader stalled beyond that is abandoned, not raced.
            if (WaitForPendingFlush(Running.GuestLimits.StopLatency))
            {
                try
                {
                    _output.Complete();
                }
                catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException)
                {
                    // The output went away; nothing left to deliver.
                }
            }
            else
            {
                _output.CancelPendingFlush(); // a stalled reader must not hold up the host
            }
            _stop.Dispose();
            _inSpace.Dispose();
        }
        base.Dispose(disposing);
    }
}
