namespace Paravirt.Abi;

/// <summary>
/// Hypercall function codes, in the style of IBM VM DIAGNOSE codes: numbered, grouped by the high byte and
/// append-only. A number is never renumbered or reused; a withdrawn call keeps its number and answers
/// <see cref="HypercallStatus.NotImplemented"/>.
/// </summary>
/// <remarks>
/// Groups: <c>0x00xx</c> core, <c>0x01xx</c> console, <c>0x02xx</c> block, <c>0x03xx</c> net,
/// <c>0x04xx</c> event channels, <c>0x1000</c>-<c>0x1FFF</c> user-defined (registered by the host application,
/// see <see cref="HypercallRanges"/>).
/// </remarks>
[AbiExport("pv_hypercall")]
public enum HypercallCode : uint
{
    /// <summary>Returns the host's ABI version, packed as <c>(major &lt;&lt; 16) | minor</c>. No arguments.</summary>
    Version = 0x0000,
    /// <summary><c>features(word)</c>: returns the 64 feature bits the host offers in word <c>word</c> (see <see cref="FeatureBits"/>); words the host does not know return 0.</summary>
    Features = 0x0001,
    /// <summary><c>exit(status)</c>: stops the guest; <c>status</c> (low 8 bits used by the CLI as process exit code) is returned to the host application. Does not return.</summary>
    Exit = 0x0002,
    /// <summary><c>debug_write(buf, len)</c>: writes bytes synchronously to the host's debug/console output, for early boot and panics. Returns the number of bytes written.</summary>
    DebugWrite = 0x0003,
    /// <summary>Returns monotonic time in nanoseconds since an unspecified start (never goes backwards). No arguments.</summary>
    ClockMonotonic = 0x0004,
    /// <summary>Returns wall-clock time in nanoseconds since the Unix epoch (UTC). No arguments.</summary>
    ClockWall = 0x0005,
    /// <summary><c>poll(deadline_ns, events)</c>: blocks until one of the event bits in <c>events</c> is pending or the monotonic clock reaches <c>deadline_ns</c>; returns the pending event bits (0 on timeout).</summary>
    Poll = 0x0006,
    /// <summary><c>accept_features(word, bits)</c>: the guest accepts a subset of the offered bits of word <c>word</c>; returns the accepted set (bits not offered are dropped).</summary>
    AcceptFeatures = 0x0007,
    /// <summary><c>yield()</c>: gives the host a chance to run other work. Returns 0.</summary>
    Yield = 0x0008,

    /// <summary><c>console_write(buf, len)</c>: writes bytes to the console output stream. Returns bytes written.</summary>
    ConsoleWrite = 0x0100,
}

/// <summary>Ranges of <see cref="HypercallCode"/> values with a fixed meaning.</summary>
[AbiExport("PV_HYPERCALL_RANGE")]
public static class HypercallRanges
{
    /// <summary>First code reserved for hypercalls that the host application registers (as z/VM reserves X'100'-X'1FC' for customers).</summary>
    public const uint UserFirst = 0x1000;
    /// <summary>Last user-defined code.</summary>
    public const uint UserLast = 0x1FFF;

    /// <summary>True when <paramref name="code"/> is in the user-defined range.</summary>
    public static bool IsUserDefined(uint code) => code - UserFirst <= UserLast - UserFirst;
}
