using System.Runtime.InteropServices;

namespace Paravirt.Abi;

/// <summary>
/// Describes one attached device (<see cref="HypercallCode.DeviceInfo"/>). Fields that do not apply to the kind
/// are zero.
/// </summary>
[AbiExport("pv_device_info")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public unsafe struct DeviceInfo
{
    /// <summary>A <see cref="DeviceKind"/>.</summary>
    [FieldOffset(0)] public uint Kind;
    /// <summary><see cref="DeviceFlags"/>.</summary>
    [FieldOffset(4)] public uint Flags;
    /// <summary>Device name, NUL-padded ASCII (the name in the guest's manifest, e.g. "disk0").</summary>
    [FieldOffset(8)] public fixed byte Name[24];
    /// <summary>Block: capacity in 512-byte sectors.</summary>
    [FieldOffset(32)] public ulong Sectors;
    /// <summary>Block: sector size in bytes (always <see cref="BlockConstants.SectorSize"/>).</summary>
    [FieldOffset(40)] public uint SectorSize;
    /// <summary>Net: MTU in bytes (payload, without the 14-byte Ethernet header).</summary>
    [FieldOffset(44)] public uint Mtu;
    /// <summary>Net: MAC address.</summary>
    [FieldOffset(48)] public fixed byte Mac[6];
    /// <summary>Largest ring order (log2 of slots) the host accepts for this device.</summary>
    [FieldOffset(54)] public ushort MaxRingOrder;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(56)] public ulong Reserved;
}

/// <summary>
/// Describes one device in the generic device model (<see cref="HypercallCode.DeviceDescribe"/>, ABI 1.1): its type
/// and version (what protocol its queues speak), how many queues it has and how large their rings may be, and how
/// large its configuration is (<see cref="HypercallCode.DeviceConfig"/>).
/// </summary>
[AbiExport("pv_device_desc")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public unsafe struct DeviceDescriptor
{
    /// <summary>The device type: a <see cref="DeviceKind"/> for the built-in devices, or a user-defined type (at least <see cref="DeviceTypes.UserFirst"/>).</summary>
    [FieldOffset(0)] public uint Type;
    /// <summary>The version of the device type's protocol (its queue entries and configuration), chosen by the device's author.</summary>
    [FieldOffset(4)] public uint Version;
    /// <summary><see cref="DeviceFlags"/>.</summary>
    [FieldOffset(8)] public uint Flags;
    /// <summary>Number of queues <see cref="HypercallCode.DeviceAttach"/> takes (at most <see cref="DeviceTypes.MaxQueues"/>).</summary>
    [FieldOffset(12)] public ushort QueueCount;
    /// <summary>Largest ring order (log2 of slots) the host accepts for the device's rings.</summary>
    [FieldOffset(14)] public ushort MaxRingOrder;
    /// <summary>Bytes of configuration <see cref="HypercallCode.DeviceConfig"/> returns (at most <see cref="DeviceTypes.MaxConfigSize"/>).</summary>
    [FieldOffset(16)] public uint ConfigSize;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(20)] public uint Reserved0;
    /// <summary>Device name, NUL-padded ASCII (e.g. "kv0").</summary>
    [FieldOffset(24)] public fixed byte Name[24];
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(48)] public ulong Reserved1;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(56)] public ulong Reserved2;
}

/// <summary>
/// One queue the guest shares with <see cref="HypercallCode.DeviceAttach"/> (ABI 1.1): a ring (a
/// <see cref="RingHeader"/> followed by <c>2^order</c> slots) or, for a device whose queue is a fixed region such as
/// the console page, that region with order 0. The host writes the queue's event port into <see cref="Port"/>.
/// </summary>
[AbiExport("pv_queue_desc")]
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct QueueDescriptor
{
    /// <summary>Guest-physical address of the ring or region (page aligned).</summary>
    [FieldOffset(0)] public ulong Address;
    /// <summary>Ring order (log2 of the slot count); 0 for a region.</summary>
    [FieldOffset(8)] public uint Order;
    /// <summary>Written by the host: the event port the host signals for this queue and the guest rings with <see cref="HypercallCode.EventSend"/>.</summary>
    [FieldOffset(12)] public uint Port;
}

