/*
 * Compiled by WhpHeaderCrossCheckTests with mingw-w64 gcc (x86_64-w64-mingw32-gcc) against the mingw-w64 copy of
 * WinHvPlatform.h / WinHvPlatformDefs.h. Nothing runs: the test extracts each constant's bytes from the object
 * file (one .rdata$NAME section per constant, -fdata-sections) and compares them with the C# definitions in
 * src/Hypervisor.Core/Interop/WinHvPlatform. The compiler lays out the header's bit-fields with the Microsoft
 * rules (mingw's default -mms-bitfields), as the Windows SDK compiler does.
 *
 * whp_layout: the values listed by WhpHeaderCrossCheckTests.LayoutEntries, in the same order, after a count.
 * The other constants are golden structures built with designated initializers of the header's own field names.
 */
#include <stddef.h>
#include <windows.h>
#include <winhvplatform.h>

#define USED __attribute__((used))
#define OFF(type, field) (unsigned int)offsetof(type, field)

USED const unsigned int whp_layout[] = {
    37,
    /* sizes */
    sizeof(WHV_RUN_VP_EXIT_CONTEXT),
    sizeof(WHV_VP_EXIT_CONTEXT),
    sizeof(WHV_X64_IO_PORT_ACCESS_CONTEXT),
    sizeof(WHV_MEMORY_ACCESS_CONTEXT),
    sizeof(WHV_VP_EXCEPTION_CONTEXT),
    sizeof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT),
    sizeof(WHV_X64_SEGMENT_REGISTER),
    sizeof(WHV_X64_TABLE_REGISTER),
    sizeof(WHV_REGISTER_VALUE),
    sizeof(WHV_CAPABILITY),
    sizeof(WHV_PARTITION_PROPERTY),
    /* WHV_RUN_VP_EXIT_CONTEXT */
    OFF(WHV_RUN_VP_EXIT_CONTEXT, ExitReason),
    OFF(WHV_RUN_VP_EXIT_CONTEXT, VpContext),
    OFF(WHV_RUN_VP_EXIT_CONTEXT, IoPortAccess),
    OFF(WHV_RUN_VP_EXIT_CONTEXT, MemoryAccess),
    /* WHV_VP_EXIT_CONTEXT */
    OFF(WHV_VP_EXIT_CONTEXT, Cs),
    OFF(WHV_VP_EXIT_CONTEXT, Rip),
    OFF(WHV_VP_EXIT_CONTEXT, Rflags),
    /* WHV_X64_IO_PORT_ACCESS_CONTEXT */
    OFF(WHV_X64_IO_PORT_ACCESS_CONTEXT, InstructionBytes),
    OFF(WHV_X64_IO_PORT_ACCESS_CONTEXT, AccessInfo),
    OFF(WHV_X64_IO_PORT_ACCESS_CONTEXT, PortNumber),
    OFF(WHV_X64_IO_PORT_ACCESS_CONTEXT, Rax),
    OFF(WHV_X64_IO_PORT_ACCESS_CONTEXT, Rdi),
    OFF(WHV_X64_IO_PORT_ACCESS_CONTEXT, Ds),
    OFF(WHV_X64_IO_PORT_ACCESS_CONTEXT, Es),
    /* WHV_MEMORY_ACCESS_CONTEXT */
    OFF(WHV_MEMORY_ACCESS_CONTEXT, AccessInfo),
    OFF(WHV_MEMORY_ACCESS_CONTEXT, Gpa),
    OFF(WHV_MEMORY_ACCESS_CONTEXT, Gva),
    /* WHV_X64_SEGMENT_REGISTER / WHV_X64_TABLE_REGISTER */
    OFF(WHV_X64_SEGMENT_REGISTER, Limit),
    OFF(WHV_X64_SEGMENT_REGISTER, Selector),
    OFF(WHV_X64_SEGMENT_REGISTER, Attributes),
    OFF(WHV_X64_TABLE_REGISTER, Limit),
    OFF(WHV_X64_TABLE_REGISTER, Base),
    /* enum values the backend passes */
    WHvX64RegisterEfer,
    WHvPartitionPropertyCodeProcessorCount,
    WHvRunVpExitReasonCanceled,
    WHvMapGpaRangeFlagRead | WHvMapGpaRangeFlagWrite | WHvMapGpaRangeFlagExecute,
};

/* out 0xE2, al at rip 0x3000: a hypercall (IsWrite, 1 byte, not string, not rep), instruction length 2. */
USED const WHV_RUN_VP_EXIT_CONTEXT whp_exit_hypercall = {
    .ExitReason = WHvRunVpExitReasonX64IoPortAccess,
    .VpContext = { .InstructionLength = 2, .Cr8 = 0xF, .Rip = 0x3000, .Rflags = 0x2 },
    .IoPortAccess = {
        .InstructionByteCount = 2, .InstructionBytes = { 0xE6, 0xE2 },
        .AccessInfo = { .IsWrite = 1, .AccessSize = 1 }, .PortNumber = 0xE2, .Rax = 0x42,
    },
};

/* rep outsb to 0xE2: string I/O, never a hypercall. */
USED const WHV_RUN_VP_EXIT_CONTEXT whp_exit_rep_outsb = {
    .ExitReason = WHvRunVpExitReasonX64IoPortAccess,
    .VpContext = { .InstructionLength = 2, .Rip = 0x100000 },
    .IoPortAccess = { .AccessInfo = { .IsWrite = 1, .AccessSize = 1, .StringOp = 1, .RepPrefix = 1 }, .PortNumber = 0xE2 },
};

/* A write to unmapped guest-physical 0x4000_0000 from rip 0x100010. */
USED const WHV_RUN_VP_EXIT_CONTEXT whp_exit_mmio_write = {
    .ExitReason = WHvRunVpExitReasonMemoryAccess,
    .VpContext = { .InstructionLength = 3, .Rip = 0x100010 },
    .MemoryAccess = { .AccessInfo = { .AccessType = WHvMemoryAccessWrite, .GpaUnmapped = 1, .GvaValid = 1 },
                      .Gpa = 0x40000000, .Gva = 0x40000000 },
};

/* The 64-bit code segment Paravirt loads: selector 0x08, flat, type 0xB (exec/read, accessed), S, P, L, G. */
USED const WHV_X64_SEGMENT_REGISTER whp_seg_code = {
    .Base = 0, .Limit = 0xFFFFFFFF, .Selector = 0x08,
    .SegmentType = 0xB, .NonSystemSegment = 1, .DescriptorPrivilegeLevel = 0, .Present = 1, .Long = 1, .Granularity = 1,
};

/* The data segment: selector 0x10, flat, type 0x3 (read/write, accessed), S, P, D/B, G. */
USED const WHV_X64_SEGMENT_REGISTER whp_seg_data = {
    .Base = 0, .Limit = 0xFFFFFFFF, .Selector = 0x10,
    .SegmentType = 0x3, .NonSystemSegment = 1, .Present = 1, .Default = 1, .Granularity = 1,
};

/* TR: selector 0x18, 64-bit busy TSS (type 0xB, system), P, limit 0x67. */
USED const WHV_X64_SEGMENT_REGISTER whp_seg_tss = {
    .Base = 0, .Limit = 0x67, .Selector = 0x18, .SegmentType = 0xB, .NonSystemSegment = 0, .Present = 1,
};

/* GDTR: base 0x1000, limit 39 (five 8-byte entries). */
USED const WHV_X64_TABLE_REGISTER whp_gdtr = { .Limit = 39, .Base = 0x1000 };
