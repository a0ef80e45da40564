// Types and constants of WinHvPlatformDefs.h (x64), the subset Paravirt's WHP backend passes or reads. Names and
// values verbatim from the header; see WinHvPlatform.cs for the sources. The layouts are platform-neutral plain
// data, so they compile and are tested on every OS; only the functions are Windows-only. Each size below is the
// header's own C_ASSERT where it has one.

namespace Paravirt.Hypervisor.Interop;

/// <summary><c>WHV_CAPABILITY_CODE</c> (subset).</summary>
internal enum WHV_CAPABILITY_CODE : uint
{
    WHvCapabilityCodeHypervisorPresent = 0x00000000,
    WHvCapabilityCodeFeatures = 0x00000001,
    WHvCapabilityCodeExtendedVmExits = 0x00000002,
}

/// <summary><c>WHV_PARTITION_PROPERTY_CODE</c> (subset).</summary>
internal enum WHV_PARTITION_PROPERTY_CODE : uint
{
    WHvPartitionPropertyCodeExtendedVmExits = 0x00000001,
    WHvPartitionPropertyCodeProcessorCount = 0x00001fff,
}

/// <summary><c>WHV_MAP_GPA_RANGE_FLAGS</c>.</summary>
[Flags]
internal enum WHV_MAP_GPA_RANGE_FLAGS : uint
{
    WHvMapGpaRangeFlagNone = 0x00000000,
    WHvMapGpaRangeFlagRead = 0x00000001,
    WHvMapGpaRangeFlagWrite = 0x00000002,
    WHvMapGpaRangeFlagExecute = 0x00000004,
    WHvMapGpaRangeFlagTrackDirtyPages = 0x00000008,
}

/// <summary><c>WHV_RUN_VP_EXIT_REASON</c>.</summary>
internal enum WHV_RUN_VP_EXIT_REASON : uint
{
    WHvRunVpExitReasonNone = 0x00000000,
    WHvRunVpExitReasonMemoryAccess = 0x00000001,
    WHvRunVpExitReasonX64IoPortAccess = 0x00000002,
    WHvRunVpExitReasonUnrecoverableException = 0x00000004,
    WHvRunVpExitReasonInvalidVpRegisterValue = 0x00000005,
    WHvRunVpExitReasonUnsupportedFeature = 0x00000006,
    WHvRunVpExitReasonX64InterruptWindow = 0x00000007,
    WHvRunVpExitReasonX64Halt = 0x00000008,
    WHvRunVpExitReasonX64ApicEoi = 0x00000009,
    WHvRunVpExitReasonSynicSintDeliverable = 0x0000000A,
    WHvRunVpExitReasonX64MsrAccess = 0x00001000,
    WHvRunVpExitReasonX64Cpuid = 0x00001001,
    WHvRunVpExitReasonException = 0x00001002,
    WHvRunVpExitReasonX64Rdtsc = 0x00001003,
    WHvRunVpExitReasonX64ApicSmiTrap = 0x00001004,
    WHvRunVpExitReasonHypercall = 0x00001005,
    WHvRunVpExitReasonX64ApicInitSipiTrap = 0x00001006,
    WHvRunVpExitReasonX64ApicWriteTrap = 0x00001007,
    WHvRunVpExitReasonCanceled = 0x00002001,
}

/// <summary><c>WHV_X64_UNSUPPORTED_FEATURE_CODE</c>.</summary>
internal enum WHV_X64_UNSUPPORTED_FEATURE_CODE : uint
{
    WHvUnsupportedFeatureIntercept = 1,
    WHvUnsupportedFeatureTaskSwitchTss = 2,
}

/// <summary><c>WHV_MEMORY_ACCESS_TYPE</c>.</summary>
internal enum WHV_MEMORY_ACCESS_TYPE : uint
{
    WHvMemoryAccessRead = 0,
    WHvMemoryAccessWrite = 1,
    WHvMemoryAccessExecute = 2,
}

