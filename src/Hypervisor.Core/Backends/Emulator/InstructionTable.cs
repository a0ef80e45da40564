namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>What an op means to the decoder, the dispatcher and the compiler, besides its semantics.</summary>
[Flags]
internal enum OpTraits : ushort
{
    None = 0,
    /// <summary>A control transfer or an instruction after which the dispatcher must look again (an exit, an event, a change of privilege, paging, RFLAGS.IF/TF): the decoder ends the block after it.</summary>
    EndsBlock = 1,
    /// <summary>Translated code never continues after it: it may change privilege, paging, the TLB, RFLAGS.TF/IF, or stop the run. Implies <see cref="EndsBlock"/>.</summary>
    LeavesRegion = 2 | EndsBlock,
    /// <summary>A direct or indirect branch, call, return or loop whose successors translated code follows.</summary>
    Branch = 4 | EndsBlock,
    /// <summary>An SSE, x87 or other extension op run by a helper: it touches XMM/x87/MXCSR state, its operands' general-purpose registers and a few implicit ones (fnstsw ax, mulx's rdx), so translated code stores every register before the call and reloads them after.</summary>
    OperandsOnly = 8,
}

/// <summary>
/// One row per op kind: the arithmetic flags it reads, the flags it always writes and those it may write (a shift by
/// CL writes none when the count is 0), and its <see cref="OpTraits"/>. The decoder ends blocks by it; the
/// flags each op reads and writes are what flag liveness in translated code is derived from.
/// </summary>
internal readonly record struct OpInfo(ulong Reads, ulong Writes, ulong MayWrite, OpTraits Traits)
{
    /// <summary>Reads the flags of condition <see cref="MicroOp.Cond"/> (jcc, setcc, cmovcc, fcmov).</summary>
    public bool ReadsCondition { get; init; }
}

/// <summary>The <see cref="OpInfo"/> rows, indexed by <see cref="OpKind"/>.</summary>
internal static class InstructionTable
{
    private const ulong None = 0, CF = LazyFlags.CF, PF = LazyFlags.PF, AF = LazyFlags.AF, ZF = LazyFlags.ZF, SF = LazyFlags.SF, OF = LazyFlags.OF;
    private const ulong All = LazyFlags.Arith;

    private static readonly OpInfo[] Rows = Build();

    /// <summary>The row of <paramref name="kind"/>.</summary>
    public static ref readonly OpInfo Info(OpKind kind) => ref Rows[(int)kind];

    /// <summary>The flags <paramref name="op"/> reads (the condition's for jcc/setcc/cmovcc).</summary>
    public static ulong Reads(in MicroOp op)
    {
        ref readonly OpInfo info = ref Rows[(int)op.Kind];
        return info.ReadsCondition ? LazyFlags.ConditionReads(op.Cond) : info.Reads;
    }

    /// <summary>True when the decoder ends the block after <paramref name="op"/> (a rep string instruction counts its own iterations and ends it too).</summary>
    public static bool EndsBlock(in MicroOp op) =>
        (Rows[(int)op.Kind].Traits & OpTraits.EndsBlock) != 0 || IsRepString(in op);

    /// <summary>True when translated code must return to the dispatcher after <paramref name="op"/>.</summary>
    public static bool LeavesRegion(in MicroOp op) =>
        (Rows[(int)op.Kind].Traits & OpTraits.LeavesRegion) == OpTraits.LeavesRegion || IsRepString(in op);

    public static bool IsRepString(in MicroOp op) => op.Rep != 0 && op.Kind is OpKind.Movs or OpKind.Stos or OpKind.Lods or OpKind.Cmps or OpKind.Scas;

