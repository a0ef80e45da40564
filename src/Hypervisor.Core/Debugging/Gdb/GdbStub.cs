using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Paravirt.Hypervisor.Debugging.Gdb;

/// <summary>
/// A GDB Remote Serial Protocol server for one guest run (<see cref="GuestRunOptions.Debugger"/>), as QEMU's
/// <c>-s -S</c>: it listens on a TCP address, and when the run starts it waits for gdb to connect, then reports the
/// guest stopped at its entry point. gdb can then read and write registers (general, segment, x87, SSE, control) and
/// memory (through the guest's page tables), set software and hardware breakpoints and watchpoints, step, continue,
/// interrupt with Ctrl-C, kill or detach; the guest's exit reaches gdb as <c>W</c> (exit status) or <c>X</c> (crash
/// signal). One connection per run. gdb is untrusted input: malformed, oversized or unknown packets get error or
/// empty replies, never a host exception.
/// </summary>
/// <remarks>
/// Bind to loopback (the default): the protocol has no authentication and gives full control of the guest.
/// </remarks>
public sealed class GdbStub : IGuestDebugger, IDisposable
{
    private readonly TcpListener _listener;
    private readonly object _sendLock = new();
    private readonly BlockingCollection<GdbFrame> _frames = new(boundedCapacity: 1024);
    private Socket? _socket;
    private Thread? _reader;
    private GdbCommandHandler? _handler;
    private GuestDebugTarget? _target;
    private volatile bool _running;
    /// <summary>A Ctrl-C that arrived before the resume it was meant for was handled (gdb sends it once it resumed).</summary>
    private int _interruptEarly;
    private volatile bool _closed;
    private bool _killed;
    private byte[]? _lastSent;

    private GdbStub(TcpListener listener)
    {
        _listener = listener;
        EndPoint = (IPEndPoint)listener.LocalEndpoint;
    }

    /// <summary>The address the stub listens on (with the actual port when port 0 was asked for).</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>True when <see cref="EndPoint"/> is not a loopback address (anyone who can reach it controls the guest).</summary>
    public bool IsExposed => !IPAddress.IsLoopback(EndPoint.Address);

    /// <summary>Starts listening on <paramref name="endPoint"/> (port 0 picks a free port; see <see cref="EndPoint"/>).</summary>
    /// <exception cref="SocketException">The address cannot be bound (in use, not local).</exception>
    public static GdbStub Listen(IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        var listener = new TcpListener(endPoint);
        listener.Start(1);
        return new GdbStub(listener);
    }

