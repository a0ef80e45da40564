using System.Runtime.Intrinsics;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The vCPU's run state as one struct at a fixed address (ARMeilleure's <c>NativeContext</c>): the general-purpose and
/// XMM registers, RIP, RFLAGS and the lazy-flag record, the instruction count and budget, the attention word and the
/// current TLB. The interpreter reads and writes it through a pointer; translated code addresses it by the offsets
/// below, which ARE its layout (explicit), so a field cannot move without the code that addresses it moving too.
/// Everything else (system registers, the FPU, the MMU) stays in ordinary objects that only helpers touch.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal unsafe struct CpuState
{
    /// <summary>Byte offsets of the fields, for translated code.</summary>
    public const int ROffset = 0, RipOffset = 160, RflagsOffset = 168, LazyAOffset = 176, LazyBOffset = 184,
        LazyResultOffset = 192, LazyKindOffset = 200, LazySizeOffset = 204, IcountOffset = 208, BudgetLimitOffset = 216,
        AttentionOffset = 224, SseFaultOffset = 228, X87FaultOffset = 232, FlagOverrideOffset = 236,
        OverrideFlagsOffset = 240, TlbOffset = 248, CodeGenerationOffset = 256, ChainLeftOffset = 264, XmmOffset = 272, Size = XmmOffset + (16 * 16);

    /// <summary>rax..r15 (0-15); slots 16-19 are spare so that an index meaning AH..BH never reads outside the struct.</summary>
    [FieldOffset(ROffset)] public fixed ulong R[20];
    [FieldOffset(RipOffset)] public ulong Rip;
    /// <summary>RFLAGS; the arithmetic flags are stale while <see cref="LazyKind"/> is not <see cref="Emulator.LazyKind.None"/>.</summary>
    [FieldOffset(RflagsOffset)] public ulong Rflags;
    // The lazy-flag record: the last flag-setting ALU op's kind, operands, result and size (EmulatorVcpu.Materialize).
    [FieldOffset(LazyAOffset)] public ulong LazyA;
    [FieldOffset(LazyBOffset)] public ulong LazyB;
    [FieldOffset(LazyResultOffset)] public ulong LazyResult;
    [FieldOffset(LazyKindOffset)] public LazyKind LazyKind;
    [FieldOffset(LazySizeOffset)] public int LazySize;
    /// <summary>Instructions retired.</summary>
    [FieldOffset(IcountOffset)] public ulong Icount;
    /// <summary>The count at which the instruction budget is used up (<see cref="ulong.MaxValue"/>: none).</summary>
    [FieldOffset(BudgetLimitOffset)] public ulong BudgetLimit;
    /// <summary>Work for the dispatcher (a kick, host writes to code, a requested interrupt); set from any thread.</summary>
    [FieldOffset(AttentionOffset)] public int Attention;
    /// <summary>Nonzero when CR0/CR4 forbid SSE instructions now (#NM/#UD): checked at the top of every SSE op.</summary>
    [FieldOffset(SseFaultOffset)] public int SseFault;
    /// <summary>Nonzero when CR0 forbids x87 instructions now (#NM).</summary>
    [FieldOffset(X87FaultOffset)] public int X87Fault;
    /// <summary>A rotate changed CF/OF over a still-lazy record: <see cref="OverrideFlags"/> replaces those two.</summary>
    [FieldOffset(FlagOverrideOffset)] public bool FlagOverride;
    [FieldOffset(OverrideFlagsOffset)] public ulong OverrideFlags;
    /// <summary>The TLB of the current privilege level.</summary>
    [FieldOffset(TlbOffset)] public TlbEntry* Tlb;
    /// <summary>Incremented whenever this vCPU drops decoded code (self-modifying code, host writes, flushes): code running from a dropped block checks it after every store that may have caused it.</summary>
    [FieldOffset(CodeGenerationOffset)] public ulong CodeGeneration;
    /// <summary>Block chaining: how many more translated blocks may continue into a linked successor before one returns to the dispatcher (set by it before it enters translated code).</summary>
    [FieldOffset(ChainLeftOffset)] public int ChainLeft;
    [FieldOffset(XmmOffset)] public XmmFile Xmm;

    /// <summary>XMM0-15.</summary>
    [InlineArray(16)]
    public struct XmmFile
    {
        private Vector128<byte> _element;
    }
}