/// <summary><c>WHV_REGISTER_NAME</c> (x64 subset: general-purpose, segment, table, control registers and EFER).</summary>
internal enum WHV_REGISTER_NAME : uint
{
    WHvX64RegisterRax = 0x00000000,
    WHvX64RegisterRcx = 0x00000001,
    WHvX64RegisterRdx = 0x00000002,
    WHvX64RegisterRbx = 0x00000003,
    WHvX64RegisterRsp = 0x00000004,
    WHvX64RegisterRbp = 0x00000005,
    WHvX64RegisterRsi = 0x00000006,
    WHvX64RegisterRdi = 0x00000007,
    WHvX64RegisterR8 = 0x00000008,
    WHvX64RegisterR9 = 0x00000009,
    WHvX64RegisterR10 = 0x0000000A,
    WHvX64RegisterR11 = 0x0000000B,
    WHvX64RegisterR12 = 0x0000000C,
    WHvX64RegisterR13 = 0x0000000D,
    WHvX64RegisterR14 = 0x0000000E,
    WHvX64RegisterR15 = 0x0000000F,
    WHvX64RegisterRip = 0x00000010,
    WHvX64RegisterRflags = 0x00000011,
    WHvX64RegisterEs = 0x00000012,
    WHvX64RegisterCs = 0x00000013,
    WHvX64RegisterSs = 0x00000014,
    WHvX64RegisterDs = 0x00000015,
    WHvX64RegisterFs = 0x00000016,
    WHvX64RegisterGs = 0x00000017,
    WHvX64RegisterLdtr = 0x00000018,
    WHvX64RegisterTr = 0x00000019,
    WHvX64RegisterIdtr = 0x0000001A,
    WHvX64RegisterGdtr = 0x0000001B,
    WHvX64RegisterCr0 = 0x0000001C,
    WHvX64RegisterCr2 = 0x0000001D,
    WHvX64RegisterCr3 = 0x0000001E,
    WHvX64RegisterCr4 = 0x0000001F,
    WHvX64RegisterCr8 = 0x00000020,
    WHvX64RegisterXCr0 = 0x00000027,
    WHvX64RegisterXmm0 = 0x00001000,
    WHvX64RegisterFpMmx0 = 0x00001010,
    WHvX64RegisterFpControlStatus = 0x00001018,
    WHvX64RegisterXmmControlStatus = 0x00001019,
    WHvX64RegisterTsc = 0x00002000,
    WHvX64RegisterEfer = 0x00002001,
    WHvX64RegisterKernelGsBase = 0x00002002,
    WHvX64RegisterStar = 0x00002008,
    WHvX64RegisterLstar = 0x00002009,
    WHvX64RegisterCstar = 0x0000200A,
    WHvX64RegisterSfmask = 0x0000200B,
    WHvX64RegisterTscAux = 0x0000207B,
}

/// <summary><c>WHV_UINT128</c>: 16 bytes, <c>DECLSPEC_ALIGN(16)</c> in C (C# cannot express that alignment; see <see cref="WHV_REGISTER_VALUE"/>).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct WHV_UINT128
{
    public ulong Low64;
    public ulong High64;
}

/// <summary><c>WHV_X64_SEGMENT_REGISTER</c> (16 bytes, C_ASSERT in the header).</summary>
/// <remarks>
/// <c>Attributes</c> bits, low to high: SegmentType:4, NonSystemSegment:1, DescriptorPrivilegeLevel:2, Present:1,
/// Reserved:4, Available:1, Long:1, Default:1, Granularity:1 — the descriptor's access byte in bits 0-7 and its
/// flags nibble in bits 12-15.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal struct WHV_X64_SEGMENT_REGISTER
{
    public ulong Base;
    public uint Limit;
    public ushort Selector;
    public ushort Attributes;
}

/// <summary><c>WHV_X64_TABLE_REGISTER</c> (16 bytes): <c>UINT16 Pad[3]; UINT16 Limit; UINT64 Base;</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct WHV_X64_TABLE_REGISTER
{
    public fixed ushort Pad[3];
    public ushort Limit;
    public ulong Base;
}

/// <summary>
/// <c>WHV_REGISTER_VALUE</c>: a 16-byte union (C_ASSERT in the header). In C it is 16-byte aligned because of its
/// <c>WHV_UINT128</c> member, and WHP faults (0xC0000005) on a value array that is not: arrays passed to
/// <c>WHv{Get,Set}VirtualProcessorRegisters</c> therefore live in an <see cref="Backends.Whp.AlignedBuffer"/>,
/// never in a managed array.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct WHV_REGISTER_VALUE
{
    [FieldOffset(0)] public WHV_UINT128 Reg128;
    [FieldOffset(0)] public ulong Reg64;
    [FieldOffset(0)] public uint Reg32;
    [FieldOffset(0)] public ushort Reg16;
    [FieldOffset(0)] public byte Reg8;
    [FieldOffset(0)] public WHV_X64_SEGMENT_REGISTER Segment;
    [FieldOffset(0)] public WHV_X64_TABLE_REGISTER Table;
}

/// <summary>
/// <c>WHV_VP_EXIT_CONTEXT</c> (40 bytes, C_ASSERT in the header):
/// <c>WHV_X64_VP_EXECUTION_STATE ExecutionState (UINT16); UINT8 InstructionLength:4, Cr8:4; UINT8 Reserved;
/// UINT32 Reserved2; WHV_X64_SEGMENT_REGISTER Cs; UINT64 Rip; UINT64 Rflags;</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct WHV_VP_EXIT_CONTEXT
{
    public ushort ExecutionState;
    /// <summary>Bits 0-3: InstructionLength; bits 4-7: Cr8 (C bit-fields are allocated from the low bit on x64).</summary>
    public byte InstructionLengthCr8;
    public byte Reserved;
    public uint Reserved2;
    public WHV_X64_SEGMENT_REGISTER Cs;
    public ulong Rip;
    public ulong Rflags;

    /// <summary>Length of the instruction that caused the exit (the 4-bit field).</summary>
    public readonly byte InstructionLength => (byte)(InstructionLengthCr8 & 0xF);
}