    /// <summary>Parses <c>HOST:PORT</c>, <c>:PORT</c> or <c>PORT</c> (host defaults to 127.0.0.1; IPv6 as <c>[::1]:PORT</c>).</summary>
    public static bool TryParseEndPoint(string text, out IPEndPoint? endPoint)
    {
        endPoint = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        text = text.Trim();
        if (ushort.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ushort bare))
        {
            endPoint = new IPEndPoint(IPAddress.Loopback, bare);
            return true;
        }
        if (text.StartsWith(':'))
        {
            text = "127.0.0.1" + text;
        }
        if (text.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase))
        {
            text = "127.0.0.1" + text["localhost".Length..];
        }
        return text.Contains(':', StringComparison.Ordinal) && IPEndPoint.TryParse(text, out endPoint);
    }

    /// <inheritdoc/>
    public DebugResume OnStop(GuestDebugTarget target, DebugStop stop)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(stop);
        _running = false;
        _target = target;
        if (stop.Kind == DebugStopKind.Attach)
        {
            if (!Accept(target.RunStopping))
            {
                return DebugResume.Continue; // the run is being stopped: it ends as cancelled or timed out
            }
            _handler = new GdbCommandHandler(target, stop);
        }
        else
        {
            if (_handler is null || _closed)
            {
                return DebugResume.Detach;
            }
            _handler.Stop = stop;
            Send(_handler.StopReply());
        }
        return Serve(target.RunStopping);
    }

    /// <inheritdoc/>
    public void OnRunEnded(RunResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        _running = false;
        if (_handler is not null && !_closed && !_killed)
        {
            // W: exited with a status; X: ended by a signal (a crash, or killed from outside).
            string reply = result.Outcome == RunOutcome.Exited
                ? "W" + ((byte)result.ExitStatus).ToString("x2", System.Globalization.CultureInfo.InvariantCulture)
                : "X" + (result.Crash?.Fault.UnixSignal ?? 9).ToString("x2", System.Globalization.CultureInfo.InvariantCulture);
            Send(reply);
        }
        Close();
    }

    /// <summary>Serves packets until gdb resumes, kills or detaches the guest.</summary>
    private DebugResume Serve(CancellationToken stopping)
    {
        GdbCommandHandler handler = _handler!;
        while (true)
        {
            GdbFrame frame;
            try
            {
                if (!_frames.TryTake(out frame, Timeout.Infinite, stopping))
                {
                    return DebugResume.Detach;
                }
            }
            catch (OperationCanceledException)
            {
                return DebugResume.Continue; // the run is being stopped from outside
            }
            catch (InvalidOperationException)
            {
                return DebugResume.Detach; // the connection closed: the guest runs on
            }
            switch (frame.Kind)
            {
                case GdbFrameKind.Nak:
                    if (_lastSent is not null)
                    {
                        SendRaw(_lastSent);
                    }
                    continue;
                case GdbFrameKind.BadChecksum:
                    if (!handler.NoAckMode)
                    {
                        SendRaw("-"u8.ToArray());
                    }
                    continue;
                case GdbFrameKind.TooLong:
                    Send("E16");
                    continue;
                case GdbFrameKind.Packet:
                    break;
                default:
                    continue; // acks, interrupts while stopped, line noise
            }
            GdbReply reply = handler.Handle(frame.Payload!);
            if (reply.Payload is not null)
            {
                Send(reply.Payload);
            }
            switch (reply.Action)
            {
                case GdbAction.Continue:
                    Resuming();
                    return new DebugResume(DebugResumeAction.Continue, reply.DeliverSignal);
                case GdbAction.Step:
                    Resuming();
                    return new DebugResume(DebugResumeAction.Step, reply.DeliverSignal);
                case GdbAction.Kill:
                    _killed = true;
                    return DebugResume.Kill;
                case GdbAction.Detach:
                    Close();
                    return DebugResume.Detach;
            }
        }
    }

    /// <summary>The guest is about to run: from now on Ctrl-C stops it (and one that came early does so at once).</summary>
    private void Resuming()
    {
        _running = true;
        if (Interlocked.Exchange(ref _interruptEarly, 0) != 0)
        {
            _target?.RequestStop();
        }
    }

    private bool Accept(CancellationToken stopping)
    {
        try
        {
            _socket = _listener.AcceptSocketAsync(stopping).AsTask().GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (SocketException)
        {
            return false;
        }
        finally
        {
            _listener.Stop(); // one connection per run
        }
        _socket.NoDelay = true;
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "gdb stub reader" };
        _reader.Start();
        return true;
    }

    /// <summary>The reader thread: frames the byte stream, acknowledges packets, turns Ctrl-C into a stop request.</summary>
    private void ReadLoop()
    {
        byte[] buffer = new byte[64 * 1024];
        int filled = 0;
        try
        {
            while (!_closed)
            {
                if (filled == buffer.Length)
                {
                    filled = 0; // a flood without a frame end: dropped (the parser skips it as too long)
                }
                int n = _socket!.Receive(buffer, filled, buffer.Length - filled, SocketFlags.None);
                if (n == 0)
                {
                    break;
                }
                filled += n;
                int offset = 0;
                while (offset < filled)
                {
                    int used = GdbPacketParser.Parse(buffer.AsSpan(offset, filled - offset), GdbPacketParser.DefaultMaxPayload, out GdbFrame frame);
                    if (used == 0)
                    {
                        break;
                    }
                    offset += used;
                    if (frame.Kind == GdbFrameKind.Interrupt)
                    {
                        if (_running)
                        {
                            _target?.RequestStop();
                        }
                        else
                        {
                            Volatile.Write(ref _interruptEarly, 1); // for the resume gdb already sent
                        }
                        continue;
                    }
                    if (frame.Kind == GdbFrameKind.Packet && _handler is { NoAckMode: false })
                    {
                        SendRaw("+"u8.ToArray());
                    }
                    _frames.Add(frame);
                }
                Buffer.BlockCopy(buffer, offset, buffer, 0, filled - offset);
                filled -= offset;
            }
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        catch (InvalidOperationException)
        {
        }
        finally
        {
            _closed = true;
            try
            {
                _frames.CompleteAdding();
            }
            catch (ObjectDisposedException)
            {
                // Dispose won the race: nobody waits for frames any more (an exception here would end the host process)
            }
        }
    }

    private void Send(string payload) => Send(System.Text.Encoding.ASCII.GetBytes(payload));

    private void Send(byte[] payload)
    {
        byte[] framed = GdbPacketParser.Frame(payload);
        _lastSent = framed;
        SendRaw(framed);
    }

    private void SendRaw(byte[] bytes)
    {
        lock (_sendLock)
        {
            try
            {
                _socket?.Send(bytes);
            }
            catch (SocketException)
            {
                _closed = true;
            }
            catch (ObjectDisposedException)
            {
                _closed = true;
            }
        }
    }

    private void Close()
    {
        _closed = true;
        lock (_sendLock)
        {
            try
            {
                _socket?.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
            _socket?.Dispose();
        }
        _listener.Stop();
    }

    /// <summary>Stops listening and closes the connection.</summary>
    public void Dispose()
    {
        Close();
        // The reader leaves its loop once the socket is closed; let it finish with the frame queue before it goes.
        if (_reader is { } reader && reader != Thread.CurrentThread)
        {
            reader.Join(TimeSpan.FromSeconds(2));
        }
        _frames.Dispose();
    }
}
