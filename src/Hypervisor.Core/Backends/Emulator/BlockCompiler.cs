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
/// Translated code keeps the interpreter's exact semantics: registers live in the vCPU's register file, flags stay
/// lazy (kept in IL locals and written back only at exits), and every memory access is bounds-checked inline. Anything
/// that needs the interpreter (an access outside guest memory, a store into a page holding code) makes the translated
/// code stop before that instruction and return its index; the interpreter then continues from there, so faults,
/// self-modifying code and instruction counts are exactly the same.
/// </remarks>
internal static unsafe class BlockCompiler
{
    /// <summary>
    /// A translated block. Adds the instructions it ran to the retired count and returns <see cref="Completed"/> (rip
    /// set), <see cref="ExitRequested"/> (an op it handed to the interpreter asked for a vCPU exit) or the index of
    /// the op at which the interpreter must continue.
    /// </summary>
    public delegate int CompiledBlock(EmulatorVcpu cpu, ulong* r, byte* mem, Block block);

    /// <summary>The block ran to its end; rip is set.</summary>
    public const int Completed = -1;

    /// <summary>An op asked for a vCPU exit (fault, hypercall, halt ...); the exit is in the vCPU.</summary>
    public const int ExitRequested = -2;

    /// <summary>Whole-block runs after which a block is translated (0 disables translation).</summary>
    public static int Threshold { get; set; } = 32;

    /// <summary>True when this runtime can compile IL at run time (not NativeAOT) and translation is not switched off with PARAVIRT_EMULATOR_JIT=0.</summary>
    public static bool Enabled { get; } = RuntimeFeature.IsDynamicCodeCompiled
        && Environment.GetEnvironmentVariable("PARAVIRT_EMULATOR_JIT") != "0";

    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
    private static readonly FieldInfo Lk = typeof(EmulatorVcpu).GetField("_lk", Private)!;
    private static readonly FieldInfo La = typeof(EmulatorVcpu).GetField("_la", Private)!;
    private static readonly FieldInfo Lb = typeof(EmulatorVcpu).GetField("_lb", Private)!;
    private static readonly FieldInfo Lr = typeof(EmulatorVcpu).GetField("_lr", Private)!;
    private static readonly FieldInfo Lsize = typeof(EmulatorVcpu).GetField("_lsize", Private)!;
    private static readonly FieldInfo Ovr = typeof(EmulatorVcpu).GetField("_ovr", Private)!;
    private static readonly FieldInfo Rip = typeof(EmulatorVcpu).GetField("_rip", Private)!;
    private static readonly FieldInfo Size = typeof(EmulatorVcpu).GetField("_size", Private)!;
    private static readonly FieldInfo CodePage = typeof(EmulatorVcpu).GetField("_codePage", Private)!;
    private static readonly FieldInfo DirtyPage = typeof(EmulatorVcpu).GetField("_dirty", Private)!;
    private static readonly FieldInfo Icount = typeof(EmulatorVcpu).GetField("_icount", Private)!;
    private static readonly MethodInfo ExecuteMethod = typeof(EmulatorVcpu).GetMethod("ExecuteBlock", Private)!;
    private static readonly MethodInfo SseMethod = typeof(EmulatorVcpu).GetMethod("ExecuteSse", Private)!;
    private static readonly MethodInfo OpsGetter = typeof(Block).GetProperty(nameof(Block.Ops))!.GetGetMethod()!;
    private static readonly MethodInfo ValidGetter = typeof(Block).GetProperty(nameof(Block.Valid))!.GetGetMethod()!;
    private static readonly MethodInfo CondMethod = typeof(EmulatorVcpu).GetMethod(nameof(EmulatorVcpu.Cond), Private)!;
    private static readonly MethodInfo ShiftMethod = typeof(EmulatorVcpu).GetMethod(nameof(EmulatorVcpu.Shift), Private)!;

