namespace Paravirt.Hypervisor.Running;

/// <summary>Options for one guest run.</summary>
public sealed record GuestRunOptions
{
    /// <summary>Default guest memory: 64 MiB.</summary>
    public const ulong DefaultMemorySize = 64UL << 20;

    /// <summary>Backend name: <c>auto</c>, <c>kvm</c>, <c>whp</c> or <c>emulator</c>.</summary>
    public string Backend { get; init; } = Backends.BackendSelector.Auto;

    /// <summary>Guest memory size in bytes (a multiple of 4 KiB).</summary>
    public ulong MemorySize { get; init; } = DefaultMemorySize;

    /// <summary>Wall-clock limit; null for none.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Instruction budget (emulator only); null for none.</summary>
    public ulong? InstructionBudget { get; init; }

    /// <summary>
    /// Where console and debug output go; null for <see cref="Stream.Null"/>. Written by a background thread, so a
    /// stream that stalls never stalls the guest; a plain <see cref="MemoryStream"/> (exactly that type) is written on
    /// the vCPU thread, which is faster for a short run and cannot stall.
    /// </summary>
    public Stream? ConsoleOutput { get; init; }

    /// <summary>
    /// The run's paravirtual devices (console, block, net), in the order the guest enumerates them; a device's index
    /// is its event port (at most 64). The caller creates fresh instances for each run, owns them, and disposes them
    /// after the run. Empty by default (then <see cref="Abi.FeatureBits.Devices"/> is not offered).
    /// </summary>
    public IReadOnlyList<Devices.VirtualDevice> Devices { get; init; } = [];

    /// <summary>Caps on the host resources the guest can make the host spend (defaults safe for untrusted guests).</summary>
    public GuestLimits Limits { get; init; } = GuestLimits.Default;

    /// <summary>Command line passed to the guest (at most 4095 bytes of UTF-8). For a Linux executable it goes to the Linux personality (e.g. <c>verbose</c>), not to the application.</summary>
    public string CommandLine { get; init; } = "";

    /// <summary>
    /// For a Linux executable (<see cref="Loading.GuestImageKind.LinuxExecutable"/>): its <c>argv</c>, program name first;
    /// empty means just the image's file name. Ignored for Paravirt images.
    /// </summary>
    public IReadOnlyList<string> Arguments { get; init; } = [];

    /// <summary>
    /// For a Linux executable: its environment, as <c>KEY=VALUE</c> strings (nothing is inherited from the host
    /// process). Ignored for Paravirt images.
    /// </summary>
    public IReadOnlyList<string> Environment { get; init; } = [];

    /// <summary>
    /// A debugger to attach (e.g. <see cref="Debugging.Gdb.GdbStub"/>): it gets the guest stopped before its first
    /// instruction and at every breakpoint, step, interrupt and fault. Needs a backend that declares
    /// <see cref="Backends.BackendCapabilities.GuestDebug"/> (the emulator, KVM). The <see cref="Timeout"/> keeps
    /// counting while the guest is stopped. Null (the default) for none.
    /// </summary>
    public Debugging.IGuestDebugger? Debugger { get; init; }

    /// <summary>
    /// Where to write an ELF core file when the guest crashes (registers and the mapped guest memory at its virtual
    /// addresses; <c>gdb IMAGE CORE</c> opens it). Null (the default) for none.
    /// </summary>
    public string? CoreFile { get; init; }
}
