using System.Runtime.InteropServices;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>What a pre-decoded instruction does; the executor switches on it (a jump table).</summary>
internal enum OpKind : ushort
{
    Nop,
    Mov, Movzx, Movsx, Lea, Push, Pop,
    Add, Or, Adc, Sbb, And, Sub, Xor, Cmp, Test,
    Inc, Dec, Neg, Not,
    Mul1, Imul1, Imul2, Imul3, Div, Idiv,
    Shl, Shr, Sar, Rol, Ror, Rcl, Rcr, Shld, Shrd,
    Bt, Bts, Btr, Btc, Bsf, Bsr, Tzcnt, Lzcnt, Popcnt,
    Andn, Blsi, Blsr, Blsmsk, Bextr,
    Cmovcc, Setcc,
    Jcc, Jmp, JmpInd, Call, CallInd, Ret, Loop, Loope, Loopne, Jrcxz,
    Movs, Stos, Lods, Cmps, Scas,
    Xchg, Cmpxchg, Xadd, Cmpxchg8b, Cmpxchg16b, Bswap, SignExtendAcc, SignExtendToDx, Leave,
    Hlt, Out, In, Cpuid, Rdtsc, Cld, Std, Clc, Stc, Cmc, Pushf, Popf, Lahf, Sahf,
    // SSE/SSE2 (A = xmm register unless said otherwise)
    MovX128,      // 128-bit move reg/mem <- reg/mem (movdqa/u, movaps/ups/apd/upd)
    MovdToX,      // movd/movq xmm <- gpr/mem (zero-extends)
    MovdFromX,    // movd/movq gpr/mem <- xmm low
    MovqXX,       // movq xmm <- xmm/m64 (zero upper)
    MovqStore,    // movq m64 <- xmm low
    MovssLoad, MovssRR, MovsdLoad, MovsdRR, MovssStore, MovsdStore,
    MovLowLoad, MovHighLoad, MovLowStore, MovHighStore, Movhlps, Movlhps,
    Pxor, Pand, Por, Pandn,
    Pcmpeqb, Pcmpeqw, Pcmpeqd, Pcmpgtb, Pcmpgtw, Pcmpgtd,
    Pmovmskb, Movmskps, Movmskpd,
    Punpcklbw, Punpcklwd, Punpckldq, Punpcklqdq, Punpckhbw, Punpckhwd, Punpckhdq, Punpckhqdq,
    Pshufd, Pshuflw, Pshufhw, Shufps,
    Paddb, Paddw, Paddd, Paddq, Psubb, Psubw, Psubd, Psubq,
    PsllwI, PslldI, PsllqI, PsrlwI, PsrldI, PsrlqI, PsrawI, PsradI, PslldqI, PsrldqI,
    Psllw, Pslld, Psllq, Psrlw, Psrld, Psrlq, Psraw, Psrad,
    Pmuludq, Pmullw, Pminub, Pmaxub, Pminsw, Pmaxsw,
    Packuswb, Packsswb, Packssdw, Paddusb, Paddusw, Psubusb, Psubusw, Paddsb, Paddsw, Psubsb, Psubsw,
    Pavgb, Pavgw, Pmulhw, Pmulhuw, Pmaddwd, Psadbw, Pextrw, Pinsrw, MovntStore,
    // ISA extensions: SSE/SSE2 floating point and MXCSR, SSE3..SSE4.2, x87, BMI2, ADX, MOVBE.
    // Semantics live in Semantics/ (pure helpers); dispatch is EmulatorVcpu.Isa.cs, decode Translator.Isa.cs.
    SseArith,     // Cond = SseOp, Size2 = SseShape
    SseCompare,   // cmpps/pd/ss/sd: Cond = SseShape, Imm = predicate
    SseComi,      // comis/ucomis: Cond = 1 signaling, Size2 = 1 double
    CvtIntToFp,   // cvtsi2ss/sd: Size = integer size, Size2 = 1 double
    CvtFpToInt,   // cvt(t)ss/sd2si: Size = integer size, Size2 = 1 double, Cond = 1 truncate
    CvtVector,    // packed and fp<->fp conversions: Cond = CvtKind
    SseHorizontal,// addsub/hadd/hsub: Cond = 0/1/2, Size2 = 1 double
    SseRound,     // round*: Size2 = SseShape, Imm
    SseDot,       // dpps/dppd: Size2 = 1 double, Imm
    SseApprox,    // rcp/rsqrt: Cond = 1 rsqrt, Size2 = SseShape
    Ldmxcsr, Stmxcsr, Fxsave, Fxrstor,
    VecBinary,    // integer/shuffle vector ops without flags: Cond = VecOp, Imm = imm8
    VecExtract,   // pextrb/w/d/q, extractps: Size = element size, Size2 = GPR size, Imm = index
    VecInsert,    // pinsrb/d/q: Size = element size, Imm = index
    Ptest,
    PcmpStr,      // Cond: 0 pcmpestri, 1 pcmpestrm, 2 pcmpistri, 3 pcmpistrm; Rep = 1 for the 64-bit length forms
    Crc32,        // Size = destination size, Size2 = source size
    Maskmovdqu,
    X87Arith,     // Cond = X87ArithOp, RegA = destination ST index, B = ST(RegB) or memory (Size2 = X87Format), Rep = pops
    X87Compare,   // fcom/fucom/ficom: Cond = 1 quiet, B = ST(RegB) or memory, Rep = pops
    X87CompareFlags, // fcomi/fucomi(p): Cond = 1 quiet, RegB = ST index, Rep = pop
    X87Load,      // B = ST(RegB), memory (Size2 = X87Format) or a constant (Loc.Imm, Imm = X87Constant)
    X87Store,     // A = ST(RegA) or memory (Size2 = X87Format), Cond = 1 truncate (fisttp), Rep = pop
    X87Unary,     // Cond = X87Unary
    X87Control,   // Cond = X87Control, Rep = 1 waits (checks for a pending exception first)
    X87Fcmov,     // Cond = condition (x86 tttn), RegB = ST index
    Bmi2,         // Cond = Bmi2Op: RegA = destination (mulx: high half), B = r/m, RegC = the VEX.vvvv register, Imm (rorx)
    AddCarryX,    // adcx (Cond 0, carry in CF) / adox (Cond 1, carry in OF)
    Movbe,        // A = register or memory, B = memory or register
    Undefined,    // decoder marker: an instruction of a feature this CPU model lacks; Decode makes it a #UD (Unsupported) op
    ExtensionLast = Undefined,
    // Specialized forms (chosen at decode time for the hottest shapes: 32/64-bit register and immediate operands).
    MovRR64, MovRR32, MovRI64, MovRI32, AddRR64, AddRR32, AddRI64, AddRI32, SubRR64, SubRR32, SubRI64, SubRI32, AndRR64, AndRR32, AndRI64, AndRI32, OrRR64, OrRR32, OrRI64, OrRI32, XorRR64, XorRR32, XorRI64, XorRI32, CmpRR64, CmpRR32, CmpRI64, CmpRI32, TestRR64, TestRR32, TestRI64, TestRI32,
    LoadRM64, LoadRM32, StoreMR64, StoreMR32, MovzxLoad8, MovzxRR8, Lea64, Lea32, ShiftRI,
    Cli, Sti, Lgdt, Lidt, MovFromCr, MovToCr,
    Unsupported,
    /// <summary>A valid instruction the emulator does not implement: ends the run with <see cref="VcpuExitKind.Unimplemented"/> (an emulator gap, not a guest fault).</summary>
    Unimplemented,
    // System side (EmulatorVcpu.System.cs, Translator.System.cs): privilege, segments, MSRs, interrupts.
    Syscall, Sysret, Swapgs, Iretq, IntN, Int3, Int1, Rdmsr, Wrmsr, Invlpg, Wbinvd, Clts,
    MovToSreg, MovFromSreg, PushSreg, PopSreg, Ltr, Str, Lldt, Sldt, Sgdt, Sidt, Smsw, Lmsw, Lretq,
    Rdfsbase, Rdgsbase, Wrfsbase, Wrgsbase, Rdtscp, MovFromDr, MovToDr,
    /// <summary>An instruction whose bytes run into a page that cannot be fetched: raises the #PF (or the fetch fault) when reached.</summary>
    FetchFault,
}

