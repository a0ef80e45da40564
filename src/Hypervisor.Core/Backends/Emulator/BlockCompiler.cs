using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// Translates hot blocks to IL (<see cref="DynamicMethod"/>) that RyuJIT compiles to host code: the first step of the
/// path to QEMU-like speed (see README.md). Only blocks made entirely of the specialized integer forms (32/64-bit
/// register/immediate mov and ALU ops, loads, stores, lea, movzx, neg, not, push, pop, shifts) ending in jcc, jmp,
/// call or ret (or running into the block size limit) are translated; everything else stays interpreted.
/// </summary>
/// <remarks>
/// Translated code keeps the interpreter's exact semantics: the registers a block uses and its lazy flags live in IL
/// locals and are written back to the vCPU only where something else can see them (exits, bail-outs, helpers), and
/// every memory access goes through the software TLB inline (index, tag compare, add: <see cref="TlbEntry"/>). Anything that needs the interpreter (a TLB miss, which
/// covers page faults, accesses outside guest memory, first writes that set a dirty bit and stores into a page
/// holding code) makes the translated code stop before that instruction and return its index; the interpreter then
/// continues from there, so faults, self-modifying code and instruction counts are exactly the same.
/// </remarks>
internal static unsafe partial class BlockCompiler
{
    /// <summary>
    /// A translated block. Adds the instructions it ran to the retired count and returns <see cref="Completed"/> (rip
    /// set), <see cref="ExitRequested"/> (an op it handed to the interpreter asked for a vCPU exit),
    /// <see cref="Interpreted"/> (the interpreter ran the rest of the block) or <see cref="ChainExit"/> minus a
    /// <see cref="LinkSlot"/> (left through a direct or indirect exit, rip set, without continuing into a successor).
    /// A block that must hand the rest of itself to the interpreter (a TLB miss it cannot fill, a fault) calls the
    /// interpreter's block loop itself, so the caller never needs to know which block of a chain was running.
    /// </summary>
    /// <remarks>The delegate is closed over the vCPU whose code cache holds the block (a closed delegate is called without the shuffle thunk an open one needs).</remarks>
    public delegate int CompiledBlock(ulong* r, TlbEntry* tlb, Block block);

    /// <summary>The block ran to its end; rip is set.</summary>
    public const int Completed = -1;

    /// <summary>An op asked for a vCPU exit (fault, hypercall, halt ...); the exit is in the vCPU.</summary>
    public const int ExitRequested = -2;

    /// <summary>The block bailed out (a TLB miss it could not fill, a page-crossing access, a store that needs the slow path) and the interpreter ran the rest of it; rip is set.</summary>
    public const int Interpreted = -3;

    /// <summary>
    /// The block left through the exit of link slot <c>ChainExit - code</c> (<see cref="SlotOf"/>) with rip set and
    /// did not continue into a linked successor (none linked yet, a stale link, attention, the budget, the chain limit):
    /// the dispatcher links the slot once it has found the successor.
    /// </summary>
    public const int ChainExit = -4;

    /// <summary>The link slot a <see cref="ChainExit"/> code names.</summary>
    public static LinkSlot SlotOf(int code) => (LinkSlot)(ChainExit - code);

    /// <summary>Which of a block's link slots an exit uses.</summary>
    public enum LinkSlot
    {
        /// <summary>The next instruction: a fall-through (size or page limit) or a jcc not taken (<see cref="Block.LinkNext"/>).</summary>
        Next,
        /// <summary>The constant target of a jmp, call or taken jcc (<see cref="Block.LinkTarget"/>).</summary>
        Target,
        /// <summary>A computed target: ret, jmp or call through a register or memory (<see cref="Block.LinkIndirect"/>, checked against the target).</summary>
        Indirect,
    }

    /// <summary>Where linked successors are followed (<see cref="EmulatorVcpu.Chaining"/>).</summary>
    public enum ChainMode
    {
        /// <summary>No chaining: every block returns <see cref="Completed"/> to the dispatcher, which looks the next one up.</summary>
        Off,
        /// <summary>Blocks return <see cref="ChainExit"/> codes and the dispatcher's inner loop follows the link slot.</summary>
        Dispatcher,
        /// <summary>Translated code checks the link slot itself and continues into the successor with a tail call.</summary>
        Translated,
    }

    /// <summary>Translated blocks one dispatch may run through links before control returns to the dispatcher's outer loop (bounds the stack if a tail call is not honoured; <see cref="EmulatorVcpu.ChainLimit"/>).</summary>
    public const int DefaultChainLimit = 128;

    /// <summary>The chaining mode new vCPUs use: <c>PARAVIRT_EMULATOR_CHAIN</c> = <c>0</c> (off), <c>dispatcher</c>, or anything else (translated code).</summary>
    public static ChainMode DefaultChaining { get; } = Environment.GetEnvironmentVariable("PARAVIRT_EMULATOR_CHAIN") switch
    {
        "0" => ChainMode.Off,
        "dispatcher" => ChainMode.Dispatcher,
        _ => ChainMode.Translated,
    };

    /// <summary>
    /// Whole-block runs after which a block is translated (0 disables translation). RyuJIT takes ~0.1 ms per block,
    /// the cost of some thousands of interpreted runs: at 32 a short-lived VM (hello: 3,853 instructions) spent most of
    /// its 2-3 ms translating blocks it would never run enough to repay; at 1,024 it runs in ~1 ms and the compute
    /// kernels (hundreds of millions of instructions) are unchanged (measured, bench/emulator-suite-notes.md).
    /// </summary>
    public static int Threshold { get; set; } = 1024;

