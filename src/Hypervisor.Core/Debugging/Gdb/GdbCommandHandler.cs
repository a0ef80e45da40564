using System.Globalization;
using System.Text;

namespace Paravirt.Hypervisor.Debugging.Gdb;

/// <summary>What the stub does after answering a packet.</summary>
internal enum GdbAction
{
    /// <summary>Stay stopped and read the next packet.</summary>
    None,
    /// <summary>Resume: continue.</summary>
    Continue,
    /// <summary>Resume: one instruction.</summary>
    Step,
    /// <summary>End the guest.</summary>
    Kill,
    /// <summary>Let the guest run on without the debugger.</summary>
    Detach,
}

/// <summary>An answer: the payload to send (null: send nothing) and what to do next.</summary>
internal readonly record struct GdbReply(byte[]? Payload, GdbAction Action = GdbAction.None, bool DeliverSignal = true)
{
    public static GdbReply Text(string payload, GdbAction action = GdbAction.None) => new(Encoding.ASCII.GetBytes(payload), action);

    /// <summary>The empty reply: "this packet is not supported".</summary>
    public static GdbReply Unsupported => new([]);

    public static GdbReply Ok => Text("OK");

    /// <summary><c>Enn</c>: an error (errno-style numbers, as gdbserver uses).</summary>
    public static GdbReply Error(int code) => Text("E" + code.ToString("x2", CultureInfo.InvariantCulture));
}

/// <summary>
/// The command layer of the GDB stub: one packet payload in, one reply out, against a stopped guest
/// (<see cref="GuestDebugTarget"/>). Independent of sockets and backends. The client is untrusted: every number is
/// parsed with overflow checks, lengths are capped, unknown packets get the empty reply and bad ones an <c>Enn</c>;
/// nothing here throws for any payload.
/// </summary>
internal sealed class GdbCommandHandler
{
    /// <summary>The <c>PacketSize</c> announced to gdb (payload bytes it may send; memory reads are capped to fit).</summary>
    internal const int PacketSize = 0x4000;
    private const int ErrorInvalid = 0x16, ErrorFault = 0x0e, ErrorIo = 0x05;

    private readonly GuestDebugTarget _target;
    private DebugStop _stop;
    private bool _swBreakFeature, _hwBreakFeature;

    public GdbCommandHandler(GuestDebugTarget target, DebugStop stop)
    {
        _target = target;
        _stop = stop;
    }

    /// <summary>True once gdb asked for <c>QStartNoAckMode</c> and was told OK.</summary>
    public bool NoAckMode { get; private set; }

    /// <summary>The stop being reported (a new one at each stop).</summary>
    public DebugStop Stop
    {
        get => _stop;
        set => _stop = value;
    }

    /// <summary>The stop reply for the current stop (<c>T05thread:01;</c>, <c>T0bthread:01;</c>, ...).</summary>
    public string StopReply()
    {
        int signal = _stop.Kind switch
        {
            DebugStopKind.Interrupted => 2, // SIGINT
            DebugStopKind.Fault => _stop.Fault?.UnixSignal ?? 11,
            _ => 5, // SIGTRAP
        };
        var sb = new StringBuilder();
        sb.Append('T').Append(signal.ToString("x2", CultureInfo.InvariantCulture));
        if (_stop.Kind == DebugStopKind.Watchpoint && _stop.WatchAddress is ulong watch)
        {
            sb.Append("watch:").Append(watch.ToString("x", CultureInfo.InvariantCulture)).Append(';');
        }
        else if (_stop.Kind == DebugStopKind.Breakpoint && _swBreakFeature)
        {
            sb.Append("swbreak:;");
        }
        sb.Append("thread:01;");
        return sb.ToString();
    }

    /// <summary>Answers one packet.</summary>
    public GdbReply Handle(byte[] payload)
    {
        if (payload.Length == 0)
        {
            return GdbReply.Unsupported;
        }
        try
        {
            return HandleCore(payload);
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException or IndexOutOfRangeException)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        catch (Exception e) when (e is BackendOperationException or NotSupportedException)
        {
            return GdbReply.Error(ErrorIo); // the backend refused (an ioctl failed): the session goes on
        }
    }