/// <summary>Where an operand lives.</summary>
internal enum Loc : byte
{
    None,
    Reg,
    Mem,
    Imm,
}

/// <summary>
/// One pre-decoded instruction: everything the executor needs, resolved at decode time (register indices,
/// effective-address parts with RIP-relative addresses made absolute, immediates sign-extended, branch targets),
/// so executing it allocates nothing and never touches Iced.
/// </summary>
[StructLayout(LayoutKind.Auto)]
internal struct MicroOp
{
    /// <summary><see cref="Seg"/> values.</summary>
    public const byte SegFs = 1, SegGs = 2;

    public OpKind Kind;
    /// <summary>Operand size in bytes (1, 2, 4, 8; 16 for XMM).</summary>
    public byte Size;
    /// <summary>Second size: the source of movzx/movsx, the element size of string ops.</summary>
    public byte Size2;
    /// <summary>Condition code (Iced ConditionCode - 1, i.e. the x86 tttn encoding) for jcc/setcc/cmovcc.</summary>
    public byte Cond;
    /// <summary>Destination / first operand location.</summary>
    public Loc A;
    /// <summary>Source / second operand location.</summary>
    public Loc B;
    /// <summary>Register of A (0-15; 16-19 = AH, CH, DH, BH).</summary>
    public byte RegA;
    /// <summary>Register of B.</summary>
    public byte RegB;
    /// <summary>Third register (VEX source, or 0xFF).</summary>
    public byte RegC;
    /// <summary>Memory base register or 0xFF.</summary>
    public byte Base;
    /// <summary>Memory index register or 0xFF.</summary>
    public byte Index;
    /// <summary>log2 of the index scale.</summary>
    public byte Shift;
    /// <summary>1 = rep/repe, 2 = repne (string ops); 1 = count in CL (shld/shrd); 1 = 32-bit address size.</summary>
    public byte Rep;
    /// <summary>True when the address size is 32 bits (0x67 prefix).</summary>
    public bool Addr32;
    /// <summary>True when a 16-byte memory operand must be aligned (#GP otherwise).</summary>
    public bool Aligned;
    /// <summary>Segment override whose base the address adds: 0 none (DS/ES/SS/CS have base 0 in 64-bit mode), <see cref="SegFs"/>, <see cref="SegGs"/>.</summary>
    public byte Seg;
    /// <summary>Displacement (absolute address for RIP-relative operands).</summary>
    public ulong Disp;
    /// <summary>Immediate, sign-extended to 64 bits; or branch target.</summary>
    public ulong Imm;
    /// <summary>Address of this instruction.</summary>
    public ulong Rip;
    /// <summary>Address of the next instruction.</summary>
    public ulong Next;
    /// <summary>Index into the block's text table for <see cref="OpKind.Unsupported"/>.</summary>
    public int Text;
}

