using Paravirt.Abi;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>The built-in core (<c>0x00xx</c>) and console-write hypercalls.</summary>
internal sealed class CoreHypercalls : IHypercallProvider
{
    /// <summary>Largest buffer one write hypercall copies (1 MiB); longer writes return a short count.</summary>
    internal const int MaxWriteChunk = 1 << 20;

    public bool IsBuiltIn => true;

    public IEnumerable<HypercallRegistration> GetHypercalls() =>
    [
        new((uint)HypercallCode.Version, "version", static (in HypercallArgs _, GuestSession _) => AbiVersion.Current.Packed),
        new((uint)HypercallCode.Features, "features", Features),
        new((uint)HypercallCode.Exit, "exit", Exit),
        new((uint)HypercallCode.DebugWrite, "debug_write", Write),
        new((uint)HypercallCode.ClockMonotonic, "clock_monotonic", static (in HypercallArgs _, GuestSession s) => s.MonotonicNanoseconds),
        new((uint)HypercallCode.ClockWall, "clock_wall", static (in HypercallArgs _, GuestSession _) => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100),
        new((uint)HypercallCode.Poll, "poll", Poll),
        new((uint)HypercallCode.AcceptFeatures, "accept_features", AcceptFeatures),
        new((uint)HypercallCode.Yield, "yield", static (in HypercallArgs _, GuestSession _) => { Thread.Yield(); return 0; }),
        new((uint)HypercallCode.ConsoleWrite, "console_write", Write),
        new((uint)HypercallCode.Panic, "panic", Panic),
    ];

    private static long Features(in HypercallArgs args, GuestSession session) =>
        args.A1 == 0 ? (long)session.OfferedFeatures : 0;

    private static long AcceptFeatures(in HypercallArgs args, GuestSession session)
    {
        if (args.A1 != 0)
        {
            return 0;
        }
        session.AcceptedFeatures = (FeatureBits)args.A2 & session.OfferedFeatures;
        return (long)session.AcceptedFeatures;
    }

    private static long Exit(in HypercallArgs args, GuestSession session)
    {
        session.RequestExit((long)args.A1);
        return 0;
    }

    private static long Write(in HypercallArgs args, GuestSession session)
    {
        ulong length = Math.Min(args.A2, MaxWriteChunk);
        if (!session.Memory.TryGetSpan(new GuestAddress(args.A1), length, out Span<byte> span))
        {
            return (long)HypercallStatus.Fault;
        }
        try
        {
            session.ConsoleOutput.Write(span);
            session.ConsoleOutput.Flush();
        }
        catch (IOException)
        {
            return (long)HypercallStatus.IoError;
        }
        return (long)length;
    }

    /// <summary>
    /// <c>panic(message, length, frame)</c>: copies the message (at most <see cref="PanicConstants.MaxMessageLength"/>
    /// bytes, invalid UTF-8 replaced) and the optional register frame once, checks the frame's size, writes
    /// <c>panic: message</c> to the console output as the guest runtime did before 1.1, and asks the loop to end the run
    /// as a crash. A message or frame outside guest memory still ends the run, with what could be read.
    /// </summary>
    private static long Panic(in HypercallArgs args, GuestSession session)
    {
        ulong length = Math.Min(args.A2, PanicConstants.MaxMessageLength);
        string message = session.Memory.TryGetSpan(new GuestAddress(args.A1), length, out Span<byte> text)
            ? System.Text.Encoding.UTF8.GetString(text).TrimEnd('\n', '\0')
            : $"(the panic message at 0x{args.A1:x} is outside guest memory)";
        PanicFrame? frame = null;
        if (args.A3 != 0 && session.Memory.TryRead(new GuestAddress(args.A3), out PanicFrame copy)
            && copy.Size >= PanicConstants.MinFrameSize && copy.Size <= 4096)
        {
            frame = copy;
        }
        try
        {
            session.ConsoleOutput.Write(System.Text.Encoding.UTF8.GetBytes("panic: " + message + "\n"));
            session.ConsoleOutput.Flush();
        }
        catch (IOException)
        {
            // the report still reaches the host through the run result
        }
        session.RequestPanic(message, frame);
        return 0;
    }

    private static long Poll(in HypercallArgs args, GuestSession session)
    {
        long deadline = args.A1 > long.MaxValue ? long.MaxValue : (long)args.A1;
        return (long)session.WaitForEvents(args.A2, deadline);
    }
}