    private GdbReply HandleCore(byte[] payload)
    {
        // Text commands are ASCII; binary data (X) is handled on the bytes.
        if (payload[0] == (byte)'X')
        {
            return WriteBinary(payload);
        }
        string p = Encoding.Latin1.GetString(payload);
        switch (p[0])
        {
            case '?':
                return GdbReply.Text(StopReply());
            case 'g':
                return ReadAllRegisters();
            case 'G':
                return WriteAllRegisters(p[1..]);
            case 'p':
                return ReadRegister(p[1..]);
            case 'P':
                return WriteRegister(p[1..]);
            case 'm':
                return ReadMemory(p[1..]);
            case 'M':
                return WriteMemory(p[1..]);
            case 'c':
                return Resume(p[1..], GdbAction.Continue, deliver: false);
            case 's':
                return Resume(p[1..], GdbAction.Step, deliver: false);
            case 'C':
                return ResumeWithSignal(p[1..], GdbAction.Continue);
            case 'S':
                return ResumeWithSignal(p[1..], GdbAction.Step);
            case 'Z':
            case 'z':
                return Breakpoint(p[0] == 'Z', p[1..]);
            case 'k':
                return new GdbReply(null, GdbAction.Kill);
            case 'D':
                return GdbReply.Text("OK", GdbAction.Detach);
            case 'H':
                return GdbReply.Ok; // one thread: any selection is it
            case 'T':
                return ParseThread(p[1..]) is 1 or -1 or 0 ? GdbReply.Ok : GdbReply.Error(ErrorInvalid);
            case 'q':
                return Query(p);
            case 'Q':
                return SetQuery(p);
            case 'v':
                return VPacket(p);
            default:
                return GdbReply.Unsupported;
        }
    }

    private GdbReply Query(string p)
    {
        if (p.StartsWith("qSupported", StringComparison.Ordinal))
        {
            _swBreakFeature = p.Contains("swbreak+", StringComparison.Ordinal);
            _hwBreakFeature = p.Contains("hwbreak+", StringComparison.Ordinal);
            string features = $"PacketSize={PacketSize:x};qXfer:features:read+;QStartNoAckMode+;vContSupported+"
                + (_swBreakFeature ? ";swbreak+" : "") + (_hwBreakFeature ? ";hwbreak+" : "");
            return GdbReply.Text(features);
        }
        if (p.StartsWith("qXfer:features:read:", StringComparison.Ordinal))
        {
            return ReadFeatures(p["qXfer:features:read:".Length..]);
        }
        return p switch
        {
            "qC" => GdbReply.Text("QC01"),
            "qfThreadInfo" => GdbReply.Text("m01"),
            "qsThreadInfo" => GdbReply.Text("l"),
            "qAttached" => GdbReply.Text("1"),
            "qSymbol::" => GdbReply.Ok,
            _ when p.StartsWith("qThreadExtraInfo,", StringComparison.Ordinal) => GdbReply.Text(Convert.ToHexString(Encoding.ASCII.GetBytes($"vCPU 0 ({_target.Backend})")).ToLowerInvariant()),
            _ => GdbReply.Unsupported,
        };
    }

    private GdbReply SetQuery(string p)
    {
        if (p == "QStartNoAckMode")
        {
            NoAckMode = true;
            return GdbReply.Ok;
        }
        return GdbReply.Unsupported;
    }

    private GdbReply VPacket(string p)
    {
        if (p == "vCont?")
        {
            return GdbReply.Text("vCont;c;C;s;S");
        }
        if (p.StartsWith("vCont;", StringComparison.Ordinal))
        {
            // Actions for thread 1 (or all threads): the first that applies wins, as the protocol says.
            foreach (string action in p["vCont;".Length..].Split(';'))
            {
                string[] parts = action.Split(':', 2);
                if (parts.Length == 2 && ParseThread(parts[1]) is not (1 or -1 or 0))
                {
                    continue;
                }
                string a = parts[0];
                if (a.Length == 0)
                {
                    return GdbReply.Error(ErrorInvalid);
                }
                switch (a[0])
                {
                    case 'c': return new GdbReply(null, GdbAction.Continue, DeliverSignal: false);
                    case 's': return new GdbReply(null, GdbAction.Step, DeliverSignal: false);
                    case 'C': return new GdbReply(null, GdbAction.Continue, DeliverSignal: ParseHex(a[1..]) != 0);
                    case 'S': return new GdbReply(null, GdbAction.Step, DeliverSignal: ParseHex(a[1..]) != 0);
                    case 't': continue;
                    default: return GdbReply.Error(ErrorInvalid);
                }
            }
            return GdbReply.Error(ErrorInvalid);
        }
        if (p.StartsWith("vKill", StringComparison.Ordinal))
        {
            return GdbReply.Text("OK", GdbAction.Kill);
        }
        return GdbReply.Unsupported; // vMustReplyEmpty, vFile, vRun, vAttach, ...
    }