    private static OpInfo[] Build()
    {
        var rows = new OpInfo?[(int)OpKind.FetchFault + 1];
        void Row(OpInfo info, params OpKind[] kinds)
        {
            foreach (OpKind k in kinds)
            {
                if (rows[(int)k] is not null)
                {
                    throw new InvalidOperationException($"two rows for {k}");
                }
                rows[(int)k] = info;
            }
        }
        OpInfo plain = new(None, None, None, OpTraits.None);
        OpInfo arith = new(None, All, All, OpTraits.None);
        OpInfo vector = new(None, None, None, OpTraits.OperandsOnly);

        Row(plain, OpKind.Nop, OpKind.Mov, OpKind.Movzx, OpKind.Movsx, OpKind.Lea, OpKind.Push, OpKind.Pop, OpKind.Not,
            OpKind.Div, OpKind.Idiv, OpKind.Xchg, OpKind.Bswap, OpKind.SignExtendAcc, OpKind.SignExtendToDx, OpKind.Leave,
            OpKind.Cpuid, OpKind.Rdtsc, OpKind.Cld, OpKind.Std, OpKind.Movs, OpKind.Stos, OpKind.Lods,
            OpKind.MovRR64, OpKind.MovRR32, OpKind.MovRI64, OpKind.MovRI32, OpKind.LoadRM64, OpKind.LoadRM32,
            OpKind.StoreMR64, OpKind.StoreMR32, OpKind.MovzxLoad8, OpKind.MovzxRR8, OpKind.Lea64, OpKind.Lea32);
        Row(arith, OpKind.Add, OpKind.Or, OpKind.And, OpKind.Sub, OpKind.Xor, OpKind.Cmp, OpKind.Test, OpKind.Neg,
            OpKind.Mul1, OpKind.Imul1, OpKind.Imul2, OpKind.Imul3, OpKind.Popcnt, OpKind.Cmps, OpKind.Scas,
            OpKind.Cmpxchg, OpKind.Xadd,
            OpKind.AddRR64, OpKind.AddRR32, OpKind.AddRI64, OpKind.AddRI32, OpKind.SubRR64, OpKind.SubRR32, OpKind.SubRI64, OpKind.SubRI32,
            OpKind.AndRR64, OpKind.AndRR32, OpKind.AndRI64, OpKind.AndRI32, OpKind.OrRR64, OpKind.OrRR32, OpKind.OrRI64, OpKind.OrRI32,
            OpKind.XorRR64, OpKind.XorRR32, OpKind.XorRI64, OpKind.XorRI32, OpKind.CmpRR64, OpKind.CmpRR32, OpKind.CmpRI64, OpKind.CmpRI32,
            OpKind.TestRR64, OpKind.TestRR32, OpKind.TestRI64, OpKind.TestRI32);
        Row(new(CF, All, All, OpTraits.None), OpKind.Adc, OpKind.Sbb);
        Row(new(None, All & ~CF, All & ~CF, OpTraits.None), OpKind.Inc, OpKind.Dec);
        // Shifts and rotates by a count that may be 0 (CL, or an immediate masked to 0) leave the flags alone.
        Row(new(None, None, All, OpTraits.None), OpKind.Shl, OpKind.Shr, OpKind.Sar, OpKind.Shld, OpKind.Shrd);
        Row(new(None, None, CF | OF, OpTraits.None), OpKind.Rol, OpKind.Ror);
        Row(new(CF, None, CF | OF, OpTraits.None), OpKind.Rcl, OpKind.Rcr);
        // ShiftRI: a 32/64-bit register by a non-zero immediate (Cond = the shift kind): shl/shr/sar write all, rol/ror CF and OF.
        Row(new(None, None, All, OpTraits.None), OpKind.ShiftRI);
        Row(new(None, CF, CF, OpTraits.None), OpKind.Bt, OpKind.Bts, OpKind.Btr, OpKind.Btc, OpKind.Clc, OpKind.Stc);
        Row(new(CF, CF, CF, OpTraits.None), OpKind.Cmc);
        Row(new(None, ZF, ZF, OpTraits.None), OpKind.Bsf, OpKind.Bsr, OpKind.Cmpxchg8b, OpKind.Cmpxchg16b);
        Row(new(None, CF | ZF, CF | ZF, OpTraits.None), OpKind.Tzcnt, OpKind.Lzcnt);
        Row(new(AF | PF, All, All, OpTraits.None), OpKind.Andn, OpKind.Blsi, OpKind.Blsr, OpKind.Blsmsk);
        Row(new(AF | PF | SF, All, All, OpTraits.None), OpKind.Bextr);
        Row(new(None, None, None, OpTraits.None) { ReadsCondition = true }, OpKind.Cmovcc, OpKind.Setcc);
        Row(new(None, None, None, OpTraits.Branch) { ReadsCondition = true }, OpKind.Jcc);
        Row(new(None, None, None, OpTraits.Branch), OpKind.Jmp, OpKind.JmpInd, OpKind.Call, OpKind.CallInd, OpKind.Ret, OpKind.Loop, OpKind.Jrcxz);
        Row(new(ZF, None, None, OpTraits.Branch), OpKind.Loope, OpKind.Loopne);
        Row(new(All, None, None, OpTraits.None), OpKind.Pushf);
        Row(new(CF | PF | AF | ZF | SF, None, None, OpTraits.None), OpKind.Lahf);
        Row(new(None, CF | PF | AF | ZF | SF, CF | PF | AF | ZF | SF, OpTraits.None), OpKind.Sahf);
        Row(new(All, All, All, OpTraits.LeavesRegion), OpKind.Popf);
        Row(new(All, None, None, OpTraits.LeavesRegion), OpKind.Hlt, OpKind.Out, OpKind.In, OpKind.Unsupported, OpKind.Unimplemented, OpKind.FetchFault);

        // SSE, SSE2..SSE4.2, x87, and the other extensions: XMM/x87/MXCSR state and their operands only.
        for (OpKind k = OpKind.MovX128; k <= OpKind.MovntStore; k++)
        {
            Row(vector, k);
        }
        Row(vector, OpKind.SseArith, OpKind.SseCompare, OpKind.CvtIntToFp, OpKind.CvtFpToInt, OpKind.CvtVector, OpKind.SseHorizontal,
            OpKind.SseRound, OpKind.SseDot, OpKind.SseApprox, OpKind.Ldmxcsr, OpKind.Stmxcsr, OpKind.Fxsave, OpKind.Fxrstor,
            OpKind.VecBinary, OpKind.VecExtract, OpKind.VecInsert, OpKind.Crc32, OpKind.Maskmovdqu, OpKind.X87Arith,
            OpKind.X87Compare, OpKind.X87Load, OpKind.X87Store, OpKind.X87Unary, OpKind.X87Control, OpKind.Movbe);
        Row(new(None, All, All, OpTraits.OperandsOnly), OpKind.SseComi, OpKind.Ptest, OpKind.PcmpStr);
        Row(new(None, None, All, OpTraits.OperandsOnly), OpKind.X87CompareFlags);
        Row(new(CF | ZF | PF, None, None, OpTraits.OperandsOnly), OpKind.X87Fcmov);
        // Bmi2 (bzhi writes flags, reads AF/PF to keep them), adcx/adox (CF or OF in and out).
        Row(new(AF | PF, None, All, OpTraits.OperandsOnly), OpKind.Bmi2);
        Row(new(CF | OF, None, CF | OF, OpTraits.OperandsOnly), OpKind.AddCarryX);
        Row(plain, OpKind.Undefined);

        // System side. Leaving the region (and so ending the block): control transfers, privilege changes, writes that
        // change the mapping of code (CR writes, INVLPG, WRMSR), and writes of RFLAGS.IF/TF (STI, POPF, MOV SS), which
        // the dispatcher looks at between blocks (an interrupt that became deliverable, a single-step trap).
        Row(new(All, None, All, OpTraits.None), OpKind.Cli, OpKind.Lgdt, OpKind.Lidt, OpKind.MovFromCr, OpKind.Swapgs, OpKind.Rdmsr,
            OpKind.Wbinvd, OpKind.Clts, OpKind.MovFromSreg, OpKind.PushSreg, OpKind.Ltr, OpKind.Str, OpKind.Lldt, OpKind.Sldt,
            OpKind.Sgdt, OpKind.Sidt, OpKind.Smsw, OpKind.Rdfsbase, OpKind.Rdgsbase, OpKind.Wrfsbase, OpKind.Wrgsbase,
            OpKind.Rdtscp, OpKind.MovFromDr, OpKind.MovToDr);
        Row(new(All, None, All, OpTraits.LeavesRegion), OpKind.Sti, OpKind.MovToCr, OpKind.Syscall, OpKind.Sysret, OpKind.Iretq,
            OpKind.IntN, OpKind.Int3, OpKind.Int1, OpKind.Wrmsr, OpKind.Invlpg, OpKind.MovToSreg, OpKind.PopSreg, OpKind.Lmsw, OpKind.Lretq);

        var result = new OpInfo[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            result[i] = rows[i] ?? throw new InvalidOperationException($"no row for {(OpKind)i}");
        }
        return result;
    }
}
