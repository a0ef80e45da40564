using System.Runtime.InteropServices;

namespace Paravirt.Abi;

/// <summary>
/// Boot information the host writes into guest memory before the first instruction; its address arrives in
/// <c>rdi</c>. Append-only: it starts with its own size, new fields go at the end and bump the minor version, and a
/// guest reads a field only when <see cref="Size"/> covers it (so an old guest keeps working on a new host and a
/// new guest can detect an old host).
/// </summary>
[AbiExport("pv_boot_info")]
[StructLayout(LayoutKind.Explicit, Size = 80)]
public struct BootInfo
{
    /// <summary>Size of this structure as written by the host, in bytes.</summary>
    [FieldOffset(0)] public uint Size;
    /// <summary>Host ABI major version.</summary>
    [FieldOffset(4)] public ushort AbiMajor;
    /// <summary>Host ABI minor version.</summary>
    [FieldOffset(6)] public ushort AbiMinor;
    /// <summary>Guest-physical address of the hypercall page (see <see cref="Abi.HypercallPage"/>).</summary>
    [FieldOffset(8)] public ulong HypercallPage;
    /// <summary>Total guest memory in bytes; memory is <c>[0, MemorySize)</c>.</summary>
    [FieldOffset(16)] public ulong MemorySize;
    /// <summary>First free guest-physical address after the loaded image (page aligned): the guest owns <c>[HeapStart, MemorySize)</c>.</summary>
    [FieldOffset(24)] public ulong HeapStart;
    /// <summary>Guest-physical address of the NUL-terminated command line, or 0 when none.</summary>
    [FieldOffset(32)] public ulong CommandLine;
    /// <summary>Length of the command line in bytes, without the NUL.</summary>
    [FieldOffset(40)] public uint CommandLineLength;
    /// <summary>Number of vCPUs (1 in ABI 1.0).</summary>
    [FieldOffset(44)] public uint VcpuCount;
    /// <summary>Feature word 0 offered by the host (the same value <see cref="HypercallCode.Features"/> returns for word 0).</summary>
    [FieldOffset(48)] public ulong Features0;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(56)] public ulong Reserved0;
    /// <summary>ABI 1.1: guest-physical address of <see cref="BootModuleCount"/> <see cref="BootModule"/> entries (the Linux personality's application image and arguments), or 0 when none.</summary>
    [FieldOffset(64)] public ulong BootModules;
    /// <summary>ABI 1.1: number of entries at <see cref="BootModules"/>.</summary>
    [FieldOffset(72)] public uint BootModuleCount;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(76)] public uint Reserved1;

    /// <summary>The size of this structure in ABI version <see cref="AbiVersion.Current"/>.</summary>
    public const int CurrentSize = 80;
}

/// <summary>Feature bits of feature word 0 (see <see cref="HypercallCode.Features"/>). Append-only.</summary>
[AbiExport("pv_feature0")]
[Flags]
public enum FeatureBits : ulong
{
    /// <summary>No feature.</summary>
    None = 0,
    /// <summary><see cref="HypercallCode.ConsoleWrite"/> is available.</summary>
    Console = 1UL << 0,
    /// <summary><see cref="HypercallCode.ClockWall"/> returns real wall-clock time (otherwise 0).</summary>
    WallClock = 1UL << 1,
    /// <summary><see cref="HypercallCode.Poll"/> is available.</summary>
    Poll = 1UL << 2,
    /// <summary>Paravirtual devices: <see cref="HypercallCode.DeviceInfo"/>, the attach calls, shared rings and <see cref="HypercallCode.EventSend"/>.</summary>
    Devices = 1UL << 3,
    /// <summary>
    /// The host signals the end of a console's input: <see cref="ConsoleInputFlags.EndOfInput"/> in the console
    /// page's <see cref="ConsoleInterface.InFlagsOffset"/> word (ABI 1.1). Offered only; nothing to accept.
    /// </summary>
    ConsoleEndOfInput = 1UL << 4,
    /// <summary>ABI 1.1: <see cref="HypercallCode.Random"/> returns bytes from the host's cryptographic random number generator.</summary>
    Entropy = 1UL << 5,
    /// <summary>The guest runs in a sandbox: <see cref="HypercallCode.SandboxReady"/>, <see cref="HypercallCode.SandboxReturn"/> and <see cref="HypercallCode.HostCall"/> serve typed calls (see <see cref="SandboxConstants"/>).</summary>
    Sandbox = 1UL << 6,
    /// <summary>
    /// ABI 1.1: the generic device model: <see cref="HypercallCode.DeviceDescribe"/>, <see cref="HypercallCode.DeviceConfig"/>,
    /// <see cref="HypercallCode.DeviceAttach"/> and <see cref="HypercallCode.DeviceReset"/> work for every device,
    /// built-in or user-defined (<see cref="DeviceTypes.UserFirst"/>), with an event port per queue. Offered with
    /// <see cref="Devices"/>.
    /// </summary>
    DeviceModel = 1UL << 7,
    /// <summary><see cref="HypercallCode.TimerSet"/> is available: the backend delivers the paravirtual timer as an external interrupt through the guest's IDT (ABI 1.1).</summary>
    Timer = 1UL << 9,
}