/// <summary>A decoded basic block: straight-line code ending at a control transfer, an exit or the size limit.</summary>
internal sealed class Block
{
    /// <summary><see cref="PhysicalSecond"/> when the block lies within one page.</summary>
    public const ulong NoPage = ulong.MaxValue;

    /// <summary>A block within one page whose cost estimate is known (<see cref="SharedBlock.Instantiate"/>: the decoded block's).</summary>
    public Block(ulong start, ulong end, MicroOp[] ops, string[] texts, ulong physicalStart, long hostBytes)
    {
        Start = start;
        End = end;
        Ops = ops;
        Texts = texts;
        PhysicalStart = physicalStart;
        PhysicalSecond = NoPage;
        HostBytes = hostBytes;
    }

    public Block(ulong start, ulong end, MicroOp[] ops, string[] texts, ulong physicalStart = 0, ulong physicalSecond = NoPage)
    {
        Start = start;
        End = end;
        Ops = ops;
        Texts = texts;
        PhysicalStart = physicalStart;
        PhysicalSecond = physicalSecond;
        long text = 0;
        foreach (string t in texts)
        {
            text += 32 + (2L * t.Length);
        }
        // Block object, op array, dictionary entry, page-list slots (estimated; see CodeCache.ByteLimit).
        HostBytes = 256 + ((long)ops.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<MicroOp>()) + text;
    }

    /// <summary>Linear address of the first instruction.</summary>
    public ulong Start { get; }

    /// <summary>Guest-physical address of the first instruction.</summary>
    public ulong PhysicalStart { get; }

    /// <summary>Guest-physical address of the second page when the last instruction straddles a page boundary, else <see cref="NoPage"/>.</summary>
    public ulong PhysicalSecond { get; }

    /// <summary>Estimated host bytes the block holds (decoded ops, texts, bookkeeping; translated code is added when made).</summary>
    public long HostBytes { get; set; }

    /// <summary>True when guest-physical bytes [<paramref name="address"/>, <paramref name="end"/>) overlap this block's code.</summary>
    public bool Overlaps(ulong address, ulong end)
    {
        ulong firstPageEnd = (Start | 0xFFF) + 1;
        ulong firstLength = Math.Min(End, firstPageEnd) - Start;
        if (address < PhysicalStart + firstLength && end > PhysicalStart)
        {
            return true;
        }
        return PhysicalSecond != NoPage && End > firstPageEnd && address < PhysicalSecond + (End - firstPageEnd) && end > PhysicalSecond;
    }
    /// <summary>One past the last byte of the last instruction.</summary>
    public ulong End { get; }
    public MicroOp[] Ops { get; }
    public string[] Texts { get; }
    /// <summary>False once a guest store hit one of its pages.</summary>
    public bool Valid { get; set; } = true;

    /// <summary>Times the interpreter ran the whole block (until it is compiled).</summary>
    public int Hits { get; set; }

    /// <summary>The block translated to IL by <see cref="BlockCompiler"/>, or null.</summary>
    public unsafe BlockCompiler.CompiledBlock? Compiled { get; set; }

    // ---- block chaining (README "Block chaining"): fields, because translated code reads them ----

    /// <summary>
    /// Link slots, one per kind of exit (<see cref="BlockCompiler.LinkSlot"/>): the translated block that exit led to
    /// last, entered by the dispatcher once it found that successor. Translated code continues into a linked
    /// successor without returning to the dispatcher while <see cref="LinkEpoch"/> equals the code cache's
    /// <see cref="CodeCache.LinkEpoch"/> (no TLB flush and the same privilege since the link was made: the rule of the
    /// direct-mapped cache it stands in for) and the successor is <see cref="Valid"/> (its code was not overwritten);
    /// an indirect exit also checks the successor's <see cref="Start"/> against its computed target.
    /// </summary>
    public Block? LinkNext, LinkTarget, LinkIndirect;

    /// <summary>The <see cref="CodeCache.LinkEpoch"/> under which the link slots were filled.</summary>
    public ulong LinkEpoch;

    /// <summary>The next block in its <see cref="BlockMap"/> bucket (null when last, or in no map).</summary>
    public Block? NextInMap;
}
