using MessagePack;
using MessagePack.Resolvers;

namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>How a <see cref="Sandbox"/> is made and how its calls run.</summary>
public sealed record SandboxOptions
{
    /// <summary>Default guest memory: 16 MiB.</summary>
    public const ulong DefaultMemorySize = 16UL << 20;

    /// <summary>Backend: <c>auto</c> (default), <c>kvm</c>, <c>whp</c> or <c>emulator</c>.</summary>
    public string Backend { get; init; } = Backends.BackendSelector.Auto;

    /// <summary>Guest memory in bytes (a multiple of 4 KiB, at least 2 MiB).</summary>
    public ulong MemorySize { get; init; } = DefaultMemorySize;

    /// <summary>Wall-clock limit of the guest's initialization (up to its ready point); null for none. Default 30 s.</summary>
    public TimeSpan? InitializationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Wall-clock limit of each call; null for none. A call that passes it fails and poisons the sandbox.</summary>
    public TimeSpan? CallTimeout { get; init; }

    /// <summary>Most guest instructions one call may execute (backends that count instructions: the emulator); null for none.</summary>
    public ulong? CallInstructionBudget { get; init; }

    /// <summary>Restore the snapshot taken right after initialization after every call (each call starts from a clean state; a failed call needs no manual restore).</summary>
    public bool RestoreAfterEachCall { get; init; }

    /// <summary>The sandbox's own host functions (added to those registered through <c>AddParavirt().AddHostFunction</c>).</summary>
    public HostFunctionCollection HostFunctions { get; init; } = [];

    /// <summary>Factories of the sandbox's devices: each sandbox gets fresh instances (and disposes them), so sandboxes never share a device.</summary>
    public IReadOnlyList<Func<VirtualDevice>> Devices { get; init; } = [];

    /// <summary>
    /// How arguments and results are serialized: by default MessagePack-CSharp's <c>ContractlessStandardResolver</c>
    /// (plain records and classes work without attributes, as maps keyed by member name; <c>[MessagePackObject]</c>
    /// types with <c>[Key(n)]</c> as arrays) with <see cref="MessagePackSecurity.UntrustedData"/>. The contractless and
    /// dynamic resolvers generate code at run time; for NativeAOT use a resolver made by MessagePack's <c>mpc</c> tool.
    /// </summary>
    public MessagePackSerializerOptions SerializerOptions { get; init; } = DefaultSerializerOptions;

    /// <summary>Limits on every payload from the guest (results, host-function calls), checked before anything decodes it.</summary>
    public MessagePackLimits PayloadLimits { get; init; } = MessagePackLimits.Default;

    /// <summary>
    /// Caps on what the guest can make the host spend beyond its memory (<see cref="GuestLimits"/>): the console output
    /// buffer, and the console output the sandbox may produce over its whole life (restores do not reset it). At the
    /// end of each call the host waits up to <see cref="GuestLimits.OutputDrainTimeout"/> (never past
    /// <see cref="CallTimeout"/>) for the output's reader, so output written during a call has reached
    /// <see cref="ConsoleOutput"/> when the call returns.
    /// </summary>
    public GuestLimits Limits { get; init; } = GuestLimits.Default;

    /// <summary>Where the guest's console and debug output go; null for none.</summary>
    public Stream? ConsoleOutput { get; init; }

    /// <summary>Command line passed to the guest.</summary>
    public string CommandLine { get; init; } = "";

    /// <summary>Logs (host-function failures, sandbox events); null for none.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>The default <see cref="SerializerOptions"/>.</summary>
    public static MessagePackSerializerOptions DefaultSerializerOptions { get; } =
        ContractlessStandardResolver.Options.WithSecurity(MessagePackSecurity.UntrustedData);
}