/// <summary>Constants of the generic device model (ABI 1.1).</summary>
[AbiExport("PV_DEVICE_TYPE")]
public static class DeviceTypes
{
    /// <summary>The first device type a user may define (types below it are <see cref="DeviceKind"/>s, the project's own).</summary>
    public const uint UserFirst = 0x10000;
    /// <summary>Most queues one device may declare.</summary>
    public const uint MaxQueues = 8;
    /// <summary>Largest device configuration, in bytes.</summary>
    public const uint MaxConfigSize = 256;
}

/// <summary>The configuration of a block device (<see cref="HypercallCode.DeviceConfig"/>, ABI 1.1).</summary>
[AbiExport("pv_block_config")]
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct BlockConfig
{
    /// <summary>Capacity in sectors.</summary>
    [FieldOffset(0)] public ulong Sectors;
    /// <summary>Sector size in bytes (<see cref="BlockConstants.SectorSize"/>).</summary>
    [FieldOffset(8)] public uint SectorSize;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(12)] public uint Reserved;
}

/// <summary>The configuration of a net device (<see cref="HypercallCode.DeviceConfig"/>, ABI 1.1). Queue 0 transmits, queue 1 receives.</summary>
[AbiExport("pv_net_config")]
[StructLayout(LayoutKind.Explicit, Size = 16)]
public unsafe struct NetConfig
{
    /// <summary>MAC address.</summary>
    [FieldOffset(0)] public fixed byte Mac[6];
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(6)] public ushort Reserved0;
    /// <summary>MTU in bytes (without the 14-byte Ethernet header).</summary>
    [FieldOffset(8)] public uint Mtu;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(12)] public uint Reserved1;
}

/// <summary>Device flags (<see cref="DeviceInfo.Flags"/>, <see cref="DeviceDescriptor.Flags"/>). Append-only.</summary>
[AbiExport("pv_device_flags")]
[Flags]
public enum DeviceFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary>Block: the disk is read-only; writes and discards answer <see cref="HypercallStatus.ReadOnly"/>.</summary>
    ReadOnly = 1u << 0,
    /// <summary>The device stopped because the guest corrupted its shared state; every call answers <see cref="HypercallStatus.Broken"/>.</summary>
    Broken = 1u << 1,
}