    /// <summary>True when the op is translated to IL; every other op is handed to the interpreter one at a time.</summary>
    private static bool Native(in MicroOp op, bool last)
    {
        switch (op.Kind)
        {
            case >= OpKind.MovRR64 and <= OpKind.TestRI32:
            case OpKind.Lea64: case OpKind.Lea32: case OpKind.LoadRM64: case OpKind.LoadRM32: case OpKind.MovzxLoad8:
            case OpKind.MovzxRR8: case OpKind.StoreMR64: case OpKind.StoreMR32: case OpKind.ShiftRI: case OpKind.Nop:
                return true;
            case OpKind.Neg: case OpKind.Not:
                return op.A == Loc.Reg && op.RegA < 16 && op.Size is 4 or 8;
            case OpKind.Push:
                return op.B == Loc.Reg && op.RegB < 16;
            case OpKind.Pop:
                return op.A == Loc.Reg && op.RegA < 16;
            case OpKind.Jcc: case OpKind.Jmp: case OpKind.Call: case OpKind.Ret:
                return last;
            case >= OpKind.MovX128 and <= OpKind.MovntStore:
                // Register-only SSE ops cannot fault or touch flags: call the SSE executor directly.
                return op.A != Loc.Mem && op.B != Loc.Mem;
            default:
                return false;
        }
    }