/// <summary>
/// <c>WHV_MEMORY_ACCESS_CONTEXT</c> (40 bytes, C_ASSERT in the header). <c>AccessInfo</c> bits: AccessType:2
/// (<see cref="WHV_MEMORY_ACCESS_TYPE"/>), GpaUnmapped:1, GvaValid:1.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct WHV_MEMORY_ACCESS_CONTEXT
{
    public byte InstructionByteCount;
    public fixed byte Reserved[3];
    public fixed byte InstructionBytes[16];
    public uint AccessInfo;
    public ulong Gpa;
    public ulong Gva;
}

/// <summary>
/// <c>WHV_X64_IO_PORT_ACCESS_CONTEXT</c> (96 bytes, C_ASSERT in the header). <c>AccessInfo</c>
/// (<c>WHV_X64_IO_PORT_ACCESS_INFO</c>) bits: IsWrite:1, AccessSize:3, StringOp:1, RepPrefix:1.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct WHV_X64_IO_PORT_ACCESS_CONTEXT
{
    public byte InstructionByteCount;
    public fixed byte Reserved[3];
    public fixed byte InstructionBytes[16];
    public uint AccessInfo;
    public ushort PortNumber;
    public fixed ushort Reserved2[3];
    public ulong Rax;
    public ulong Rcx;
    public ulong Rsi;
    public ulong Rdi;
    public WHV_X64_SEGMENT_REGISTER Ds;
    public WHV_X64_SEGMENT_REGISTER Es;

    public const uint IsWriteBit = 1u << 0;
    public const int AccessSizeShift = 1;
    public const uint AccessSizeMask = 0x7;
    public const uint StringOpBit = 1u << 4;
    public const uint RepPrefixBit = 1u << 5;
}

/// <summary>
/// <c>WHV_VP_EXCEPTION_CONTEXT</c> (40 bytes, C_ASSERT in the header); only delivered with extended VM exits,
/// which Paravirt does not enable, but decoded for completeness.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct WHV_VP_EXCEPTION_CONTEXT
{
    public byte InstructionByteCount;
    public fixed byte Reserved[3];
    public fixed byte InstructionBytes[16];
    public uint ExceptionInfo;
    public byte ExceptionType;
    public fixed byte Reserved2[3];
    public uint ErrorCode;
    public ulong ExceptionParameter;
}

/// <summary><c>WHV_X64_UNSUPPORTED_FEATURE_CONTEXT</c> (16 bytes, C_ASSERT in the header).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct WHV_X64_UNSUPPORTED_FEATURE_CONTEXT
{
    public WHV_X64_UNSUPPORTED_FEATURE_CODE FeatureCode;
    public uint Reserved;
    public ulong FeatureParameter;
}

/// <summary><c>WHV_RUN_VP_CANCELED_CONTEXT</c>: <c>WHV_RUN_VP_CANCEL_REASON CancelReason</c> (0 = user).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct WHV_RUN_VP_CANCELED_CONTEXT
{
    public uint CancelReason;
}

/// <summary>
/// <c>WHV_RUN_VP_EXIT_CONTEXT</c>: the output buffer of <c>WHvRunVirtualProcessor</c>, 224 bytes (C_ASSERT in the
/// header): <c>ExitReason</c> at 0, <c>Reserved</c> at 4, <c>VpContext</c> at 8 and the per-reason union at 48.
/// The union's largest members (APIC and hypercall contexts, unused here) make it 176 bytes; its 16-byte C
/// alignment is honoured by allocating the buffer in an <see cref="Backends.Whp.AlignedBuffer"/>.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 224)]
internal struct WHV_RUN_VP_EXIT_CONTEXT
{
    [FieldOffset(0)] public WHV_RUN_VP_EXIT_REASON ExitReason;
    [FieldOffset(4)] public uint Reserved;
    [FieldOffset(8)] public WHV_VP_EXIT_CONTEXT VpContext;
    [FieldOffset(48)] public WHV_MEMORY_ACCESS_CONTEXT MemoryAccess;
    [FieldOffset(48)] public WHV_X64_IO_PORT_ACCESS_CONTEXT IoPortAccess;
    [FieldOffset(48)] public WHV_VP_EXCEPTION_CONTEXT VpException;
    [FieldOffset(48)] public WHV_X64_UNSUPPORTED_FEATURE_CONTEXT UnsupportedFeature;
    [FieldOffset(48)] public WHV_RUN_VP_CANCELED_CONTEXT CancelReason;

    /// <summary>Size of the structure as the header asserts it.</summary>
    public const int Size = 224;
    /// <summary>Offset of the per-reason union.</summary>
    public const int UnionOffset = 48;
}

/// <summary>Sizes of the unions WHP reads or writes whole (measured from the header by mingw-w64 gcc: <c>sizeof</c>).</summary>
internal static class WhpUnionSizes
{
    /// <summary><c>sizeof(WHV_CAPABILITY)</c>: the <c>WHvGetCapability</c> output buffer.</summary>
    public const int WHV_CAPABILITY = 24;
    /// <summary><c>sizeof(WHV_PARTITION_PROPERTY)</c>: the <c>WHvSetPartitionProperty</c> input buffer.</summary>
    public const int WHV_PARTITION_PROPERTY = 48;
}