    /// <summary>True when this runtime can compile IL at run time (not NativeAOT) and translation is not switched off with PARAVIRT_EMULATOR_JIT=0.</summary>
    public static bool Enabled { get; } = RuntimeFeature.IsDynamicCodeCompiled
        && Environment.GetEnvironmentVariable("PARAVIRT_EMULATOR_JIT") != "0";

    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
    private static readonly MethodInfo ExecuteMethod = typeof(EmulatorVcpu).GetMethod("ExecuteBlock", Private)!;
    private static readonly MethodInfo SseMethod = typeof(EmulatorVcpu).GetMethod("ExecuteSse", Private)!;
    private static readonly MethodInfo VectorOpMethod = typeof(EmulatorVcpu).GetMethod("ExecuteVectorOp", Private)!;
    private static readonly MethodInfo OpsGetter = typeof(Block).GetProperty(nameof(Block.Ops))!.GetGetMethod()!;
    private static readonly MethodInfo ValidGetter = typeof(Block).GetProperty(nameof(Block.Valid))!.GetGetMethod()!;
    private static readonly MethodInfo StartGetter = typeof(Block).GetProperty(nameof(Block.Start))!.GetGetMethod()!;
    private static readonly MethodInfo CompiledGetter = typeof(Block).GetProperty(nameof(Block.Compiled))!.GetGetMethod()!;
    private static readonly MethodInfo InvokeMethod = typeof(CompiledBlock).GetMethod(nameof(CompiledBlock.Invoke))!;
    private static readonly FieldInfo ChainExitBlockField = typeof(EmulatorVcpu).GetField(nameof(EmulatorVcpu.ChainExitBlock), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo FindTranslatedMethod = typeof(EmulatorVcpu).GetMethod(nameof(EmulatorVcpu.FindTranslated), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo CodeGetter = typeof(EmulatorVcpu).GetProperty(nameof(EmulatorVcpu.Code), BindingFlags.NonPublic | BindingFlags.Instance)!.GetGetMethod(nonPublic: true)!;
    private static readonly MethodInfo FastGetter = typeof(CodeCache).GetProperty(nameof(CodeCache.Fast))!.GetGetMethod()!;
    private static readonly FieldInfo LinkEpochField = typeof(Block).GetField(nameof(Block.LinkEpoch))!;
    private static readonly FieldInfo[] LinkFields =
    [
        typeof(Block).GetField(nameof(Block.LinkNext))!,
        typeof(Block).GetField(nameof(Block.LinkTarget))!,
        typeof(Block).GetField(nameof(Block.LinkIndirect))!,
    ];
    private static readonly MethodInfo CondMethod = typeof(EmulatorVcpu).GetMethod(nameof(EmulatorVcpu.Cond), Private)!;
    private static readonly MethodInfo KeepCarryMethod = typeof(EmulatorVcpu).GetMethod(nameof(EmulatorVcpu.KeepCarry), Private)!;
    private static readonly MethodInfo ShiftMethod = typeof(EmulatorVcpu).GetMethod(nameof(EmulatorVcpu.Shift), Private)!;
    private static readonly MethodInfo SegmentBaseMethod = typeof(EmulatorVcpu).GetMethod(nameof(EmulatorVcpu.SegmentBase), Private)!;
    private static readonly MethodInfo ImulMethod = typeof(EmulatorVcpu).GetMethod("ImulTrunc", Private)!;
    private static readonly MethodInfo Swap64Method = typeof(System.Buffers.Binary.BinaryPrimitives).GetMethod(nameof(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness), [typeof(ulong)])!;
    private static readonly MethodInfo Swap32Method = typeof(System.Buffers.Binary.BinaryPrimitives).GetMethod(nameof(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness), [typeof(uint)])!;

    /// <summary>True when the op is translated to IL; every other op is handed to the interpreter one at a time.</summary>
    private static bool Native(in MicroOp op, bool last)
    {
        switch (op.Kind)
        {
            case >= OpKind.MovRR64 and <= OpKind.TestRI32:
            case OpKind.Lea64: case OpKind.Lea32: case OpKind.LoadRM64: case OpKind.LoadRM32: case OpKind.MovzxLoad8:
            case OpKind.MovzxRR8: case OpKind.StoreMR64: case OpKind.StoreMR32: case OpKind.ShiftRI: case OpKind.Nop:
                return true;
            case OpKind.Neg: case OpKind.Not: case OpKind.Inc: case OpKind.Dec:
                return op.A == Loc.Reg && op.RegA < 16 && op.Size is 4 or 8;
            case OpKind.Push:
                return op.B == Loc.Reg && op.RegB < 16;
            case OpKind.Pop:
                return op.A == Loc.Reg && op.RegA < 16;
            case OpKind.Jcc: case OpKind.Jmp: case OpKind.Call: case OpKind.Ret:
                return last;
            case OpKind.Add: case OpKind.Or: case OpKind.And: case OpKind.Sub: case OpKind.Xor: case OpKind.Cmp: case OpKind.Test:
                // reg op= [mem], and cmp/test [mem], reg/imm (32/64-bit).
                return op.Size is 4 or 8 && ((op.A == Loc.Reg && op.RegA < 16 && op.B == Loc.Mem)
                    || (op.Kind is OpKind.Cmp or OpKind.Test && op.A == Loc.Mem && (op.B == Loc.Imm || (op.B == Loc.Reg && op.RegB < 16))));
            case OpKind.Movzx: case OpKind.Movsx:
                return op.A == Loc.Reg && op.RegA < 16 && op.Size is 4 or 8
                    && (op.Size2 is 1 or 2 || (op.Kind == OpKind.Movsx && op.Size2 == 4)) && (op.B == Loc.Mem || op.B == Loc.Reg);
            case OpKind.Imul2: case OpKind.Imul3: case OpKind.Cmovcc:
                return op.A == Loc.Reg && op.RegA < 16 && op.Size is 4 or 8 && (op.B == Loc.Mem || (op.B == Loc.Reg && op.RegB < 16));
            case OpKind.Setcc:
                return op.A == Loc.Reg && op.RegA < 16;
            case OpKind.Bswap:
                return op.Size is 4 or 8;
            case OpKind.Mov:
                // stores of a register or an immediate, any size
                return op.A == Loc.Mem && (op.B == Loc.Imm || op.B == Loc.Reg);
            case >= OpKind.MovX128 and <= OpKind.MovntStore when op.A != Loc.Mem && op.B != Loc.Mem:
                // Register-only SSE ops cannot fault or touch flags: call the SSE executor directly.
                return true;
            case OpKind.JmpInd: case OpKind.CallInd:
                return last && (op.B == Loc.Mem || (op.B == Loc.Reg && op.RegB < 16));
            case OpKind.SignExtendAcc:
                return op.Size is 4 or 8;
            default:
                return VectorHelper(in op) || SseMemoryMove(in op);
        }
    }

    /// <summary>
    /// True for the SSE, x87 and other extension ops (those that touch only their operands, <see cref="OpTraits.OperandsOnly"/>)
    /// that translated code runs through <c>EmulatorVcpu.ExecuteVectorOp</c>: a direct call with its own fault handling,
    /// instead of the interpreter's block loop.
    /// </summary>
    private static bool VectorHelper(in MicroOp op) => (InstructionTable.Info(op.Kind).Traits & OpTraits.OperandsOnly) != 0 && !SseMemoryMove(in op);

    /// <summary>SSE moves between an XMM register and memory that translated code does inline (TLB check, then a copy).</summary>
    private static bool SseMemoryMove(in MicroOp op) => op.Kind switch
    {
        OpKind.MovX128 => (op.A == Loc.Mem) != (op.B == Loc.Mem),
        OpKind.MovdToX => op.B == Loc.Mem && op.Size is 4 or 8,
        OpKind.MovdFromX => op.A == Loc.Mem && op.Size is 4 or 8,
        OpKind.MovqXX => (op.A == Loc.Mem) != (op.B == Loc.Mem),
        OpKind.MovsdLoad or OpKind.MovssLoad => op.B == Loc.Mem,
        OpKind.MovsdStore or OpKind.MovssStore or OpKind.MovqStore or OpKind.MovLowStore => op.A == Loc.Mem,
        _ => false,
    };

    /// <summary>
    /// Translates <paramref name="block"/>, or returns null when it holds anything the translator does not handle;
    /// <paramref name="hostBytes"/> estimates the host memory the translation holds (IL, native code, method
    /// objects), which the code cache counts against its cap.
    /// </summary>
    [UnconditionalSuppressMessage("AOT", "IL3050", Justification = "Only called when Enabled, i.e. RuntimeFeature.IsDynamicCodeCompiled; NativeAOT keeps interpreting.")]
    public static CompiledBlock? TryCompile(Block block, EmulatorVcpu cpu, out int hostBytes)
    {
        hostBytes = 0;
        MicroOp[] ops = block.Ops;
        int n = ops.Length;
        int native = 0;
        for (int k = 0; k < n; k++)
        {
            native += Native(in ops[k], k == n - 1) ? 1 : 0;
        }
        if (native * 2 < n)
        {
            return null; // mostly interpreter work: translation would not pay
        }
        try
        {
            var emitter = new Emitter(block);
            CompiledBlock compiled = emitter.Emit(cpu);
            hostBytes = TranslationOverhead + (NativeBytesPerIlByte * emitter.IlSize);
            return compiled;
        }
#pragma warning disable CA1031 // translation is an optimization: any failure leaves the block interpreted
        catch (Exception)
        {
            return null;
        }
#pragma warning restore CA1031
    }

    /// <summary>Estimated fixed host cost of one translated block (DynamicMethod, resolver, delegate, code header).</summary>
    private const int TranslationOverhead = 4096;
    /// <summary>Estimated host bytes per IL byte (the IL itself, its token table and the native code RyuJIT makes of it).</summary>
    private const int NativeBytesPerIlByte = 6;

    /// <summary>A lazy-flag record kept in IL locals: its kind and operand size (the operands and result are the locals).</summary>
    private readonly record struct Pending(LazyKind Kind, int Size);

    private sealed partial class Emitter
    {
        private readonly Block _block;
        private readonly MicroOp[] _ops;
        private readonly DynamicMethod _method;
        private readonly ILGenerator _il;
        private readonly LocalBuilder _la, _lb, _lr, _addr, _v, _entry, _host, _cond, _target, _next;
        private readonly List<(Label Label, int Index, Pending Pending, int Unflushed, int Dirty)> _bails = [];
        /// <summary>The lazy-flag record held in the IL locals _la/_lb/_lr and not yet written to the vCPU (kind None: none).</summary>
        private Pending _pending;
        private int _unflushed; // instructions run by translated code and not yet added to the vCPU's count
        private ChainMode _chain;
        private ulong* _linkEpoch;

        [RequiresDynamicCode("Translates guest code to IL at run time.")]
        public Emitter(Block block)
        {
            _block = block;
            _ops = block.Ops;
            _method = new DynamicMethod($"emu_block_{block.Start:x}", typeof(int),
                [typeof(EmulatorVcpu), typeof(ulong*), typeof(TlbEntry*), typeof(Block)], typeof(EmulatorVcpu), skipVisibility: true);
            _il = _method.GetILGenerator();
            _la = _il.DeclareLocal(typeof(ulong));
            _lb = _il.DeclareLocal(typeof(ulong));
            _lr = _il.DeclareLocal(typeof(ulong));
            _addr = _il.DeclareLocal(typeof(ulong));
            _v = _il.DeclareLocal(typeof(ulong));
            _entry = _il.DeclareLocal(typeof(byte*));
            _host = _il.DeclareLocal(typeof(byte*));
            _cond = _il.DeclareLocal(typeof(int));
            _target = _il.DeclareLocal(typeof(ulong));
            _next = _il.DeclareLocal(typeof(Block));
        }

        /// <summary>Bytes of IL emitted (valid after <see cref="Emit"/>).</summary>
        public int IlSize => _il.ILOffset;

        public CompiledBlock Emit(EmulatorVcpu cpu)
        {
            ILGenerator il = _il;
            _chain = cpu.Chaining;
            _linkEpoch = cpu.Code.LinkEpoch;
            int n = _ops.Length;
            bool terminated = false;
            for (int k = 0; k < n; k++)
            {
                terminated = EmitOp(k);
            }
            if (!terminated)
            {
                SetRip(_ops[n - 1].Next);
                Flush(_pending);
                Spill();
                Leave(LinkSlot.Next, _unflushed, null);
            }
            if (_bails.Count > 0)
            {
                // The interpreter runs the rest of the block from the op that bailed out (its index in _cond), here
                // rather than in the dispatcher, which does not know which block of a chain was running.
                Label interpret = il.DefineLabel(), completed = il.DefineLabel();
                foreach ((Label label, int index, Pending pending, int unflushed, int dirty) in _bails)
                {
                    il.MarkLabel(label);
                    Flush(pending);
                    WriteBack(dirty);
                    AddCount(unflushed);
                    il.Emit(OpCodes.Ldc_I4, index);
                    il.Emit(OpCodes.Stloc, _cond);
                    il.Emit(OpCodes.Br, interpret);
                }
                il.MarkLabel(interpret);
                Interpret(() => il.Emit(OpCodes.Ldloc, _cond), n, completed);
                il.MarkLabel(completed);
                il.Emit(OpCodes.Ldc_I4, Interpreted);
                il.Emit(OpCodes.Ret);
            }
            return (CompiledBlock)_method.CreateDelegate(typeof(CompiledBlock), cpu);
        }

        /// <summary>
        /// Leaves the block through an exit of <paramref name="slot"/> (rip already set): adds <paramref name="count"/>
        /// to the retired count, then, chaining in translated code, continues into the slot's linked successor with a
        /// tail call when the dispatcher would run that block next, whole and translated: the link was made under the
        /// current link epoch (same mappings and privilege), the successor's code is still valid (and, for an indirect
        /// exit, starts at the computed target in <paramref name="target"/>), no attention is pending (kick, timeout,
        /// interrupt request, host write to code, debugger), the chain limit is not reached and the whole successor
        /// fits in the instruction budget. Otherwise it returns <see cref="ChainExit"/> for the dispatcher.
        /// </summary>
        /// <remarks>
        /// TF and the interrupt shadow (which make the dispatcher single-step) need no check: the ops that set them
        /// (popf, iretq, sti, mov/pop ss) end their block and are interpreted, so such a block returns
        /// <see cref="Completed"/> and never reaches an exit of this kind.
        /// </remarks>
        private void Leave(LinkSlot slot, int count, LocalBuilder? target)
        {
            ILGenerator il = _il;
            Spill(); // a no-op where the caller stored them before its branch (jcc)
            AddCount(count);
            if (_chain == ChainMode.Off)
            {
                il.Emit(OpCodes.Ldc_I4, Completed);
                il.Emit(OpCodes.Ret);
                return;
            }
            if (_chain == ChainMode.Translated)
            {
                Label stop = il.DefineLabel();
                // An indirect exit whose link slot holds another target looks the target up in the direct-mapped
                // cache instead (QEMU's lookup_and_goto_ptr): a switch's jump table or a shared return leads to many.
                Label unlinked = target is null ? stop : il.DefineLabel(), linked = il.DefineLabel();
                il.Emit(OpCodes.Ldarg_3);
                il.Emit(OpCodes.Ldfld, LinkFields[(int)slot]);
                il.Emit(OpCodes.Stloc, _next);
                il.Emit(OpCodes.Ldloc, _next);
                il.Emit(OpCodes.Brfalse, unlinked);
                BranchIfLinkEpochStale(unlinked);
                il.Emit(OpCodes.Ldloc, _next);
                il.Emit(OpCodes.Call, ValidGetter);
                il.Emit(OpCodes.Brfalse, unlinked);
                if (target is not null)
                {
                    il.Emit(OpCodes.Ldloc, _next);
                    il.Emit(OpCodes.Call, StartGetter);
                    il.Emit(OpCodes.Ldloc, target);
                    il.Emit(OpCodes.Beq, linked);
                    il.MarkLabel(unlinked);
                    FindTranslated(target, stop, linked);
                }
                il.MarkLabel(linked);
                StateAddress(CpuState.AttentionOffset);
                il.Emit(OpCodes.Volatile);
                il.Emit(OpCodes.Ldind_I4);
                il.Emit(OpCodes.Brtrue, stop);
                // ChainLeft -= 1; stop when it reaches 0
                StateAddress(CpuState.ChainLeftOffset);
                il.Emit(OpCodes.Ldind_I4);
                il.Emit(OpCodes.Ldc_I4_1);
                il.Emit(OpCodes.Sub);
                il.Emit(OpCodes.Stloc, _cond);
                StateAddress(CpuState.ChainLeftOffset);
                il.Emit(OpCodes.Ldloc, _cond);
                il.Emit(OpCodes.Stind_I4);
                il.Emit(OpCodes.Ldloc, _cond);
                il.Emit(OpCodes.Ldc_I4_0);
                il.Emit(OpCodes.Ble, stop);
                // BudgetLimit - Icount >= successor's ops (the count is up to date: AddCount above)
                StateAddress(CpuState.BudgetLimitOffset);
                il.Emit(OpCodes.Ldind_I8);
                StateAddress(CpuState.IcountOffset);
                il.Emit(OpCodes.Ldind_I8);
                il.Emit(OpCodes.Sub);
                il.Emit(OpCodes.Ldloc, _next);
                il.Emit(OpCodes.Call, OpsGetter);
                il.Emit(OpCodes.Ldlen);
                il.Emit(OpCodes.Conv_U8);
                il.Emit(OpCodes.Blt_Un, stop);
                il.Emit(OpCodes.Ldloc, _next);
                il.Emit(OpCodes.Call, CompiledGetter);
                il.Emit(OpCodes.Ldarg_1);
                il.Emit(OpCodes.Ldarg_2);
                il.Emit(OpCodes.Ldloc, _next);
                il.Emit(OpCodes.Tailcall);
                il.Emit(OpCodes.Callvirt, InvokeMethod);
                il.Emit(OpCodes.Ret);
                il.MarkLabel(stop);
            }
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Stfld, ChainExitBlockField);
            il.Emit(OpCodes.Ldc_I4, ChainExit - (int)slot);
            il.Emit(OpCodes.Ret);
        }

        /// <summary>Branches to <paramref name="stale"/> when this block's links were made under another link epoch than the vCPU's current one (the epoch's address is fixed at emit time).</summary>
        private void BranchIfLinkEpochStale(Label stale)
        {
            ILGenerator il = _il;
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Ldfld, LinkEpochField);
            il.Emit(OpCodes.Ldc_I8, (long)_linkEpoch);
            il.Emit(OpCodes.Conv_U);
            il.Emit(OpCodes.Ldind_I8);
            il.Emit(OpCodes.Bne_Un, stale);
        }

        /// <summary>
        /// <c>EmulatorVcpu.FindTranslated</c> inline (an indirect exit whose link slot holds another block): the block in
        /// the direct-mapped cache at <paramref name="target"/>, when it starts there, is valid and translated, becomes
        /// the slot's link and is followed at <paramref name="linked"/> (in <c>_next</c>); no such block goes to
        /// <paramref name="stop"/>. A stale link epoch (the slots must be emptied first) takes the helper.
        /// </summary>
        private void FindTranslated(LocalBuilder target, Label stop, Label linked)
        {
            ILGenerator il = _il;
            Label call = il.DefineLabel();
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Call, CodeGetter);
            il.Emit(OpCodes.Callvirt, FastGetter);
            il.Emit(OpCodes.Ldloc, target); // CodeCache.FastSlot
            il.Emit(OpCodes.Ldloc, target);
            il.Emit(OpCodes.Ldc_I4, 12);
            il.Emit(OpCodes.Shr_Un);
            il.Emit(OpCodes.Xor);
            il.Emit(OpCodes.Ldc_I8, (long)(CodeCache.FastSize - 1));
            il.Emit(OpCodes.And);
            il.Emit(OpCodes.Conv_I4);
            il.Emit(OpCodes.Ldelem_Ref);
            il.Emit(OpCodes.Stloc, _next);
            il.Emit(OpCodes.Ldloc, _next);
            il.Emit(OpCodes.Brfalse, stop);
            il.Emit(OpCodes.Ldloc, _next);
            il.Emit(OpCodes.Call, StartGetter);
            il.Emit(OpCodes.Ldloc, target);
            il.Emit(OpCodes.Bne_Un, stop);
            il.Emit(OpCodes.Ldloc, _next);
            il.Emit(OpCodes.Call, ValidGetter);
            il.Emit(OpCodes.Brfalse, stop);
            il.Emit(OpCodes.Ldloc, _next);
            il.Emit(OpCodes.Call, CompiledGetter);
            il.Emit(OpCodes.Brfalse, stop);
            BranchIfLinkEpochStale(call);
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Ldloc, _next);
            il.Emit(OpCodes.Stfld, LinkFields[(int)LinkSlot.Indirect]);
            il.Emit(OpCodes.Br, linked);
            il.MarkLabel(call);
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Ldloc, target);
            il.Emit(OpCodes.Call, FindTranslatedMethod);
            il.Emit(OpCodes.Stloc, _next);
            il.Emit(OpCodes.Ldloc, _next);
            il.Emit(OpCodes.Brfalse, stop);
            il.Emit(OpCodes.Br, linked);
        }

        private Label Bail(int index)
        {
            Label l = _il.DefineLabel();
            // The interpreter re-runs op index from the vCPU's state: the registers written before it go there first
            // (an op writes its registers only after its last check, so none of its own).
            _bails.Add((l, index, _pending, _unflushed, _dirty));
            return l;
        }

        private void AddCount(int count)
        {
            if (count == 0)
            {
                return;
            }
            StateAddress(CpuState.IcountOffset);
            StateAddress(CpuState.IcountOffset);
            _il.Emit(OpCodes.Ldind_I8);
            _il.Emit(OpCodes.Ldc_I8, (long)count);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stind_I8);
        }

        /// <summary>Returns <paramref name="code"/> after the op being emitted (counts it too).</summary>
        private void ReturnAfter(int code)
        {
            AddCount(_unflushed + 1);
            _il.Emit(OpCodes.Ldc_I4, code);
            _il.Emit(OpCodes.Ret);
        }

        /// <summary>
        /// Runs ops [from, <paramref name="to"/>) of the block in the interpreter (<c>ExecuteBlock</c>; the first index
        /// pushed by <paramref name="pushFrom"/>): returns <see cref="ExitRequested"/> when it asks to leave, else goes
        /// on at <paramref name="done"/>.
        /// </summary>
        private void Interpret(Action pushFrom, int to, Label done) => CallOrExit(ExecuteMethod, () =>
        {
            pushFrom();
            _il.Emit(OpCodes.Ldc_I4, to);
        }, done);

        /// <summary>
        /// Calls the vCPU helper <paramref name="helper"/>(block, args pushed by <paramref name="pushArgs"/>), which
        /// returns true when the run must leave (a fault delivered, an exit to the VMM): then returns
        /// <see cref="ExitRequested"/>, else goes on at <paramref name="done"/>.
        /// </summary>
        private void CallOrExit(MethodInfo helper, Action pushArgs, Label done)
        {
            ILGenerator il = _il;
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldarg_3);
            pushArgs();
            il.Emit(OpCodes.Call, helper);
            il.Emit(OpCodes.Brfalse, done);
            il.Emit(OpCodes.Ldc_I4, ExitRequested);
            il.Emit(OpCodes.Ret);
        }

        /// <summary>Runs op <paramref name="k"/> in the interpreter (flags and count written back first).</summary>
        private bool Delegate(int k)
        {
            ILGenerator il = _il;
            Flush(_pending);
            _pending = default;
            Spill();
            AddCount(_unflushed);
            _unflushed = 0;
            Label go = il.DefineLabel();
            Interpret(() => il.Emit(OpCodes.Ldc_I4, k), k + 1, go);
            il.MarkLabel(go);
            Forget();
            if (k == _ops.Length - 1)
            {
                // The interpreter set rip (branch target or next instruction).
                il.Emit(OpCodes.Ldc_I4, Completed);
                il.Emit(OpCodes.Ret);
                return true;
            }
            // A store into this block's own code: the rest of it is stale; rip is already the next instruction.
            Label valid = il.DefineLabel();
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Callvirt, ValidGetter);
            il.Emit(OpCodes.Brtrue, valid);
            il.Emit(OpCodes.Ldc_I4, Completed);
            il.Emit(OpCodes.Ret);
            il.MarkLabel(valid);
            return false;
        }

        /// <summary>Writes the pending lazy-flag record back to the vCPU.</summary>
        private void Flush(Pending pending)
        {
            if (pending.Kind == LazyKind.None)
            {
                return;
            }
            int size = pending.Size;
            ILGenerator il = _il;
            StateAddress(CpuState.LazyKindOffset); il.Emit(OpCodes.Ldc_I4, (int)pending.Kind); il.Emit(OpCodes.Stind_I4);
            StateAddress(CpuState.LazyAOffset); il.Emit(OpCodes.Ldloc, _la); il.Emit(OpCodes.Stind_I8);
            StateAddress(CpuState.LazyBOffset); il.Emit(OpCodes.Ldloc, _lb); il.Emit(OpCodes.Stind_I8);
            StateAddress(CpuState.LazyResultOffset); il.Emit(OpCodes.Ldloc, _lr); il.Emit(OpCodes.Stind_I8);
            StateAddress(CpuState.LazySizeOffset); il.Emit(OpCodes.Ldc_I4, size); il.Emit(OpCodes.Stind_I4);
            StateAddress(CpuState.FlagOverrideOffset); il.Emit(OpCodes.Ldc_I4_0); il.Emit(OpCodes.Stind_I1);
        }

        private void StateAddress(int offset)
        {
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, offset);
            _il.Emit(OpCodes.Add);
        }

        private void SetRip(ulong value)
        {
            StateAddress(CpuState.RipOffset);
            _il.Emit(OpCodes.Ldc_I8, (long)value);
            _il.Emit(OpCodes.Stind_I8);
        }

        /// <summary>RIP = a computed target held in <paramref name="target"/> (ret, indirect call and jump).</summary>
        private void SetRip(LocalBuilder target)
        {
            StateAddress(CpuState.RipOffset);
            _il.Emit(OpCodes.Ldloc, target);
            _il.Emit(OpCodes.Stind_I8);
        }

        private void EffectiveAddress(in MicroOp op)
        {
            ILGenerator il = _il;
            il.Emit(OpCodes.Ldc_I8, (long)op.Disp);
            if (op.Base != Translator.NoReg)
            {
                LoadReg(op.Base, false);
                il.Emit(OpCodes.Add);
            }
            if (op.Index != Translator.NoReg)
            {
                LoadReg(op.Index, false);
                il.Emit(OpCodes.Ldc_I4, (int)op.Shift);
                il.Emit(OpCodes.Shl);
                il.Emit(OpCodes.Add);
            }
            if (op.Addr32)
            {
                il.Emit(OpCodes.Conv_U4);
                il.Emit(OpCodes.Conv_U8);
            }
            if (op.Seg != 0)
            {
                il.Emit(OpCodes.Ldarg_0);
                il.Emit(OpCodes.Ldc_I4, (int)op.Seg);
                il.Emit(OpCodes.Call, SegmentBaseMethod);
                il.Emit(OpCodes.Add);
            }
        }

        /// <summary>
        /// The software TLB, inline: bails out to the interpreter at op <paramref name="k"/> unless the TLB entry of
        /// _addr's page allows this access for all of [_addr, _addr + length) (the tag is compared with the page of the
        /// last byte, so an access that crosses a page misses); on a hit, _host holds the host address.
        /// </summary>
        private void CheckAccess(int k, int length, bool store)
        {
            ILGenerator il = _il;
            il.Emit(OpCodes.Ldarg_2);
            il.Emit(OpCodes.Ldloc, _addr); // Tlb.Index
            il.Emit(OpCodes.Ldc_I4, 12);
            il.Emit(OpCodes.Shr_Un);
            il.Emit(OpCodes.Ldloc, _addr);
            il.Emit(OpCodes.Ldc_I4, 12 + Tlb.Bits);
            il.Emit(OpCodes.Shr_Un);
            il.Emit(OpCodes.Xor);
            il.Emit(OpCodes.Ldc_I8, (long)Tlb.IndexMask);
            il.Emit(OpCodes.And);
            il.Emit(OpCodes.Ldc_I4, 5); // sizeof(TlbEntry) == 32
            il.Emit(OpCodes.Shl);
            il.Emit(OpCodes.Conv_U);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Stloc, _entry);
            il.Emit(OpCodes.Ldloc, _entry);
            il.Emit(OpCodes.Ldc_I4, store ? TlbEntry.WriteTagOffset : TlbEntry.ReadTagOffset);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Ldind_I8);
            il.Emit(OpCodes.Ldloc, _addr);
            il.Emit(OpCodes.Ldc_I8, (long)(length - 1));
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Ldc_I8, ~0xFFFL);
            il.Emit(OpCodes.And);
            // A miss hands the rest of the block to the interpreter, whose access walks the tables and fills the TLB
            // (or raises the fault, or takes the slow path of a store). No call on the translated path: a refill call
            // here, rejoining it, made RyuJIT keep every guest register local live across it on the stack (measured:
            // bench/emulator-suite-notes.md, fifth round); a miss is rare once the TLB holds the working set.
            il.Emit(OpCodes.Bne_Un, Bail(k));
            il.Emit(OpCodes.Ldloc, _entry);
            il.Emit(OpCodes.Ldc_I4, TlbEntry.AddendOffset);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Ldind_I8);
            il.Emit(OpCodes.Ldloc, _addr);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Conv_U);
            il.Emit(OpCodes.Stloc, _host);
        }

        /// <summary>
        /// Pushes condition <paramref name="cc"/> (0 or 1). After an in-block cmp/sub or logic op it is decided from
        /// the operands in the IL locals (LazyFlags.Condition's fast paths); otherwise the record is written back and
        /// the vCPU evaluates it.
        /// </summary>
        private void Condition(int cc)
        {
            ILGenerator il = _il;
            int test = cc >> 1;
            Pending p = _pending;
            ulong sign = p.Size == 4 ? 0x8000_0000UL : 0x8000_0000_0000_0000UL;
            void Signed(LocalBuilder l)
            {
                il.Emit(OpCodes.Ldloc, l);
                if (p.Size == 4)
                {
                    il.Emit(OpCodes.Conv_I4);
                    il.Emit(OpCodes.Conv_I8);
                }
            }
            void Negative()
            {
                il.Emit(OpCodes.Ldloc, _lr);
                il.Emit(OpCodes.Ldc_I8, (long)sign);
                il.Emit(OpCodes.And);
                il.Emit(OpCodes.Ldc_I8, 0L);
                il.Emit(OpCodes.Cgt_Un);
            }
            void Zero()
            {
                il.Emit(OpCodes.Ldloc, _lr);
                il.Emit(OpCodes.Ldc_I8, 0L);
                il.Emit(OpCodes.Ceq);
            }
            if (p.Kind == LazyKind.Sub && test is 1 or 2 or 3 or 4 or 6 or 7)
            {
                switch (test)
                {
                    case 1: il.Emit(OpCodes.Ldloc, _la); il.Emit(OpCodes.Ldloc, _lb); il.Emit(OpCodes.Clt_Un); break;
                    case 2: il.Emit(OpCodes.Ldloc, _la); il.Emit(OpCodes.Ldloc, _lb); il.Emit(OpCodes.Ceq); break;
                    case 3: il.Emit(OpCodes.Ldloc, _la); il.Emit(OpCodes.Ldloc, _lb); il.Emit(OpCodes.Cgt_Un); il.Emit(OpCodes.Ldc_I4_0); il.Emit(OpCodes.Ceq); break;
                    case 4: Negative(); break;
                    case 6: Signed(_la); Signed(_lb); il.Emit(OpCodes.Clt); break;
                    default: Signed(_la); Signed(_lb); il.Emit(OpCodes.Cgt); il.Emit(OpCodes.Ldc_I4_0); il.Emit(OpCodes.Ceq); break;
                }
            }
            else if (p.Kind is LazyKind.Inc or LazyKind.Dec && test is 2 or 4)
            {
                // ZF and SF of inc/dec: the (size-masked) result is zero, or negative.
                if (test == 2)
                {
                    Zero();
                }
                else
                {
                    Negative();
                }
            }
            else if (p.Kind == LazyKind.Logic && test is 0 or 1 or 2 or 3 or 4 or 6 or 7)
            {
                switch (test)
                {
                    case 0: case 1: il.Emit(OpCodes.Ldc_I4_0); break; // CF = OF = 0
                    case 2: case 3: Zero(); break;
                    case 4: case 6: Negative(); break;
                    default: Zero(); Negative(); il.Emit(OpCodes.Or); break;
                }
            }
            else
            {
                Flush(_pending);
                _pending = default;
                il.Emit(OpCodes.Ldarg_0);
                il.Emit(OpCodes.Ldc_I4, cc);
                il.Emit(OpCodes.Call, CondMethod);
                return;
            }
            if ((cc & 1) != 0)
            {
                il.Emit(OpCodes.Ldc_I4_0);
                il.Emit(OpCodes.Ceq);
            }
        }

        /// <summary>Loads <paramref name="length"/> bytes at _host (zero-extended to 64 bits).</summary>
        private void LoadHost(int length)
        {
            ILGenerator il = _il;
            HostPointer();
            if (length > 1)
            {
                il.Emit(OpCodes.Unaligned, (byte)1);
            }
            il.Emit(length switch { 8 => OpCodes.Ldind_I8, 4 => OpCodes.Ldind_U4, 2 => OpCodes.Ldind_U2, _ => OpCodes.Ldind_U1 });
            il.Emit(OpCodes.Conv_U8);
        }

        /// <summary>Loads source operand B of <paramref name="op"/> at <paramref name="size"/> bytes (register incl. AH..BH, immediate or memory; memory checked for op <paramref name="k"/>), zero-extended.</summary>
        private void LoadB(int k, in MicroOp op, int size)
        {
            ILGenerator il = _il;
            switch (op.B)
            {
                case Loc.Imm:
                    il.Emit(OpCodes.Ldc_I8, (long)(size == 8 ? op.Imm : op.Imm & ((1UL << (size * 8)) - 1)));
                    return;
                case Loc.Reg when op.RegB >= 16:
                    LoadReg(op.RegB - 16, false);
                    il.Emit(OpCodes.Ldc_I4_8);
                    il.Emit(OpCodes.Shr_Un);
                    il.Emit(OpCodes.Conv_U1);
                    il.Emit(OpCodes.Conv_U8);
                    return;
                case Loc.Reg:
                    LoadReg(op.RegB, false);
                    if (size < 8)
                    {
                        il.Emit(size == 4 ? OpCodes.Conv_U4 : size == 2 ? OpCodes.Conv_U2 : OpCodes.Conv_U1);
                        il.Emit(OpCodes.Conv_U8);
                    }
                    return;
                default:
                    EffectiveAddress(in op);
                    il.Emit(OpCodes.Stloc, _addr);
                    CheckAccess(k, size, store: false);
                    LoadHost(size);
                    return;
            }
        }

        private void HostPointer() => _il.Emit(OpCodes.Ldloc, _host);

        private void Push(int k, Action value)
        {
            ILGenerator il = _il;
            value();
            il.Emit(OpCodes.Stloc, _v);
            LoadReg(4, false);
            il.Emit(OpCodes.Ldc_I8, 8L);
            il.Emit(OpCodes.Sub);
            il.Emit(OpCodes.Stloc, _addr);
            CheckAccess(k, 8, store: true);
            HostPointer();
            il.Emit(OpCodes.Ldloc, _v);
            il.Emit(OpCodes.Unaligned, (byte)1);
            il.Emit(OpCodes.Stind_I8);
            StoreReg(4, false, () => il.Emit(OpCodes.Ldloc, _addr));
        }

        /// <summary>Loads [rsp] into _v (bailing out when outside memory) and adds <paramref name="extra"/> + 8 to rsp.</summary>
        private void Pop(int k, ulong extra)
        {
            ILGenerator il = _il;
            LoadReg(4, false);
            il.Emit(OpCodes.Stloc, _addr);
            CheckAccess(k, 8, store: false);
            HostPointer();
            il.Emit(OpCodes.Unaligned, (byte)1);
            il.Emit(OpCodes.Ldind_I8);
            il.Emit(OpCodes.Stloc, _v);
            StoreReg(4, false, () =>
            {
                il.Emit(OpCodes.Ldloc, _addr);
                il.Emit(OpCodes.Ldc_I8, (long)(8 + extra));
                il.Emit(OpCodes.Add);
            });
        }

        /// <summary>
        /// True when the flags that op <paramref name="k"/> (a rotate or an imul) writes are dead: a later op of the
        /// block writes every arithmetic flag, and the ops in between are register-only native forms that neither read
        /// flags nor can fault or leave translated code (so no exit, fault or interrupt can observe RFLAGS before they
        /// are overwritten).
        /// </summary>
        private bool FlagsDead(int k)
        {
            for (int j = k + 1; j < _ops.Length; j++)
            {
                ref MicroOp next = ref _ops[j];
                switch (next.Kind)
                {
                    case >= OpKind.AddRR64 and <= OpKind.TestRI32:
                        return true;
                    case OpKind.ShiftRI when (OpKind)next.Cond is OpKind.Shl or OpKind.Shr or OpKind.Sar:
                        return true; // a non-zero count: all flags written
                    case OpKind.MovRR64 or OpKind.MovRR32 or OpKind.MovRI64 or OpKind.MovRI32 or OpKind.Lea64 or OpKind.Lea32
                        or OpKind.MovzxRR8 or OpKind.Nop or OpKind.ShiftRI:
                        continue;
                    default:
                        return false;
                }
            }
            return false;
        }

        /// <summary>Emits op <paramref name="k"/>; returns true when it ended the block (set rip and returned).</summary>
        private bool EmitOp(int k)
        {
            if (!Native(in _ops[k], k == _ops.Length - 1))
            {
                return Delegate(k);
            }
            if (EmitSseInline(k)) // BlockCompiler.Sse.cs: FP arithmetic and XMM register moves inline
            {
                _unflushed++;
                return false;
            }
            ref MicroOp op = ref _ops[k];
            bool direct = op.Kind is >= OpKind.MovX128 and <= OpKind.MovntStore && op.A != Loc.Mem && op.B != Loc.Mem;
            bool ended = VectorHelper(in op) && !direct && !SseMemoryMove(in op)
                ? EmitVectorOp(k)
                : EmitNative(k); // bail-outs inside it record the count without it

            _unflushed++;
            return ended;
        }

        /// <summary>
        /// An SSE/x87/extension op through <c>EmulatorVcpu.ExecuteVectorOp</c>: the lazy record and the count are written
        /// back first (a fault is delivered from the vCPU's state), and the record stays in the locals afterwards
        /// unless the op writes flags itself (comis, ptest, pcmpXstrX, fcomi, adcx/adox, bzhi).
        /// </summary>
        private bool EmitVectorOp(int k)
        {
            ILGenerator il = _il;
            Flush(_pending);
            // The helper reads its operands' registers (and delivers a fault) from the vCPU and may write some.
            Spill();
            AddCount(_unflushed);
            _unflushed = 0;
            CallExecuteVectorOp(k);
            Forget();
            if (InstructionTable.Info(_ops[k].Kind).MayWrite != 0)
            {
                _pending = default;
            }
            // A store into this block's own code: the rest of it is stale; rip is the next instruction.
            Label valid = il.DefineLabel();
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Callvirt, ValidGetter);
            il.Emit(OpCodes.Brtrue, valid);
            SetRip(_ops[k].Next);
            ReturnAfter(Completed);
            il.MarkLabel(valid);
            return false;
        }

        /// <summary>Calls <c>EmulatorVcpu.ExecuteVectorOp</c> for op <paramref name="k"/> and leaves the block with <see cref="ExitRequested"/> when it asks (a fault delivered, an exit to the VMM); the caller has written back what the helper reads.</summary>
        private void CallExecuteVectorOp(int k)
        {
            Label go = _il.DefineLabel();
            CallOrExit(VectorOpMethod, () => _il.Emit(OpCodes.Ldc_I4, k), go);
            _il.MarkLabel(go);
        }

        /// <summary>XMM register <paramref name="reg"/>'s address in the vCPU state (arg 1 is the state's base: R is at offset 0).</summary>
        private void XmmAddress(int reg, int offset = 0)
        {
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, CpuState.XmmOffset + (reg * 16) + offset);
            _il.Emit(OpCodes.Add);
        }

        /// <summary>
        /// movdqa/movdqu/movaps/movups/movapd/movupd, movd/movq, movss/movsd between an XMM register and memory, as
        /// ExecuteSse does them: the CR0/CR4 check and a misaligned 16-byte operand bail out to the interpreter (which
        /// raises #NM/#UD/#GP), then the TLB check, then the copy; loads of 4 or 8 bytes zero the rest of the register.
        /// </summary>
        private void EmitSseMemoryMove(int k, in MicroOp op)
        {
            ILGenerator il = _il;
            Label bail = Bail(k);
            StateAddress(CpuState.SseFaultOffset);
            il.Emit(OpCodes.Ldind_I4);
            il.Emit(OpCodes.Brtrue, bail);
            bool store = op.A == Loc.Mem;
            int length = op.Kind switch
            {
                OpKind.MovX128 => 16,
                OpKind.MovdToX or OpKind.MovdFromX => op.Size,
                OpKind.MovssLoad or OpKind.MovssStore => 4,
                _ => 8,
            };
            int xmm = store ? op.RegB : op.RegA;
            EffectiveAddress(in op);
            il.Emit(OpCodes.Stloc, _addr);
            if (length == 16 && op.Aligned)
            {
                il.Emit(OpCodes.Ldloc, _addr);
                il.Emit(OpCodes.Ldc_I8, 15L);
                il.Emit(OpCodes.And);
                il.Emit(OpCodes.Ldc_I8, 0L);
                il.Emit(OpCodes.Bne_Un, bail);
            }
            CheckAccess(k, length, store);
            if (length == 16)
            {
                if (store)
                {
                    HostPointer();
                    XmmAddress(xmm);
                }
                else
                {
                    XmmAddress(xmm);
                    HostPointer();
                }
                il.Emit(OpCodes.Ldc_I4, 16);
                il.Emit(OpCodes.Unaligned, (byte)1);
                il.Emit(OpCodes.Cpblk);
                return;
            }
            if (store)
            {
                HostPointer();
                XmmAddress(xmm);
                il.Emit(length == 8 ? OpCodes.Ldind_I8 : OpCodes.Ldind_U4);
                il.Emit(OpCodes.Unaligned, (byte)1);
                il.Emit(length == 8 ? OpCodes.Stind_I8 : OpCodes.Stind_I4);
                return;
            }
            XmmAddress(xmm);
            LoadHost(length);
            il.Emit(OpCodes.Stind_I8);
            XmmAddress(xmm, 8);
            il.Emit(OpCodes.Ldc_I8, 0L);
            il.Emit(OpCodes.Stind_I8);
        }

        private bool EmitNative(int k)
        {
            ILGenerator il = _il;
            MicroOp op = _ops[k];
            switch (op.Kind)
            {
                case OpKind.Nop:
                    return false;
                case OpKind.MovRR64: StoreReg(op.RegA, false, () => LoadReg(op.RegB, false)); return false;
                case OpKind.MovRR32: StoreReg(op.RegA, true, () => LoadReg(op.RegB, false)); return false;
                case OpKind.MovRI64:
                case OpKind.MovRI32: StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldc_I8, (long)op.Imm)); return false;
                case >= OpKind.AddRR64 and <= OpKind.TestRI32:
                {
                    int rel = (int)op.Kind - (int)OpKind.MovRR64;
                    bool narrow = (rel & 1) != 0;
                    bool imm = (rel & 2) != 0;
                    int group = rel >> 2; // 1 add, 2 sub, 3 and, 4 or, 5 xor, 6 cmp, 7 test
                    LoadReg(op.RegA, narrow);
                    il.Emit(OpCodes.Stloc, _la);
                    if (imm)
                    {
                        il.Emit(OpCodes.Ldc_I8, (long)op.Imm);
                    }
                    else
                    {
                        LoadReg(op.RegB, narrow);
                    }
                    il.Emit(OpCodes.Stloc, _lb);
                    il.Emit(OpCodes.Ldloc, _la);
                    il.Emit(OpCodes.Ldloc, _lb);
                    il.Emit(group switch { 1 => OpCodes.Add, 2 or 6 => OpCodes.Sub, 3 or 7 => OpCodes.And, 4 => OpCodes.Or, _ => OpCodes.Xor });
                    if (narrow)
                    {
                        il.Emit(OpCodes.Conv_U4);
                        il.Emit(OpCodes.Conv_U8);
                    }
                    il.Emit(OpCodes.Stloc, _lr);
                    if (group is not (6 or 7))
                    {
                        StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _lr));
                    }
                    _pending = new(group switch { 1 => LazyKind.Add, 2 or 6 => LazyKind.Sub, _ => LazyKind.Logic }, narrow ? 4 : 8);
                    return false;
                }
                case OpKind.Neg:
                {
                    bool narrow = op.Size == 4;
                    il.Emit(OpCodes.Ldc_I8, 0L);
                    il.Emit(OpCodes.Stloc, _la);
                    LoadReg(op.RegA, narrow);
                    il.Emit(OpCodes.Stloc, _lb);
                    il.Emit(OpCodes.Ldloc, _lb);
                    il.Emit(OpCodes.Neg);
                    if (narrow)
                    {
                        il.Emit(OpCodes.Conv_U4);
                        il.Emit(OpCodes.Conv_U8);
                    }
                    il.Emit(OpCodes.Stloc, _lr);
                    StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _lr));
                    _pending = new(LazyKind.Sub, op.Size);
                    return false;
                }
                case OpKind.Not:
                    StoreReg(op.RegA, op.Size == 4, () =>
                    {
                        LoadReg(op.RegA, false);
                        il.Emit(OpCodes.Not);
                    });
                    return false;
                case OpKind.Lea64: StoreReg(op.RegA, false, () => EffectiveAddress(in op)); return false;
                case OpKind.Lea32: StoreReg(op.RegA, true, () => EffectiveAddress(in op)); return false;
                case OpKind.LoadRM64:
                case OpKind.LoadRM32:
                case OpKind.MovzxLoad8:
                {
                    int length = op.Kind == OpKind.LoadRM64 ? 8 : op.Kind == OpKind.LoadRM32 ? 4 : 1;
                    EffectiveAddress(in op);
                    il.Emit(OpCodes.Stloc, _addr);
                    CheckAccess(k, length, store: false);
                    StoreReg(op.RegA, false, () =>
                    {
                        HostPointer();
                        if (length > 1)
                        {
                            il.Emit(OpCodes.Unaligned, (byte)1);
                        }
                        il.Emit(length == 8 ? OpCodes.Ldind_I8 : length == 4 ? OpCodes.Ldind_U4 : OpCodes.Ldind_U1);
                        il.Emit(OpCodes.Conv_U8);
                    });
                    return false;
                }
                case OpKind.StoreMR64:
                case OpKind.StoreMR32:
                {
                    int length = op.Kind == OpKind.StoreMR64 ? 8 : 4;
                    EffectiveAddress(in op);
                    il.Emit(OpCodes.Stloc, _addr);
                    CheckAccess(k, length, store: true);
                    HostPointer();
                    LoadReg(op.RegB, false);
                    if (length == 4)
                    {
                        il.Emit(OpCodes.Conv_U4);
                    }
                    il.Emit(OpCodes.Unaligned, (byte)1);
                    il.Emit(length == 8 ? OpCodes.Stind_I8 : OpCodes.Stind_I4);
                    return false;
                }
                case OpKind.MovzxRR8:
                    StoreReg(op.RegA, false, () =>
                    {
                        LoadReg(op.RegB, false);
                        il.Emit(OpCodes.Conv_U1);
                        il.Emit(OpCodes.Conv_U8);
                    });
                    return false;
                case OpKind.ShiftRI when (OpKind)op.Cond is OpKind.Shl or OpKind.Shr or OpKind.Sar:
                {
                    // A non-zero count (masked at decode): the flags are the lazy shift record, as in EmulatorVcpu.Shift.
                    bool narrow = op.Size == 4;
                    LoadReg(op.RegA, narrow);
                    il.Emit(OpCodes.Stloc, _la);
                    il.Emit(OpCodes.Ldc_I8, (long)op.Imm);
                    il.Emit(OpCodes.Stloc, _lb);
                    il.Emit(OpCodes.Ldloc, _la);
                    OpKind shift = (OpKind)op.Cond;
                    if (shift == OpKind.Sar && narrow)
                    {
                        il.Emit(OpCodes.Conv_I4);
                    }
                    il.Emit(OpCodes.Ldc_I4, (int)op.Imm);
                    il.Emit(shift == OpKind.Shl ? OpCodes.Shl : shift == OpKind.Shr ? OpCodes.Shr_Un : OpCodes.Shr);
                    if (narrow)
                    {
                        il.Emit(OpCodes.Conv_U4);
                        il.Emit(OpCodes.Conv_U8);
                    }
                    il.Emit(OpCodes.Stloc, _lr);
                    StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _lr));
                    _pending = new(shift == OpKind.Shl ? LazyKind.Shl : shift == OpKind.Shr ? LazyKind.Shr : LazyKind.Sar, op.Size);
                    return false;
                }
                case OpKind.ShiftRI when FlagsDead(k):
                {
                    // rol/ror whose CF/OF no one can see (a later op in the block writes every flag first, and nothing
                    // in between can fault, bail out or read flags): the rotate alone, the lazy record untouched.
                    bool narrow = op.Size == 4;
                    int bits = narrow ? 32 : 64;
                    int left = (OpKind)op.Cond == OpKind.Rol ? (int)op.Imm : bits - (int)op.Imm; // 0 < Imm < bits (decode)
                    LoadReg(op.RegA, narrow);
                    il.Emit(OpCodes.Stloc, _v);
                    StoreReg(op.RegA, narrow, () =>
                    {
                        il.Emit(OpCodes.Ldloc, _v);
                        il.Emit(OpCodes.Ldc_I4, left);
                        il.Emit(OpCodes.Shl);
                        il.Emit(OpCodes.Ldloc, _v);
                        il.Emit(OpCodes.Ldc_I4, bits - left);
                        il.Emit(OpCodes.Shr_Un);
                        il.Emit(OpCodes.Or);
                    });
                    return false;
                }
                case OpKind.ShiftRI:
                    Flush(_pending);
                    _pending = default;
                    StoreReg(op.RegA, false, () =>
                    {
                        il.Emit(OpCodes.Ldarg_0);
                        il.Emit(OpCodes.Ldc_I4, (int)op.Cond);
                        LoadReg(op.RegA, op.Size == 4);
                        il.Emit(OpCodes.Ldc_I4, (int)op.Imm);
                        il.Emit(OpCodes.Ldc_I4, (int)op.Size);
                        il.Emit(OpCodes.Call, ShiftMethod);
                    });
                    return false;
                case OpKind.Inc:
                case OpKind.Dec:
                {
                    // CF survives inc/dec: the previous record goes to the vCPU, which folds its CF into RFLAGS
                    // (EmulatorVcpu.KeepCarry, as the interpreter does); the new record (ZF/SF/OF/AF/PF) stays in the locals.
                    bool narrow = op.Size == 4;
                    Flush(_pending);
                    _pending = default;
                    il.Emit(OpCodes.Ldarg_0);
                    il.Emit(OpCodes.Call, KeepCarryMethod);
                    LoadReg(op.RegA, narrow);
                    il.Emit(OpCodes.Stloc, _la);
                    il.Emit(OpCodes.Ldc_I8, 1L);
                    il.Emit(OpCodes.Stloc, _lb);
                    il.Emit(OpCodes.Ldloc, _la);
                    il.Emit(OpCodes.Ldc_I8, 1L);
                    il.Emit(op.Kind == OpKind.Inc ? OpCodes.Add : OpCodes.Sub);
                    if (narrow)
                    {
                        il.Emit(OpCodes.Conv_U4);
                        il.Emit(OpCodes.Conv_U8);
                    }
                    il.Emit(OpCodes.Stloc, _lr);
                    StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _lr));
                    _pending = new(op.Kind == OpKind.Inc ? LazyKind.Inc : LazyKind.Dec, op.Size);
                    return false;
                }
                case OpKind.Push:
                    Push(k, () => LoadReg(op.RegB, false));
                    return false;
                case OpKind.Pop:
                    Pop(k, 0);
                    StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _v));
                    return false;
                case OpKind.Jcc:
                {
                    Label taken = il.DefineLabel();
                    Condition(op.Cond);
                    il.Emit(OpCodes.Stloc, _cond);
                    Flush(_pending);
                    Spill(); // once for both exits
                    il.Emit(OpCodes.Ldloc, _cond);
                    il.Emit(OpCodes.Brtrue, taken);
                    SetRip(op.Next);
                    Leave(LinkSlot.Next, _unflushed + 1, null);
                    il.MarkLabel(taken);
                    SetRip(op.Imm);
                    Leave(LinkSlot.Target, _unflushed + 1, null);
                    return true;
                }
                case OpKind.Jmp:
                    Flush(_pending);
                    SetRip(op.Imm);
                    Leave(LinkSlot.Target, _unflushed + 1, null);
                    return true;
                case OpKind.Call:
                    Push(k, () => il.Emit(OpCodes.Ldc_I8, (long)op.Next));
                    Flush(_pending);
                    SetRip(op.Imm);
                    Leave(LinkSlot.Target, _unflushed + 1, null);
                    return true;
                case OpKind.Ret:
                    Pop(k, op.Imm);
                    Flush(_pending);
                    SetRip(_v);
                    Leave(LinkSlot.Indirect, _unflushed + 1, _v);
                    return true;
                case OpKind.CallInd:
                    // The target is read first (a fault there, or in the push, re-runs the call in the interpreter
                    // with nothing changed), then the return address is pushed, as EmulatorVcpu's CallInd does.
                    LoadB(k, in op, 8);
                    il.Emit(OpCodes.Stloc, _target);
                    Push(k, () => il.Emit(OpCodes.Ldc_I8, (long)op.Next));
                    Flush(_pending);
                    SetRip(_target);
                    Leave(LinkSlot.Indirect, _unflushed + 1, _target);
                    return true;
                case OpKind.JmpInd:
                    LoadB(k, in op, 8);
                    il.Emit(OpCodes.Stloc, _v);
                    Flush(_pending);
                    SetRip(_v);
                    Leave(LinkSlot.Indirect, _unflushed + 1, _v);
                    return true;
                case OpKind.SignExtendAcc:
                    // cdqe (rax = sign-extended eax) and cwde (eax = sign-extended ax, zero-extended to 64 bits)
                    StoreReg(0, op.Size == 4, () =>
                    {
                        LoadReg(0, false);
                        il.Emit(op.Size == 8 ? OpCodes.Conv_I4 : OpCodes.Conv_I2);
                        il.Emit(OpCodes.Conv_I8);
                    });
                    return false;
                case >= OpKind.MovX128 and <= OpKind.MovntStore when SseMemoryMove(in op):
                    EmitSseMemoryMove(k, in op);
                    return false;
                case >= OpKind.MovX128 and <= OpKind.MovntStore:
                    // CR0.TS/EM or CR4.OSFXSR may forbid SSE now: the interpreter then raises #NM/#UD at this op.
                    StateAddress(CpuState.SseFaultOffset);
                    il.Emit(OpCodes.Ldind_I4);
                    il.Emit(OpCodes.Brtrue, Bail(k));
                    (int reads, int writes) = SseRegisters(in op);
                    Spill(reads | writes);
                    il.Emit(OpCodes.Ldarg_0);
                    il.Emit(OpCodes.Ldarg_3);
                    il.Emit(OpCodes.Callvirt, OpsGetter);
                    il.Emit(OpCodes.Ldc_I4, k);
                    il.Emit(OpCodes.Ldelema, typeof(MicroOp));
                    il.Emit(OpCodes.Call, SseMethod);
                    if (writes != 0)
                    {
                        Forget(writes);
                    }
                    return false;
                case OpKind.Add: case OpKind.Or: case OpKind.And: case OpKind.Sub: case OpKind.Xor: case OpKind.Cmp: case OpKind.Test:
                {
                    // reg op= [mem] (memory read first, as the interpreter does), or cmp/test [mem], reg/imm.
                    bool narrow = op.Size == 4;
                    if (op.A == Loc.Reg)
                    {
                        LoadB(k, in op, op.Size);
                        il.Emit(OpCodes.Stloc, _lb);
                        LoadReg(op.RegA, narrow);
                        il.Emit(OpCodes.Stloc, _la);
                    }
                    else
                    {
                        EffectiveAddress(in op);
                        il.Emit(OpCodes.Stloc, _addr);
                        CheckAccess(k, op.Size, store: false);
                        LoadHost(op.Size);
                        il.Emit(OpCodes.Stloc, _la);
                        LoadB(k, in op, op.Size);
                        il.Emit(OpCodes.Stloc, _lb);
                    }
                    il.Emit(OpCodes.Ldloc, _la);
                    il.Emit(OpCodes.Ldloc, _lb);
                    il.Emit(op.Kind switch { OpKind.Add => OpCodes.Add, OpKind.Sub or OpKind.Cmp => OpCodes.Sub, OpKind.And or OpKind.Test => OpCodes.And, OpKind.Or => OpCodes.Or, _ => OpCodes.Xor });
                    if (narrow)
                    {
                        il.Emit(OpCodes.Conv_U4);
                        il.Emit(OpCodes.Conv_U8);
                    }
                    il.Emit(OpCodes.Stloc, _lr);
                    if (op.Kind is not (OpKind.Cmp or OpKind.Test))
                    {
                        StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _lr));
                    }
                    _pending = new(op.Kind switch { OpKind.Add => LazyKind.Add, OpKind.Sub or OpKind.Cmp => LazyKind.Sub, _ => LazyKind.Logic }, op.Size);
                    return false;
                }
                case OpKind.Movzx:
                case OpKind.Movsx:
                    LoadB(k, in op, op.Size2);
                    if (op.Kind == OpKind.Movsx)
                    {
                        il.Emit(op.Size2 == 1 ? OpCodes.Conv_I1 : op.Size2 == 2 ? OpCodes.Conv_I2 : OpCodes.Conv_I4);
                        il.Emit(OpCodes.Conv_I8);
                    }
                    il.Emit(OpCodes.Stloc, _v);
                    StoreReg(op.RegA, op.Size == 4, () => il.Emit(OpCodes.Ldloc, _v));
                    return false;
                case OpKind.Imul2 or OpKind.Imul3 when FlagsDead(k):
                {
                    // No one sees CF/OF: the truncated product alone (the low bits are the same signed or unsigned).
                    bool narrow = op.Size == 4;
                    LoadB(k, in op, op.Size);
                    il.Emit(OpCodes.Stloc, _v);
                    StoreReg(op.RegA, narrow, () =>
                    {
                        if (op.Kind == OpKind.Imul2)
                        {
                            LoadReg(op.RegA, narrow);
                        }
                        else
                        {
                            il.Emit(OpCodes.Ldc_I8, (long)op.Imm);
                        }
                        il.Emit(OpCodes.Ldloc, _v);
                        il.Emit(OpCodes.Mul);
                    });
                    return false;
                }
                case OpKind.Imul2:
                case OpKind.Imul3:
                    // ImulTrunc sets the flags itself (not lazily): the record in the locals is dead.
                    LoadB(k, in op, op.Size);
                    il.Emit(OpCodes.Stloc, _v);
                    _pending = default;
                    StoreReg(op.RegA, false, () =>
                    {
                        il.Emit(OpCodes.Ldarg_0);
                        if (op.Kind == OpKind.Imul2)
                        {
                            LoadReg(op.RegA, op.Size == 4);
                            il.Emit(OpCodes.Ldloc, _v);
                        }
                        else
                        {
                            il.Emit(OpCodes.Ldloc, _v);
                            il.Emit(OpCodes.Ldc_I8, (long)(op.Size == 8 ? op.Imm : op.Imm & 0xFFFF_FFFFUL));
                        }
                        il.Emit(OpCodes.Ldc_I4, (int)op.Size);
                        il.Emit(OpCodes.Call, ImulMethod);
                    });
                    return false;
                case OpKind.Cmovcc:
                {
                    // The source is read (and may fault) whatever the condition; a 32-bit cmov zero-extends either way.
                    bool narrow = op.Size == 4;
                    LoadB(k, in op, op.Size);
                    il.Emit(OpCodes.Stloc, _v);
                    EnsureLoaded(op.RegA); // before the branch: both arms leave the register in its local
                    Label keep = il.DefineLabel(), done = il.DefineLabel();
                    Condition(op.Cond);
                    il.Emit(OpCodes.Brfalse, keep);
                    StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _v));
                    il.Emit(OpCodes.Br, done);
                    il.MarkLabel(keep);
                    if (narrow)
                    {
                        StoreReg(op.RegA, true, () => LoadReg(op.RegA, false));
                    }
                    il.MarkLabel(done);
                    return false;
                }
                case OpKind.Setcc:
                    Condition(op.Cond);
                    il.Emit(OpCodes.Conv_U8);
                    il.Emit(OpCodes.Stloc, _v);
                    StoreReg(op.RegA, false, () =>
                    {
                        LoadReg(op.RegA, false);
                        il.Emit(OpCodes.Ldc_I8, ~0xFFL);
                        il.Emit(OpCodes.And);
                        il.Emit(OpCodes.Ldloc, _v);
                        il.Emit(OpCodes.Or);
                    });
                    return false;
                case OpKind.Bswap:
                    StoreReg(op.RegA, false, () =>
                    {
                        LoadReg(op.RegA, false);
                        if (op.Size == 4)
                        {
                            il.Emit(OpCodes.Conv_U4);
                            il.Emit(OpCodes.Call, Swap32Method);
                            il.Emit(OpCodes.Conv_U8);
                        }
                        else
                        {
                            il.Emit(OpCodes.Call, Swap64Method);
                        }
                    });
                    return false;
                case OpKind.Mov:
                {
                    // mov [mem], reg/imm: the value first (no side effects), then the checked store.
                    int length = op.Size;
                    LoadB(k, in op, length);
                    il.Emit(OpCodes.Stloc, _v);
                    EffectiveAddress(in op);
                    il.Emit(OpCodes.Stloc, _addr);
                    CheckAccess(k, length, store: true);
                    HostPointer();
                    il.Emit(OpCodes.Ldloc, _v);
                    if (length < 8)
                    {
                        il.Emit(length == 4 ? OpCodes.Conv_U4 : length == 2 ? OpCodes.Conv_U2 : OpCodes.Conv_U1);
                    }
                    if (length > 1)
                    {
                        il.Emit(OpCodes.Unaligned, (byte)1);
                    }
                    il.Emit(length switch { 8 => OpCodes.Stind_I8, 4 => OpCodes.Stind_I4, 2 => OpCodes.Stind_I2, _ => OpCodes.Stind_I1 });
                    return false;
                }
                default:
                    throw new InvalidOperationException($"{op.Kind} cannot be translated");
            }
        }
    }
}