/// <summary>
/// Header of a shared request/response ring, Xen <c>io/ring.h</c> style: free-running u32 indices (they wrap; the
/// slot is <c>index &amp; (slots - 1)</c>), followed directly by the slots. The guest produces requests and the host
/// responses in the same slots. <c>req_event</c>/<c>rsp_event</c> implement event suppression: after pushing,
/// a producer notifies the other side only when the new producer index passed the consumer's event index
/// (<c>(new - event) &lt; (new - old)</c>). A host that sees <c>req_prod - rsp_prod &gt; slots</c> marks the device
/// broken.
/// </summary>
[AbiExport("pv_ring_header")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public unsafe struct RingHeader
{
    /// <summary>Requests produced by the guest.</summary>
    [FieldOffset(0)] public uint ReqProd;
    /// <summary>The host wants an event_send when <see cref="ReqProd"/> passes this.</summary>
    [FieldOffset(4)] public uint ReqEvent;
    /// <summary>Responses produced by the host.</summary>
    [FieldOffset(8)] public uint RspProd;
    /// <summary>The guest wants an event when <see cref="RspProd"/> passes this.</summary>
    [FieldOffset(12)] public uint RspEvent;
    /// <summary>Reserved, zero (pads the header to a cache line).</summary>
    [FieldOffset(16)] public fixed byte Reserved[48];
}

/// <summary>Ring constants.</summary>
[AbiExport("PV_RING")]
public static class RingConstants
{
    /// <summary>Size of <see cref="RingHeader"/>; slots start at this offset.</summary>
    public const uint HeaderSize = 64;
    /// <summary>Largest ring order any host accepts (256 slots).</summary>
    public const uint MaxOrder = 8;
    /// <summary>Number of event ports (bits of the poll mask).</summary>
    public const uint EventPorts = 64;
}

/// <summary>Block device constants.</summary>
[AbiExport("PV_BLOCK")]
public static class BlockConstants
{
    /// <summary>Sector size in bytes.</summary>
    public const uint SectorSize = 512;
    /// <summary>Size of one ring slot.</summary>
    public const uint SlotSize = 64;
    /// <summary>Largest transfer of one request (1 MiB).</summary>
    public const uint MaxTransfer = 1u << 20;
}

/// <summary>Block operations. Append-only.</summary>
[AbiExport("pv_block_op")]
public enum BlockOperation : uint
{
    /// <summary>Read <c>length</c> bytes from <c>sector</c> into <c>buffer</c>.</summary>
    Read = 0,
    /// <summary>Write <c>length</c> bytes from <c>buffer</c> to <c>sector</c>.</summary>
    Write = 1,
    /// <summary>Make every completed write durable (fsync) before responding; sector/buffer/length ignored.</summary>
    Flush = 2,
    /// <summary>The guest no longer needs <c>length</c> bytes at <c>sector</c> (reads afterwards return zeros); buffer ignored.</summary>
    Discard = 3,
}

/// <summary>A block request, written by the guest into a ring slot.</summary>
[AbiExport("pv_block_request")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlockRequest
{
    /// <summary>Guest's cookie, echoed in the response.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>A <see cref="BlockOperation"/>.</summary>
    [FieldOffset(8)] public uint Operation;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(12)] public uint Flags;
    /// <summary>First sector.</summary>
    [FieldOffset(16)] public ulong Sector;
    /// <summary>Guest-physical address of the data buffer (read and write).</summary>
    [FieldOffset(24)] public ulong Buffer;
    /// <summary>Bytes to transfer: a multiple of <see cref="BlockConstants.SectorSize"/>, at most <see cref="BlockConstants.MaxTransfer"/>.</summary>
    [FieldOffset(32)] public uint Length;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(36)] public uint Reserved0;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(40)] public ulong Reserved1;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(48)] public ulong Reserved2;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(56)] public ulong Reserved3;
}

/// <summary>A block response, written by the host into the slot of the request it answers (in completion order).</summary>
[AbiExport("pv_block_response")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlockResponse
{
    /// <summary>The request's <see cref="BlockRequest.Id"/>.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>0 or a negative <see cref="HypercallStatus"/>.</summary>
    [FieldOffset(8)] public long Status;
    /// <summary>Bytes transferred.</summary>
    [FieldOffset(16)] public uint Length;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(20)] public uint Reserved0;
}

/// <summary>Net device constants.</summary>
[AbiExport("PV_NET")]
public static class NetConstants
{
    /// <summary>Size of one ring slot.</summary>
    public const uint SlotSize = 32;
    /// <summary>Default MTU.</summary>
    public const uint DefaultMtu = 1500;
    /// <summary>Ethernet header length.</summary>
    public const uint EthernetHeader = 14;
    /// <summary>Largest frame (a 9000-byte jumbo MTU plus the header).</summary>
    public const uint MaxFrame = 9014;
}

/// <summary>A frame to transmit (guest → host), in a transmit ring slot.</summary>
[AbiExport("pv_net_tx_request")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct NetTxRequest
{
    /// <summary>Guest's cookie, echoed in the response.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>Guest-physical address of the frame (Ethernet header first).</summary>
    [FieldOffset(8)] public ulong Buffer;
    /// <summary>Frame length: at least 14, at most MTU + 14.</summary>
    [FieldOffset(16)] public uint Length;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(20)] public uint Flags;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(24)] public ulong Reserved;
}

