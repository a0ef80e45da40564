using System.Globalization;

namespace Paravirt.Hypervisor.Debugging;

/// <summary>What kind of failure ended (or stopped) a guest.</summary>
public enum GuestFaultKind
{
    /// <summary>A CPU exception the guest did not handle (#DE, #UD, #GP, #PF, ...; <see cref="GuestFaultInfo.Vector"/>).</summary>
    CpuException,
    /// <summary>The vCPU shut down: a triple fault (on hardware backends every unhandled exception ends this way, the vector is unknown).</summary>
    TripleFault,
    /// <summary>A stray <c>hlt</c>.</summary>
    Halt,
    /// <summary>Port I/O other than the hypercall port.</summary>
    PortIo,
    /// <summary>An access to guest-physical memory that does not exist (<see cref="GuestFaultInfo.Address"/>).</summary>
    Mmio,
    /// <summary>The guest called the panic hypercall (<c>pv_panic</c>, a C# runtime error, a Linux-personality fatal signal).</summary>
    Panic,
}

/// <summary>A guest failure, typed: what a crash report and a debugger show first.</summary>
/// <param name="Kind">What kind of failure.</param>
/// <param name="Description">One line, e.g. <c>divide error (#DE)</c> or <c>panic: IndexOutOfRangeException</c>.</param>
/// <param name="Vector">The x86 exception vector where known (0 #DE, 6 #UD, 13 #GP, 14 #PF, ...).</param>
/// <param name="Address">The faulting data address where known (page fault, MMIO).</param>
/// <param name="Signal">The Linux signal number a Linux-personality guest reported with its panic, or 0.</param>
public sealed record GuestFaultInfo(GuestFaultKind Kind, string Description, int? Vector = null, ulong? Address = null, int Signal = 0)
{
    /// <summary>The short mnemonic of an exception vector (<c>#DE</c>, <c>#PF</c>, ...), or <c>vector N</c>.</summary>
    public static string VectorName(int vector) => vector switch
    {
        0 => "#DE", 1 => "#DB", 2 => "NMI", 3 => "#BP", 4 => "#OF", 5 => "#BR", 6 => "#UD", 7 => "#NM", 8 => "#DF",
        10 => "#TS", 11 => "#NP", 12 => "#SS", 13 => "#GP", 14 => "#PF", 16 => "#MF", 17 => "#AC", 18 => "#MC",
        19 => "#XM", 20 => "#VE", 21 => "#CP",
        _ => "vector " + vector.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// The Unix signal this failure corresponds to, as a debugger and a core file report it: the signal a
    /// Linux-personality guest gave, else SIGFPE for #DE, SIGILL for #UD, SIGTRAP for #DB/#BP, SIGABRT for a panic,
    /// SIGBUS for #AC, SIGSEGV for everything else (page faults, #GP, MMIO, triple faults).
    /// </summary>
    public int UnixSignal => Signal != 0 ? Signal : Kind switch
    {
        GuestFaultKind.Panic => 6,
        GuestFaultKind.Halt => 4,
        _ => Vector switch
        {
            0 or 16 or 19 => 8,
            6 => 4,
            1 or 3 => 5,
            17 => 7,
            _ => 11,
        },
    };

    /// <summary>Classifies a failing exit (a backend's <see cref="VcpuExitKind.Fault"/>, <see cref="VcpuExitKind.Shutdown"/>, ...).</summary>
    internal static GuestFaultInfo FromExit(in VcpuExit exit, string description)
    {
        switch (exit.Kind)
        {
            case VcpuExitKind.Shutdown:
                return new GuestFaultInfo(GuestFaultKind.TripleFault, description);
            case VcpuExitKind.Halt:
                return new GuestFaultInfo(GuestFaultKind.Halt, description);
            case VcpuExitKind.IoIn or VcpuExitKind.IoOut:
                return new GuestFaultInfo(GuestFaultKind.PortIo, description, Address: exit.Address);
            case VcpuExitKind.Mmio:
                return new GuestFaultInfo(GuestFaultKind.Mmio, description, 14, exit.Address);
            default:
                // The emulator names the exception in its detail, e.g. "divide error (#DE)", "page fault: read of 8
                // bytes at 0x..."; the tag is the one part of the text relied on.
                string detail = exit.Detail ?? "";
                int? vector = detail.StartsWith("page fault", StringComparison.Ordinal) ? 14 : null;
                for (int v = 0; v < 32 && vector is null; v++)
                {
                    if (detail.Contains("(" + VectorName(v) + ")", StringComparison.Ordinal))
                    {
                        vector = v;
                    }
                }
                ulong? address = null;
                int at = detail.LastIndexOf(" at 0x", StringComparison.Ordinal);
                if (vector == 14 && at >= 0)
                {
                    ReadOnlySpan<char> hex = detail.AsSpan(at + 6);
                    int n = 0;
                    while (n < hex.Length && char.IsAsciiHexDigit(hex[n]))
                    {
                        n++;
                    }
                    if (ulong.TryParse(hex[..n], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong a))
                    {
                        address = a;
                    }
                }
                return new GuestFaultInfo(GuestFaultKind.CpuException, description, vector, address);
        }
    }
}