    /// <summary><c>c [addr]</c> / <c>s [addr]</c>: an address resumes from there.</summary>
    private GdbReply Resume(string args, GdbAction action, bool deliver)
    {
        if (args.Length > 0)
        {
            VcpuState state = _target.GetState();
            state.Registers = state.Registers with { Rip = ParseHex(args) };
            _target.SetState(state);
        }
        return new GdbReply(null, action, deliver);
    }

    /// <summary><c>C sig[;addr]</c>: signal 0 means "do not deliver the fault".</summary>
    private GdbReply ResumeWithSignal(string args, GdbAction action)
    {
        string[] parts = args.Split(';', 2);
        ulong signal = ParseHex(parts[0]);
        return Resume(parts.Length == 2 ? parts[1] : "", action, signal != 0);
    }

    private GdbReply ReadAllRegisters()
    {
        VcpuState state = _target.GetState();
        var sb = new StringBuilder();
        Span<byte> buffer = stackalloc byte[16];
        for (int i = 0; i < GdbRegisters.GPacketCount; i++)
        {
            int size = GdbRegisters.Size(i);
            GdbRegisters.Read(state, i, buffer[..size]);
            AppendHex(sb, buffer[..size]);
        }
        return GdbReply.Text(sb.ToString());
    }

    private GdbReply WriteAllRegisters(string hex)
    {
        byte[] data = ParseHexBytes(hex);
        VcpuState state = _target.GetState();
        int offset = 0;
        for (int i = 0; i < GdbRegisters.GPacketCount && offset < data.Length; i++)
        {
            int size = GdbRegisters.Size(i);
            if (offset + size > data.Length)
            {
                return GdbReply.Error(ErrorInvalid);
            }
            GdbRegisters.Write(state, i, data.AsSpan(offset, size));
            offset += size;
        }
        return SetState(state);
    }

    private GdbReply ReadRegister(string args)
    {
        ulong n = ParseHex(args);
        if (n >= (ulong)GdbRegisters.Count)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        Span<byte> buffer = stackalloc byte[16];
        int size = GdbRegisters.Size((int)n);
        GdbRegisters.Read(_target.GetState(), (int)n, buffer[..size]);
        var sb = new StringBuilder();
        AppendHex(sb, buffer[..size]);
        return GdbReply.Text(sb.ToString());
    }

    private GdbReply WriteRegister(string args)
    {
        string[] parts = args.Split('=', 2);
        if (parts.Length != 2)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        ulong n = ParseHex(parts[0]);
        if (n >= (ulong)GdbRegisters.Count)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        byte[] value = ParseHexBytes(parts[1]);
        if (value.Length != GdbRegisters.Size((int)n))
        {
            return GdbReply.Error(ErrorInvalid);
        }
        VcpuState state = _target.GetState();
        GdbRegisters.Write(state, (int)n, value);
        return SetState(state);
    }

    private GdbReply SetState(VcpuState state)
    {
        try
        {
            _target.SetState(state);
            return GdbReply.Ok;
        }
        catch (BackendOperationException)
        {
            return GdbReply.Error(ErrorIo); // the backend refused the state (e.g. KVM and an impossible segment)
        }
    }

    private GdbReply ReadMemory(string args)
    {
        (ulong address, ulong length) = ParseAddressLength(args);
        length = Math.Min(length, (PacketSize / 2) - 16);
        byte[] data = new byte[length];
        int read = _target.ReadMemory(address, data);
        if (read == 0 && length > 0)
        {
            return GdbReply.Error(ErrorFault);
        }
        var sb = new StringBuilder(read * 2);
        AppendHex(sb, data.AsSpan(0, read));
        return GdbReply.Text(sb.ToString());
    }

    private GdbReply WriteMemory(string args)
    {
        string[] parts = args.Split(':', 2);
        if (parts.Length != 2)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        (ulong address, ulong length) = ParseAddressLength(parts[0]);
        byte[] data = ParseHexBytes(parts[1]);
        if ((ulong)data.Length != length)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        return _target.WriteMemory(address, data) == data.Length ? GdbReply.Ok : GdbReply.Error(ErrorFault);
    }

    /// <summary><c>X addr,length:binary</c> (the binary part <c>}</c>-escaped).</summary>
    private GdbReply WriteBinary(byte[] payload)
    {
        int colon = Array.IndexOf(payload, (byte)':');
        if (colon < 0)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        (ulong address, ulong length) = ParseAddressLength(Encoding.Latin1.GetString(payload, 1, colon - 1));
        if (!GdbPacketParser.TryUnescape(payload.AsSpan(colon + 1), out byte[] data) || (ulong)data.Length != length)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        if (data.Length == 0)
        {
            return GdbReply.Ok; // gdb probes for X support with a zero-length write
        }
        return _target.WriteMemory(address, data) == data.Length ? GdbReply.Ok : GdbReply.Error(ErrorFault);
    }