/// <summary>Completion of a transmitted frame.</summary>
[AbiExport("pv_net_tx_response")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct NetTxResponse
{
    /// <summary>The request's <see cref="NetTxRequest.Id"/>.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>0 or a negative <see cref="HypercallStatus"/>.</summary>
    [FieldOffset(8)] public long Status;
}

/// <summary>An empty receive buffer the guest offers (guest → host).</summary>
[AbiExport("pv_net_rx_request")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct NetRxRequest
{
    /// <summary>Guest's cookie, echoed in the response.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>Guest-physical address of the buffer.</summary>
    [FieldOffset(8)] public ulong Buffer;
    /// <summary>Buffer capacity in bytes (at least MTU + 14 to receive every frame).</summary>
    [FieldOffset(16)] public uint Capacity;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(20)] public uint Reserved0;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(24)] public ulong Reserved1;
}

/// <summary>A received frame (host → guest) in the buffer of the request with the same id.</summary>
[AbiExport("pv_net_rx_response")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct NetRxResponse
{
    /// <summary>The request's <see cref="NetRxRequest.Id"/>.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>0 or a negative <see cref="HypercallStatus"/>.</summary>
    [FieldOffset(8)] public long Status;
    /// <summary>Frame length in bytes.</summary>
    [FieldOffset(16)] public uint Length;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(20)] public uint Reserved;
}

/// <summary>
/// The console page (<see cref="HypercallCode.ConsoleAttach"/>), as Xen's <c>xencons_interface</c>: two byte
/// rings with free-running u32 indices. The guest produces output (<c>out</c>) and consumes input (<c>in</c>).
/// <code>
/// +0     u32 out_prod (guest)   +4  u32 out_cons (host)
/// +8     u32 in_prod  (host)    +12 u32 in_cons  (guest)
/// +16    u32 in_flags (host, <see cref="ConsoleInputFlags"/>; ABI 1.1)   +20..+63 reserved, zero
/// +64    u8 out[OutSize]
/// +64+OutSize  u8 in[InSize]
/// </code>
/// </summary>
[AbiExport("PV_CONSOLE")]
public static class ConsoleInterface
{
    /// <summary>Offset of out_prod.</summary>
    public const uint OutProdOffset = 0;
    /// <summary>Offset of out_cons.</summary>
    public const uint OutConsOffset = 4;
    /// <summary>Offset of in_prod.</summary>
    public const uint InProdOffset = 8;
    /// <summary>Offset of in_cons.</summary>
    public const uint InConsOffset = 12;
    /// <summary>
    /// Offset of in_flags (ABI 1.1, <see cref="FeatureBits.ConsoleEndOfInput"/>): <see cref="ConsoleInputFlags"/> the
    /// host sets; the guest only reads it (an older host leaves it zero).
    /// </summary>
    public const uint InFlagsOffset = 16;
    /// <summary>Offset of the output ring.</summary>
    public const uint OutOffset = 64;
    /// <summary>Output ring size (power of two).</summary>
    public const uint OutSize = 2048;
    /// <summary>Offset of the input ring.</summary>
    public const uint InOffset = OutOffset + OutSize;
    /// <summary>Input ring size (power of two).</summary>
    public const uint InSize = 1024;
    /// <summary>Bytes the interface occupies (fits in one page).</summary>
    public const uint Size = InOffset + InSize;
}

/// <summary>
/// Flags of the console page's <c>in_flags</c> word (<see cref="ConsoleInterface.InFlagsOffset"/>), written by the
/// host. Append-only.
/// </summary>
[AbiExport("pv_console_in_flags")]
[Flags]
public enum ConsoleInputFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary>
    /// The console's input ended (the host's input source reached its end or failed) and every input byte is in the
    /// ring: once <c>in_cons == in_prod</c>, no more input will come. Set after the final <c>in_prod</c> is
    /// published, so a guest reads in_flags, then (after a read barrier) in_prod.
    /// </summary>
    EndOfInput = 1u << 0,
}
