namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>The built-in core (<c>0x00xx</c>) and console-write hypercalls.</summary>
internal sealed partial class CoreHypercalls : IHypercallProvider
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
        new((uint)HypercallCode.Random, "random", Random),
        new((uint)HypercallCode.SyscallUnimplemented, "syscall_unimplemented", SyscallUnimplemented),
        new((uint)HypercallCode.ExitSignal, "exit_signal", ExitSignal),
        new((uint)HypercallCode.ConsoleWrite, "console_write", Write),
        new((uint)HypercallCode.Panic, "panic", Panic),
        new((uint)HypercallCode.TimerSet, "timer_set", static (in HypercallArgs a, GuestSession s) => s.SetTimer(a.A1, a.A2)),
    ];

    /// <summary>Most bytes one random hypercall returns.</summary>
    internal const int MaxRandomChunk = 4096;

    private static long Random(in HypercallArgs args, GuestSession session)
    {
        ulong length = Math.Min(args.A2, MaxRandomChunk);
        if (!session.Memory.TryGetSpan(new GuestAddress(args.A1), length, out Span<byte> span))
        {
            return (long)HypercallStatus.Fault;
        }
        return FillRandom(span) ? (long)length : (long)HypercallStatus.IoError;
    }

    /// <summary>
    /// Cryptographic random bytes. On Linux straight from the kernel (getrandom): .NET's RandomNumberGenerator goes
    /// through OpenSSL there, which a host need not have (the nested-KVM initramfs does not).
    /// </summary>
    private static unsafe bool FillRandom(Span<byte> span)
    {
        if (!OperatingSystem.IsLinux())
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(span);
            return true;
        }
        int done = 0;
        while (done < span.Length)
        {
            fixed (byte* p = span[done..])
            {
                // Safe: p points at span.Length - done writable bytes, pinned for the call.
                nint n = Interop.Libc.getrandom(p, (nuint)(span.Length - done), 0);
                if (n <= 0)
                {
                    if (n < 0 && Marshal.GetLastPInvokeError() == Interop.Libc.EINTR)
                    {
                        continue;
                    }
                    return false;
                }
                done += (int)n;
            }
        }
        return true;
    }

    private static long SyscallUnimplemented(in HypercallArgs args, GuestSession session)
    {
        Dictionary<ulong, long> counts = session.UnimplementedSyscalls;
        long seen = counts.GetValueOrDefault(args.A1);
        if (seen == 0 && counts.Count >= 1024)
        {
            return 0; // a hostile guest cannot grow the table without bound
        }
        counts[args.A1] = seen + 1;
        if (seen == 0 && session.Logger is { } logger)
        {
            LogUnimplementedSyscall(logger, Linux.LinuxSyscallNames.Describe(args.A1), args.A2);
        }
        return 0;
    }

    private static long ExitSignal(in HypercallArgs args, GuestSession session)
    {
        int signal = args.A1 is >= 1 and <= 64 ? (int)args.A1 : 0;
        if (signal == 0)
        {
            session.RequestExit(255);
            return 0;
        }
        session.FatalSignal = new Linux.LinuxFatalSignal(signal, args.A2, args.A3, ReadPanicFrame(session, args.A4));
        session.RequestExit(128 + signal);
        return 0;
    }

    [LoggerMessage(EventId = 400, Level = LogLevel.Information, Message = "the Linux application made system call {Syscall} (at rip 0x{Rip:x}), which the Linux personality does not implement: it got -ENOSYS")]
    private static partial void LogUnimplementedSyscall(ILogger logger, string syscall, ulong rip);

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

    /// <summary>
    /// <c>console_write</c>/<c>debug_write</c>: copies what fits into the run's bounded console queue and returns that
    /// count (a short write when the queue is nearly full). A full queue waits up to
    /// <see cref="GuestSession.ConsoleWriteWait"/> (woken at once when the run stops) and then answers
    /// <see cref="HypercallStatus.TryAgain"/>; past the run's output limit the answer is <see cref="HypercallStatus.NoSpace"/>;
    /// a stream that failed answers <see cref="HypercallStatus.IoError"/>. The vCPU thread never writes to the stream
    /// (except to a plain <see cref="MemoryStream"/>, a copy that cannot stall: <see cref="ConsoleOutputQueue"/>).
    /// </summary>
    private static long Write(in HypercallArgs args, GuestSession session)
    {
        ulong length = Math.Min(args.A2, MaxWriteChunk);
        if (!session.Memory.TryGetReadOnlySpan(new GuestAddress(args.A1), length, out ReadOnlySpan<byte> span))
        {
            return (long)HypercallStatus.Fault;
        }
        if (length == 0)
        {
            return 0;
        }
        ConsoleOutputQueue queue = session.ConsoleQueue;
        if (queue.Failed)
        {
            return (long)HypercallStatus.IoError;
        }
        int space = queue.Space;
        if (space == 0)
        {
            space = queue.WaitForSpace(GuestSession.ConsoleWriteWait, session.Stopping);
            if (queue.Failed)
            {
                return (long)HypercallStatus.IoError;
            }
            if (space == 0)
            {
                return (long)HypercallStatus.TryAgain;
            }
        }
        long allowed = session.TakeConsoleAllowance((long)Math.Min((ulong)space, length));
        if (allowed == 0)
        {
            session.CountConsoleDiscarded((long)length);
            return (long)HypercallStatus.NoSpace;
        }
        queue.Write(span[..(int)allowed]);
        return allowed;
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
        PanicFrame? frame = ReadPanicFrame(session, args.A3);
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

    /// <summary>The guest's optional register frame at guest-physical <paramref name="address"/> (0: none), copied once; null when absent, outside memory or of a size it cannot be.</summary>
    private static PanicFrame? ReadPanicFrame(GuestSession session, ulong address) =>
        address != 0 && session.Memory.TryRead(new GuestAddress(address), out PanicFrame copy)
            && copy.Size >= PanicConstants.MinFrameSize && copy.Size <= 4096 ? copy : null;

    private static long Poll(in HypercallArgs args, GuestSession session)
    {
        long deadline = args.A1 > long.MaxValue ? long.MaxValue : (long)args.A1;
        return (long)session.WaitForEvents(args.A2, deadline);
    }
}