    /// <summary><c>Ztype,addr,kind</c> / <c>ztype,addr,kind</c>.</summary>
    private GdbReply Breakpoint(bool insert, string args)
    {
        string[] parts = args.Split(';', 2)[0].Split(',');
        if (parts.Length != 3)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        DebugBreakpointKind? kind = parts[0] switch
        {
            "0" => DebugBreakpointKind.Software,
            "1" => DebugBreakpointKind.Hardware,
            "2" => DebugBreakpointKind.WriteWatch,
            "3" => DebugBreakpointKind.ReadWatch,
            "4" => DebugBreakpointKind.AccessWatch,
            _ => null,
        };
        if (kind is not DebugBreakpointKind k)
        {
            return GdbReply.Unsupported;
        }
        ulong address = ParseHex(parts[1]);
        ulong length = ParseHex(parts[2]);
        if (k == DebugBreakpointKind.Hardware && _target.MaxHardwareSlots == 0)
        {
            return GdbReply.Unsupported; // the backend has no debug registers that fire (KVM under PVM)
        }
        if (k is DebugBreakpointKind.ReadWatch or DebugBreakpointKind.WriteWatch or DebugBreakpointKind.AccessWatch)
        {
            WatchpointKind wanted = k switch
            {
                DebugBreakpointKind.WriteWatch => WatchpointKind.Write,
                DebugBreakpointKind.ReadWatch => WatchpointKind.Read,
                _ => WatchpointKind.Access,
            };
            if (!_target.WatchpointKinds.Contains(wanted))
            {
                return GdbReply.Unsupported; // gdb then says it cannot set this kind of watchpoint
            }
            if (length == 0 || length > 1UL << 20)
            {
                return GdbReply.Error(ErrorInvalid);
            }
        }
        bool ok = insert
            ? _target.InsertBreakpoint(k, address, length, out _)
            : _target.RemoveBreakpoint(k, address, length, out _);
        return ok ? GdbReply.Ok : GdbReply.Error(ErrorIo);
    }

    /// <summary>The window [offset, offset+length) of the target description; <c>m</c> = more follows, <c>l</c> = last.</summary>
    private static GdbReply ReadFeatures(string args)
    {
        string[] parts = args.Split(':', 2);
        if (parts.Length != 2)
        {
            return GdbReply.Error(ErrorInvalid);
        }
        if (parts[0] != "target.xml")
        {
            return GdbReply.Error(ErrorFault);
        }
        (ulong offset, ulong length) = ParseAddressLength(parts[1]);
        byte[] xml = Encoding.ASCII.GetBytes(GdbRegisters.TargetXml);
        if (offset >= (ulong)xml.Length)
        {
            return GdbReply.Text("l");
        }
        int count = (int)Math.Min(Math.Min(length, (ulong)PacketSize - 16), (ulong)xml.Length - offset);
        bool last = offset + (ulong)count >= (ulong)xml.Length;
        byte[] reply = new byte[count + 1];
        reply[0] = (byte)(last ? 'l' : 'm');
        Array.Copy(xml, (int)offset, reply, 1, count);
        return new GdbReply(reply);
    }

    private static (ulong Address, ulong Length) ParseAddressLength(string args)
    {
        string[] parts = args.Split(',');
        if (parts.Length != 2)
        {
            throw new FormatException("expected address,length");
        }
        return (ParseHex(parts[0]), ParseHex(parts[1]));
    }

    /// <summary>A thread id: hex, <c>-1</c> (all) or <c>0</c> (any); -2 for anything else.</summary>
    private static long ParseThread(string s)
    {
        if (s == "-1")
        {
            return -1;
        }
        return ulong.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong v) && v < 0x1000 ? (long)v : -2;
    }

    /// <summary>A hex number of at most 16 digits (no sign, no prefix).</summary>
    internal static ulong ParseHex(string s)
    {
        if (s.Length == 0 || s.Length > 16 || !ulong.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong v))
        {
            throw new FormatException($"'{(s.Length > 20 ? s[..20] + "..." : s)}' is not a hex number");
        }
        return v;
    }

    private static byte[] ParseHexBytes(string hex)
    {
        if (hex.Length % 2 != 0 || hex.Length > 2 * PacketSize)
        {
            throw new FormatException("odd or too long hex data");
        }
        return Convert.FromHexString(hex);
    }

    private static void AppendHex(StringBuilder sb, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            sb.Append("0123456789abcdef"[b >> 4]).Append("0123456789abcdef"[b & 0xF]);
        }
    }
}
