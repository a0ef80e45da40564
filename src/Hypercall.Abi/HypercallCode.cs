namespace Paravirt.Abi;

/// <summary>
/// Hypercall function codes, in the style of IBM VM DIAGNOSE codes: numbered, grouped by the high byte and
/// append-only. A number is never renumbered or reused; a withdrawn call keeps its number and answers
/// <see cref="HypercallStatus.NotImplemented"/>.
/// </summary>
/// <remarks>
/// Groups: <c>0x00xx</c> core, <c>0x01xx</c> console, <c>0x02xx</c> block, <c>0x03xx</c> net,
/// <c>0x04xx</c> event channels, <c>0x05xx</c> guest calls (sandboxes), <c>0x06xx</c> the generic device model, <c>0x1000</c>-<c>0x1FFF</c> user-defined (registered by the host application,
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
    /// <summary><c>device_info(index, buf, len)</c>: writes the <see cref="DeviceInfo"/> of attached device <c>index</c> (0-based) to <c>buf</c> (<c>len</c> &gt;= its size); returns the bytes written, or <see cref="HypercallStatus.NoDevice"/> past the last device.</summary>
    DeviceInfo = 0x0009,
    /// <summary>ABI 1.1: <c>random(buf, len)</c>: fills <c>buf</c> with up to <c>len</c> bytes from the host's cryptographic random number generator (at most 4096 per call); returns the bytes written. Offered with <see cref="FeatureBits.Entropy"/>.</summary>
    Random = 0x000A,
    /// <summary>ABI 1.1: <c>syscall_unimplemented(number, rip)</c>: the guest's Linux personality answered Linux system call <c>number</c> (issued at user <c>rip</c>) with <c>-ENOSYS</c>; the host counts it and names it once when verbose. Returns 0.</summary>
    SyscallUnimplemented = 0x000B,
    /// <summary>ABI 1.1: <c>exit_signal(signo, address, rip, frame)</c>: the guest's Linux personality ends the run because its application was killed by signal <c>signo</c> (for a fault: at data <c>address</c>, instruction <c>rip</c>); the exit status is <c>128 + signo</c>, as a shell reports it. <c>frame</c> is the guest-physical address of a <see cref="PanicFrame"/> with the application's registers at the failure (0: none), for the host's crash report, core file and debugger. Does not return.</summary>
    ExitSignal = 0x000C,
    /// <summary><c>panic(message, length, frame)</c> (ABI 1.1): the guest cannot go on. The host ends the run as a crash and reports it with the registers, the code around rip and a symbolized backtrace: those of the optional <see cref="PanicFrame"/> at guest-physical <c>frame</c>, else those at this call. <c>message</c> is UTF-8 (at most <see cref="PanicConstants.MaxMessageLength"/> bytes are read). Does not return; a 1.0 host answers <see cref="HypercallStatus.NotImplemented"/> (then write the message and exit).</summary>
    Panic = 0x0010,
    /// <summary>
    /// <c>timer_set(deadline_ns, vector)</c>: arms the one-shot paravirtual timer (ABI 1.1, feature <see cref="FeatureBits.Timer"/>):
    /// when the monotonic clock (<see cref="ClockMonotonic"/>) reaches <c>deadline_ns</c>, external interrupt
    /// <c>vector</c> (32-255) is raised; the guest takes it through its IDT once RFLAGS.IF is set (it stays pending
    /// while IF is clear, as a level-triggered line without an APIC), and a guest blocked in <see cref="Poll"/> wakes
    /// up (poll returns 0). A deadline already passed fires at once; arming again replaces the previous deadline;
    /// <c>deadline_ns</c> 0 cancels. Returns 0, <see cref="HypercallStatus.Invalid"/> for a vector outside 32-255, or
    /// <see cref="HypercallStatus.NotImplemented"/> when the backend cannot inject interrupts (the feature is not offered).
    /// </summary>
    TimerSet = 0x0011,

    /// <summary><c>console_write(buf, len)</c>: writes bytes to the console output stream. Returns bytes written.</summary>
    ConsoleWrite = 0x0100,
    /// <summary><c>console_attach(device, iface)</c>: shares a <see cref="ConsoleInterface"/> page at <c>iface</c> (page aligned) with console device <c>device</c>; returns the event port the host signals when input arrives or output space frees up.</summary>
    ConsoleAttach = 0x0101,

    /// <summary><c>block_attach(device, ring, order)</c>: shares a block ring (a <see cref="RingHeader"/> followed by <c>2^order</c> 64-byte <see cref="BlockRequest"/>/<see cref="BlockResponse"/> slots) at <c>ring</c> with block device <c>device</c>; returns the event port the host signals when responses are ready.</summary>
    BlockAttach = 0x0200,

    /// <summary><c>net_attach(device, tx_ring, rx_ring, order)</c>: shares a transmit ring (<see cref="NetTxRequest"/>/<see cref="NetTxResponse"/>) and a receive ring (<see cref="NetRxRequest"/>/<see cref="NetRxResponse"/>) of <c>2^order</c> 32-byte slots each with net device <c>device</c>; returns the event port the host signals when frames arrive or transmissions complete.</summary>
    NetAttach = 0x0300,

    /// <summary><c>event_send(port)</c>: the doorbell: tells the host there is new work on the rings bound to <c>port</c>. Returns 0.</summary>
    EventSend = 0x0400,

    /// <summary><c>sandbox_ready(buffer, size)</c>: the guest finished its initialization and serves calls; <c>buffer</c> (<c>size</c> bytes, <see cref="SandboxConstants.MinCallBuffer"/> to <see cref="SandboxConstants.MaxCallBuffer"/>) is its call buffer. The vCPU stops here until the host calls a guest function; then the call returns the length of the call (<c>[name, args]</c>, MessagePack) the host wrote at <c>buffer</c>. Needs <see cref="FeatureBits.Sandbox"/>.</summary>
    SandboxReady = 0x0500,
    /// <summary><c>sandbox_return(status, result, length)</c>: the current call is done: <c>status</c> 0 with a MessagePack value at <c>result</c> (<c>length</c> bytes), or a negative <see cref="HypercallStatus"/> with a MessagePack <c>str</c> message there. Returns, like <see cref="SandboxReady"/>, the length of the next call in the call buffer.</summary>
    SandboxReturn = 0x0501,
    /// <summary><c>host_call(request, length, response, capacity)</c>: calls a host function: <c>request</c> holds <c>[name, args]</c> (MessagePack, <c>length</c> bytes). Returns the length of the MessagePack result written at <c>response</c>, or a negative <see cref="HypercallStatus"/> with a MessagePack <c>str</c> message written there (when it fits).</summary>
    HostCall = 0x0502,

    /// <summary>
    /// ABI 1.1: <c>device_describe(index, buf, len)</c>: writes the <see cref="DeviceDescriptor"/> of device
    /// <c>index</c> (0-based; any device, built-in or user-defined) to <c>buf</c> (<c>len</c> &gt;= its size); returns
    /// the bytes written, <see cref="HypercallStatus.NoDevice"/> past the last device. Needs <see cref="FeatureBits.DeviceModel"/>.
    /// </summary>
    DeviceDescribe = 0x0600,
    /// <summary>
    /// ABI 1.1: <c>device_config(index, buf, len)</c>: copies device <c>index</c>'s configuration
    /// (<see cref="DeviceDescriptor.ConfigSize"/> bytes, whose layout the device type defines, e.g.
    /// <see cref="BlockConfig"/>, <see cref="NetConfig"/>) to <c>buf</c>; returns the bytes written, or
    /// <see cref="HypercallStatus.Invalid"/> when <c>len</c> is smaller than the configuration.
    /// </summary>
    DeviceConfig = 0x0601,
    /// <summary>
    /// ABI 1.1: <c>device_attach(index, queues, count)</c>: shares the device's queues: <c>queues</c> is an array of
    /// <c>count</c> <see cref="QueueDescriptor"/>s, one per queue the device declares
    /// (<see cref="DeviceDescriptor.QueueCount"/>, in its order), each naming a page-aligned ring (a
    /// <see cref="RingHeader"/> and <c>2^order</c> slots) or region in guest memory. The host validates every queue,
    /// activates the device and writes each queue's event port into its descriptor's <c>port</c>; returns 0,
    /// <see cref="HypercallStatus.Busy"/> when already attached, <see cref="HypercallStatus.Invalid"/> for a wrong
    /// count, alignment, order or overlapping queues, <see cref="HypercallStatus.Fault"/> outside guest memory,
    /// <see cref="HypercallStatus.NoSpace"/> when no event port is free, or what the device answers.
    /// </summary>
    DeviceAttach = 0x0602,
    /// <summary>
    /// ABI 1.1: <c>device_reset(index)</c>: detaches device <c>index</c>: the host stops using its queues (the guest
    /// may free or reuse their memory once the call returns), releases its event ports and returns the device to the
    /// state before attach; returns 0 (also when it was not attached), or <see cref="HypercallStatus.Broken"/>.
    /// </summary>
    DeviceReset = 0x0603,
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