    /// <summary>Translates <paramref name="block"/>, or returns null when it holds anything the translator does not handle.</summary>
    [UnconditionalSuppressMessage("AOT", "IL3050", Justification = "Only called when Enabled, i.e. RuntimeFeature.IsDynamicCodeCompiled; NativeAOT keeps interpreting.")]
    public static CompiledBlock? TryCompile(Block block)
    {
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
            return new Emitter(block).Emit();
        }
#pragma warning disable CA1031 // translation is an optimization: any failure leaves the block interpreted
        catch (Exception)
        {
            return null;
        }
#pragma warning restore CA1031
    }

    private sealed class Emitter
    {
        private readonly Block _block;
        private readonly MicroOp[] _ops;
        private readonly DynamicMethod _method;
        private readonly ILGenerator _il;
        private readonly LocalBuilder _la, _lb, _lr, _size, _cp, _dp, _addr, _v;
        private readonly List<(Label Label, int Index, int Pending, int Unflushed)> _bails = [];
        private int _pending = -1;
        private int _unflushed; // instructions run by translated code and not yet added to the vCPU's count

        [RequiresDynamicCode("Translates guest code to IL at run time.")]
        public Emitter(Block block)
        {
            _block = block;
            _ops = block.Ops;
            _method = new DynamicMethod($"emu_block_{block.Start:x}", typeof(int),
                [typeof(EmulatorVcpu), typeof(ulong*), typeof(byte*), typeof(Block)], typeof(EmulatorVcpu), skipVisibility: true);
            _il = _method.GetILGenerator();
            _la = _il.DeclareLocal(typeof(ulong));
            _lb = _il.DeclareLocal(typeof(ulong));
            _lr = _il.DeclareLocal(typeof(ulong));
            _size = _il.DeclareLocal(typeof(ulong));
            _cp = _il.DeclareLocal(typeof(byte*));
            _dp = _il.DeclareLocal(typeof(byte*));
            _addr = _il.DeclareLocal(typeof(ulong));
            _v = _il.DeclareLocal(typeof(ulong));
        }

        public CompiledBlock Emit()
        {
            ILGenerator il = _il;
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldfld, Size);
            il.Emit(OpCodes.Stloc, _size);
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldfld, CodePage);
            il.Emit(OpCodes.Stloc, _cp);
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldfld, DirtyPage);
            il.Emit(OpCodes.Stloc, _dp);
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
                Return(Completed);
            }
            foreach ((Label label, int index, int pending, int unflushed) in _bails)
            {
                il.MarkLabel(label);
                Flush(pending);
                AddCount(unflushed);
                il.Emit(OpCodes.Ldc_I4, index);
                il.Emit(OpCodes.Ret);
            }
            return (CompiledBlock)_method.CreateDelegate(typeof(CompiledBlock));
        }

        private Label Bail(int index)
        {
            Label l = _il.DefineLabel();
            _bails.Add((l, index, _pending, _unflushed));
            return l;
        }

        private void AddCount(int count)
        {
            if (count == 0)
            {
                return;
            }
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldfld, Icount);
            _il.Emit(OpCodes.Ldc_I8, (long)count);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stfld, Icount);
        }

        /// <summary>Returns <paramref name="code"/> after the op being emitted (counts it too).</summary>
        private void ReturnAfter(int code)
        {
            AddCount(_unflushed + 1);
            _il.Emit(OpCodes.Ldc_I4, code);
            _il.Emit(OpCodes.Ret);
        }

        /// <summary>Adds the unflushed count and returns <paramref name="code"/>.</summary>
        private void Return(int code)
        {
            AddCount(_unflushed);
            _il.Emit(OpCodes.Ldc_I4, code);
            _il.Emit(OpCodes.Ret);
        }

        /// <summary>Runs op <paramref name="k"/> in the interpreter (flags and count written back first).</summary>
        private bool Delegate(int k)
        {
            ILGenerator il = _il;
            Flush(_pending);
            _pending = -1;
            AddCount(_unflushed);
            _unflushed = 0;
            Label go = il.DefineLabel();
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Ldc_I4, k);
            il.Emit(OpCodes.Ldc_I4, k + 1);
            il.Emit(OpCodes.Call, ExecuteMethod);
            il.Emit(OpCodes.Brfalse, go);
            il.Emit(OpCodes.Ldc_I4, ExitRequested);
            il.Emit(OpCodes.Ret);
            il.MarkLabel(go);
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

        /// <summary>Writes the pending lazy-flag producer (op <paramref name="producer"/>) back to the vCPU.</summary>
        private void Flush(int producer)
        {
            if (producer < 0)
            {
                return;
            }
            ref MicroOp p = ref _ops[producer];
            LazyKind kind = p.Kind switch
            {
                >= OpKind.AddRR64 and <= OpKind.AddRI32 => LazyKind.Add,
                >= OpKind.SubRR64 and <= OpKind.SubRI32 or >= OpKind.CmpRR64 and <= OpKind.CmpRI32 or OpKind.Neg => LazyKind.Sub,
                _ => LazyKind.Logic,
            };
            int size = p.Kind == OpKind.Neg ? p.Size : (((int)p.Kind - (int)OpKind.MovRR64) & 1) == 0 ? 8 : 4;
            ILGenerator il = _il;
            il.Emit(OpCodes.Ldarg_0); il.Emit(OpCodes.Ldc_I4, (int)kind); il.Emit(OpCodes.Stfld, Lk);
            il.Emit(OpCodes.Ldarg_0); il.Emit(OpCodes.Ldloc, _la); il.Emit(OpCodes.Stfld, La);
            il.Emit(OpCodes.Ldarg_0); il.Emit(OpCodes.Ldloc, _lb); il.Emit(OpCodes.Stfld, Lb);
            il.Emit(OpCodes.Ldarg_0); il.Emit(OpCodes.Ldloc, _lr); il.Emit(OpCodes.Stfld, Lr);
            il.Emit(OpCodes.Ldarg_0); il.Emit(OpCodes.Ldc_I4, size); il.Emit(OpCodes.Stfld, Lsize);
            il.Emit(OpCodes.Ldarg_0); il.Emit(OpCodes.Ldc_I4_0); il.Emit(OpCodes.Stfld, Ovr);
        }

        private void RegAddress(int reg)
        {
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, reg * 8);
            _il.Emit(OpCodes.Add);
        }

        private void LoadReg(int reg, bool narrow)
        {
            RegAddress(reg);
            _il.Emit(OpCodes.Ldind_I8);
            if (narrow)
            {
                _il.Emit(OpCodes.Conv_U4);
                _il.Emit(OpCodes.Conv_U8);
            }
        }

        /// <summary>Stores the value pushed by <paramref name="value"/> into register <paramref name="reg"/> (zero-extending 32-bit results).</summary>
        private void StoreReg(int reg, bool narrow, Action value)
        {
            RegAddress(reg);
            value();
            if (narrow)
            {
                _il.Emit(OpCodes.Conv_U4);
                _il.Emit(OpCodes.Conv_U8);
            }
            _il.Emit(OpCodes.Stind_I8);
        }

        private void SetRip(ulong value)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I8, (long)value);
            _il.Emit(OpCodes.Stfld, Rip);
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
        }

        /// <summary>Bails out to the interpreter at op <paramref name="k"/> unless [_addr, _addr + length) is inside guest memory (and, for stores, outside decoded code).</summary>
        private void CheckAccess(int k, int length, bool store)
        {
            ILGenerator il = _il;
            Label bail = Bail(k);
            il.Emit(OpCodes.Ldloc, _addr);
            il.Emit(OpCodes.Ldloc, _size);
            il.Emit(OpCodes.Ldc_I8, (long)length);
            il.Emit(OpCodes.Sub);
            il.Emit(OpCodes.Bgt_Un, bail);
            if (store)
            {
                il.Emit(OpCodes.Ldloc, _cp);
                il.Emit(OpCodes.Ldloc, _addr);
                il.Emit(OpCodes.Ldc_I4, 12);
                il.Emit(OpCodes.Shr_Un);
                il.Emit(OpCodes.Conv_U);
                il.Emit(OpCodes.Add);
                il.Emit(OpCodes.Ldind_U1);
                il.Emit(OpCodes.Ldloc, _cp);
                il.Emit(OpCodes.Ldloc, _addr);
                il.Emit(OpCodes.Ldc_I8, (long)(length - 1));
                il.Emit(OpCodes.Add);
                il.Emit(OpCodes.Ldc_I4, 12);
                il.Emit(OpCodes.Shr_Un);
                il.Emit(OpCodes.Conv_U);
                il.Emit(OpCodes.Add);
                il.Emit(OpCodes.Ldind_U1);
                il.Emit(OpCodes.Or);
                il.Emit(OpCodes.Brtrue, bail);
                // The store happens: mark its first and last page dirty (snapshots restore what changed).
                MarkDirty(0);
                MarkDirty(length - 1);
            }
        }

        /// <summary>Emits <c>dirty[(_addr + offset) &gt;&gt; 12] = 1</c>.</summary>
        private void MarkDirty(int offset)
        {
            ILGenerator il = _il;
            il.Emit(OpCodes.Ldloc, _dp);
            il.Emit(OpCodes.Ldloc, _addr);
            if (offset != 0)
            {
                il.Emit(OpCodes.Ldc_I8, (long)offset);
                il.Emit(OpCodes.Add);
            }
            il.Emit(OpCodes.Ldc_I4, 12);
            il.Emit(OpCodes.Shr_Un);
            il.Emit(OpCodes.Conv_U);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Ldc_I4_1);
            il.Emit(OpCodes.Stind_I1);
        }

        private void HostPointer()
        {
            _il.Emit(OpCodes.Ldarg_2);
            _il.Emit(OpCodes.Ldloc, _addr);
            _il.Emit(OpCodes.Conv_U);
            _il.Emit(OpCodes.Add);
        }

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

        /// <summary>Emits op <paramref name="k"/>; returns true when it ended the block (set rip and returned).</summary>
        private bool EmitOp(int k)
        {
            if (!Native(in _ops[k], k == _ops.Length - 1))
            {
                return Delegate(k);
            }
            bool ended = EmitNative(k); // bail-outs inside it record the count without it

            _unflushed++;
            return ended;
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
                    _pending = k;
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
                    _pending = k;
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
                case OpKind.ShiftRI:
                    Flush(_pending);
                    _pending = -1;
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
                case OpKind.Push:
                    Push(k, () => LoadReg(op.RegB, false));
                    return false;
                case OpKind.Pop:
                    Pop(k, 0);
                    StoreReg(op.RegA, false, () => il.Emit(OpCodes.Ldloc, _v));
                    return false;
                case OpKind.Jcc:
                {
                    Flush(_pending);
                    _pending = -1;
                    Label taken = il.DefineLabel();
                    il.Emit(OpCodes.Ldarg_0);
                    il.Emit(OpCodes.Ldc_I4, (int)op.Cond);
                    il.Emit(OpCodes.Call, CondMethod);
                    il.Emit(OpCodes.Brtrue, taken);
                    SetRip(op.Next);
                    ReturnAfter(Completed);
                    il.MarkLabel(taken);
                    SetRip(op.Imm);
                    ReturnAfter(Completed);
                    return true;
                }
                case OpKind.Jmp:
                    Flush(_pending);
                    SetRip(op.Imm);
                    ReturnAfter(Completed);
                    return true;
                case OpKind.Call:
                    Push(k, () => il.Emit(OpCodes.Ldc_I8, (long)op.Next));
                    Flush(_pending);
                    SetRip(op.Imm);
                    ReturnAfter(Completed);
                    return true;
                case OpKind.Ret:
                    Pop(k, op.Imm);
                    Flush(_pending);
                    il.Emit(OpCodes.Ldarg_0);
                    il.Emit(OpCodes.Ldloc, _v);
                    il.Emit(OpCodes.Stfld, Rip);
                    ReturnAfter(Completed);
                    return true;
                case >= OpKind.MovX128 and <= OpKind.MovntStore:
                    il.Emit(OpCodes.Ldarg_0);
                    il.Emit(OpCodes.Ldarg_3);
                    il.Emit(OpCodes.Callvirt, OpsGetter);
                    il.Emit(OpCodes.Ldc_I4, k);
                    il.Emit(OpCodes.Ldelema, typeof(MicroOp));
                    il.Emit(OpCodes.Call, SseMethod);
                    return false;
                default:
                    throw new InvalidOperationException($"{op.Kind} cannot be translated");
            }
        }
    }
}
