using System.Reflection;
using System.Reflection.Emit;
using Paravirt.Hypervisor.Backends.Emulator.Semantics;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// SSE floating-point arithmetic and the hot register moves inline in translated code. The arithmetic takes the
/// host's IEEE result exactly where the interpreter does (<see cref="SseFloat.Arith64"/>: the same predicates,
/// <see cref="SseFloat.FastMxcsr"/>, <see cref="SseFloat.Plain64"/>, <see cref="SseFloat.FastResult64"/> ...): MXCSR in
/// its everyday state and operands and results ordinary, so no MXCSR flag can change. Anything else (a NaN, an
/// infinity, a denormal, a result near the underflow threshold, another rounding mode, DAZ/FTZ, PE not yet set) calls
/// the interpreter's semantics for the whole op (<c>EmulatorVcpu.ExecuteVectorOp</c>), which computes it again with
/// the soft-float rules and raises #XM where an exception is unmasked; the destination is written only once every lane
/// has passed, so a fallback always starts from the original operands.
/// </summary>
internal static unsafe partial class BlockCompiler
{
    private const BindingFlags Internal = BindingFlags.NonPublic | BindingFlags.Static;
    private static readonly FieldInfo FpuField = typeof(EmulatorVcpu).GetField("_fpu", Private)!;
    private static readonly FieldInfo MxcsrField = typeof(FpuState).GetField(nameof(FpuState.Mxcsr))!;
    private static readonly MethodInfo FastMxcsrMethod = typeof(SseFloat).GetMethod(nameof(SseFloat.FastMxcsr), Internal)!;
    private static readonly MethodInfo Plain64Method = typeof(SseFloat).GetMethod(nameof(SseFloat.Plain64), Internal)!;
    private static readonly MethodInfo Plain32Method = typeof(SseFloat).GetMethod(nameof(SseFloat.Plain32), Internal)!;
    private static readonly MethodInfo FastResult64Method = typeof(SseFloat).GetMethod(nameof(SseFloat.FastResult64), Internal)!;
    private static readonly MethodInfo FastResult32Method = typeof(SseFloat).GetMethod(nameof(SseFloat.FastResult32), Internal)!;
    private static readonly MethodInfo FastSqrt64Method = typeof(SseFloat).GetMethod(nameof(SseFloat.FastSqrt64), Internal)!;
    private static readonly MethodInfo ExactDoubleMethod = typeof(SseFloat).GetMethod(nameof(SseFloat.ExactDouble), Internal)!;
    private static readonly MethodInfo BitsToDoubleMethod = typeof(BitConverter).GetMethod(nameof(BitConverter.UInt64BitsToDouble))!;
    private static readonly MethodInfo DoubleToBitsMethod = typeof(BitConverter).GetMethod(nameof(BitConverter.DoubleToUInt64Bits))!;
    private static readonly MethodInfo BitsToSingleMethod = typeof(BitConverter).GetMethod(nameof(BitConverter.UInt32BitsToSingle))!;
    private static readonly MethodInfo SingleToBitsMethod = typeof(BitConverter).GetMethod(nameof(BitConverter.SingleToUInt32Bits))!;
    private static readonly MethodInfo SqrtMethod = typeof(Math).GetMethod(nameof(Math.Sqrt), [typeof(double)])!;

    /// <summary>The ops <see cref="Emitter.EmitSseInline"/> translates inline (the others of their kinds keep their helper call).</summary>
    private static bool SseInline(in MicroOp op) => op.Kind switch
    {
        OpKind.SseArith => op.A == Loc.Reg && SseSourceFits(in op, (SseShape)op.Size2)
            && ((SseOp)op.Cond <= SseOp.Div || ((SseOp)op.Cond == SseOp.Sqrt && (SseShape)op.Size2 is SseShape.Sd or SseShape.Pd)),
        OpKind.SseHorizontal => op.Cond == 0 && op.A == Loc.Reg && SseSourceFits(in op, op.Size2 != 0 ? SseShape.Pd : SseShape.Ps), // addsubpd/ps
        OpKind.CvtIntToFp => op.Size2 != 0 && op.Size is 4 or 8 && (op.B == Loc.Mem || (op.B == Loc.Reg && op.RegB < 16)), // cvtsi2sd
        OpKind.MovX128 or OpKind.Pxor or OpKind.Pand or OpKind.Por or OpKind.Pandn or OpKind.Punpcklqdq or OpKind.Punpckhqdq =>
            op.A == Loc.Reg && op.B == Loc.Reg,
        OpKind.VecBinary => (VecOp)op.Cond == VecOp.Movddup && (op.B == Loc.Reg || op.Size is 8 or 16),
        _ => false,
    };

    /// <summary>A memory source is exactly the lanes the shape reads (m32, m64 or m128).</summary>
    private static bool SseSourceFits(in MicroOp op, SseShape shape) =>
        op.B == Loc.Reg || op.Size == shape switch { SseShape.Ss => 4, SseShape.Sd => 8, _ => 16 };

    private sealed partial class Emitter
    {
        private LocalBuilder? _fa, _fb, _fa32, _fb32;
        private readonly LocalBuilder?[] _fr = new LocalBuilder?[4];

        private LocalBuilder Local(ref LocalBuilder? local, Type type) => local ??= _il.DeclareLocal(type);

        /// <summary>Emits op <paramref name="k"/> inline when <see cref="SseInline"/> allows it; false (nothing emitted) otherwise.</summary>
        private bool EmitSseInline(int k)
        {
            ref MicroOp op = ref _ops[k];
            if (!SseInline(in op))
            {
                return false;
            }
            ILGenerator il = _il;
            // CR0.TS/EM or CR4.OSFXSR forbid SSE: the interpreter raises #NM/#UD at this op.
            StateAddress(CpuState.SseFaultOffset);
            il.Emit(OpCodes.Ldind_I4);
            il.Emit(OpCodes.Brtrue, Bail(k));
            switch (op.Kind)
            {
                case OpKind.SseArith:
                {
                    var shape = (SseShape)op.Size2;
                    var sseOp = (SseOp)op.Cond;
                    int lanes = shape switch { SseShape.Pd => 2, SseShape.Ps => 4, _ => 1 };
                    EmitFloatLanes(k, in op, shape is SseShape.Sd or SseShape.Pd, lanes, _ => sseOp);
                    break;
                }
                case OpKind.SseHorizontal:
                    // addsubpd/ps: even lanes subtract, odd lanes add (SseFloat.Horizontal, kind 0).
                    EmitFloatLanes(k, in op, op.Size2 != 0, op.Size2 != 0 ? 2 : 4, lane => (lane & 1) == 0 ? SseOp.Sub : SseOp.Add);
                    break;
                case OpKind.CvtIntToFp:
                    EmitIntToDouble(k, in op);
                    break;
                case OpKind.VecBinary:
                    // movddup: the low quadword of the source in both halves.
                    if (op.B == Loc.Mem)
                    {
                        SourceAddress(k, in op);
                    }
                    LoadLane(in op, 0, 8, source: true);
                    il.Emit(OpCodes.Stloc, Local(ref _fa, typeof(ulong)));
                    XmmAddress(op.RegA);
                    il.Emit(OpCodes.Ldloc, _fa!);
                    il.Emit(OpCodes.Stind_I8);
                    XmmAddress(op.RegA, 8);
                    il.Emit(OpCodes.Ldloc, _fa!);
                    il.Emit(OpCodes.Stind_I8);
                    break;
                default:
                    EmitRegisterMove(in op);
                    break;
            }
            return true;
        }

        /// <summary>Register-only moves and logic on whole XMM registers (as ExecuteSse does them), in two quadwords.</summary>
        private void EmitRegisterMove(in MicroOp op)
        {
            ILGenerator il = _il;
            int a = op.RegA, b = op.RegB;
            LocalBuilder lo = Local(ref _fa, typeof(ulong)), hi = Local(ref _fb, typeof(ulong));
            void Quad(int reg, int half)
            {
                XmmAddress(reg, half * 8);
                il.Emit(OpCodes.Ldind_I8);
            }
            switch (op.Kind)
            {
                case OpKind.Punpcklqdq: // dst.hi = src.lo
                    XmmAddress(a, 8);
                    Quad(b, 0);
                    il.Emit(OpCodes.Stind_I8);
                    return;
                case OpKind.Punpckhqdq: // dst = (dst.hi, src.hi)
                    Quad(b, 1);
                    il.Emit(OpCodes.Stloc, hi);
                    XmmAddress(a, 0);
                    Quad(a, 1);
                    il.Emit(OpCodes.Stind_I8);
                    XmmAddress(a, 8);
                    il.Emit(OpCodes.Ldloc, hi);
                    il.Emit(OpCodes.Stind_I8);
                    return;
            }
            for (int half = 0; half < 2; half++)
            {
                LocalBuilder value = half == 0 ? lo : hi;
                if (op.Kind == OpKind.Pxor && a == b)
                {
                    il.Emit(OpCodes.Ldc_I8, 0L); // pxor x, x: the zeroing idiom
                }
                else if (op.Kind == OpKind.MovX128)
                {
                    Quad(b, half);
                }
                else
                {
                    Quad(a, half);
                    if (op.Kind == OpKind.Pandn)
                    {
                        il.Emit(OpCodes.Not);
                    }
                    Quad(b, half);
                    il.Emit(op.Kind switch { OpKind.Pxor => OpCodes.Xor, OpKind.Por => OpCodes.Or, _ => OpCodes.And });
                }
                il.Emit(OpCodes.Stloc, value);
            }
            XmmAddress(a, 0);
            il.Emit(OpCodes.Ldloc, lo);
            il.Emit(OpCodes.Stind_I8);
            XmmAddress(a, 8);
            il.Emit(OpCodes.Ldloc, hi);
            il.Emit(OpCodes.Stind_I8);
        }

        /// <summary>
        /// Source operand B in memory: its address into _addr, a misaligned 16-byte operand that must be aligned bails
        /// out (the interpreter raises #GP), then the TLB check; _host then points at it.
        /// </summary>
        private void SourceAddress(int k, in MicroOp op)
        {
            ILGenerator il = _il;
            EffectiveAddress(in op);
            il.Emit(OpCodes.Stloc, _addr);
            if (op.Size == 16 && op.Aligned)
            {
                il.Emit(OpCodes.Ldloc, _addr);
                il.Emit(OpCodes.Ldc_I8, 15L);
                il.Emit(OpCodes.And);
                il.Emit(OpCodes.Ldc_I8, 0L);
                il.Emit(OpCodes.Bne_Un, Bail(k));
            }
            CheckAccess(k, op.Size, store: false);
        }

        /// <summary>Pushes lane <paramref name="lane"/> (<paramref name="width"/> bytes, zero-extended to 64 bits) of the destination or of the source (register or _host).</summary>
        private void LoadLane(in MicroOp op, int lane, int width, bool source)
        {
            ILGenerator il = _il;
            if (source && op.B == Loc.Mem)
            {
                HostPointer();
                if (lane != 0)
                {
                    il.Emit(OpCodes.Ldc_I4, lane * width);
                    il.Emit(OpCodes.Add);
                }
                il.Emit(OpCodes.Unaligned, (byte)1);
            }
            else
            {
                XmmAddress(source ? op.RegB : op.RegA, lane * width);
            }
            il.Emit(width == 8 ? OpCodes.Ldind_I8 : OpCodes.Ldind_U4);
            if (width == 8)
            {
                return;
            }
            il.Emit(OpCodes.Conv_U8);
        }

        /// <summary>
        /// add/sub/mul/div (and sqrt for doubles) on <paramref name="lanes"/> lanes: each lane passes the interpreter's
        /// fast-path predicates or the whole op goes to the helper; the results are written only after every lane passed.
        /// </summary>
        private void EmitFloatLanes(int k, in MicroOp op, bool dbl, int lanes, Func<int, SseOp> laneOp)
        {
            ILGenerator il = _il;
            int width = dbl ? 8 : 4;
            Label slow = il.DefineLabel(), done = il.DefineLabel();
            if (op.B == Loc.Mem)
            {
                SourceAddress(k, in op);
            }
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldflda, FpuField);
            il.Emit(OpCodes.Ldfld, MxcsrField);
            il.Emit(OpCodes.Call, FastMxcsrMethod);
            il.Emit(OpCodes.Brfalse, slow);
            Type bits = dbl ? typeof(ulong) : typeof(uint);
            LocalBuilder fa = dbl ? Local(ref _fa, bits) : Local(ref _fa32, bits);
            LocalBuilder fb = dbl ? Local(ref _fb, bits) : Local(ref _fb32, bits);
            for (int lane = 0; lane < lanes; lane++)
            {
                SseOp sseOp = laneOp(lane);
                LoadLane(in op, lane, width, source: true);
                if (!dbl)
                {
                    il.Emit(OpCodes.Conv_U4);
                }
                il.Emit(OpCodes.Stloc, fb);
                LocalBuilder fr = _fr[lane] ??= il.DeclareLocal(typeof(ulong));
                if (sseOp == SseOp.Sqrt)
                {
                    il.Emit(OpCodes.Ldloc, fb);
                    il.Emit(OpCodes.Call, FastSqrt64Method);
                    il.Emit(OpCodes.Brfalse, slow);
                    il.Emit(OpCodes.Ldloc, fb);
                    il.Emit(OpCodes.Call, BitsToDoubleMethod);
                    il.Emit(OpCodes.Call, SqrtMethod);
                    il.Emit(OpCodes.Call, DoubleToBitsMethod);
                    il.Emit(OpCodes.Stloc, fr);
                    continue;
                }
                LoadLane(in op, lane, width, source: false);
                if (!dbl)
                {
                    il.Emit(OpCodes.Conv_U4);
                }
                il.Emit(OpCodes.Stloc, fa);
                il.Emit(OpCodes.Ldloc, fa);
                il.Emit(OpCodes.Call, dbl ? Plain64Method : Plain32Method);
                il.Emit(OpCodes.Brfalse, slow);
                il.Emit(OpCodes.Ldloc, fb);
                il.Emit(OpCodes.Call, dbl ? Plain64Method : Plain32Method);
                il.Emit(OpCodes.Brfalse, slow);
                // The host's IEEE operation, rounded to the lane's format (binary32 add/sub/mul/div evaluated in
                // binary64 and then rounded give the correctly rounded binary32 too: 53 >= 2 * 24 + 2).
                il.Emit(OpCodes.Ldloc, fa);
                il.Emit(OpCodes.Call, dbl ? BitsToDoubleMethod : BitsToSingleMethod);
                il.Emit(OpCodes.Ldloc, fb);
                il.Emit(OpCodes.Call, dbl ? BitsToDoubleMethod : BitsToSingleMethod);
                il.Emit(sseOp switch { SseOp.Add => OpCodes.Add, SseOp.Sub => OpCodes.Sub, SseOp.Mul => OpCodes.Mul, _ => OpCodes.Div });
                il.Emit(dbl ? OpCodes.Conv_R8 : OpCodes.Conv_R4);
                il.Emit(OpCodes.Call, dbl ? DoubleToBitsMethod : SingleToBitsMethod);
                if (!dbl)
                {
                    il.Emit(OpCodes.Conv_U8);
                }
                il.Emit(OpCodes.Stloc, fr);
                il.Emit(OpCodes.Ldc_I4, (int)sseOp);
                il.Emit(OpCodes.Ldloc, fa);
                il.Emit(OpCodes.Ldloc, fb);
                il.Emit(OpCodes.Ldloc, fr);
                if (!dbl)
                {
                    il.Emit(OpCodes.Conv_U4);
                }
                il.Emit(OpCodes.Call, dbl ? FastResult64Method : FastResult32Method);
                il.Emit(OpCodes.Brfalse, slow);
            }
            for (int lane = 0; lane < lanes; lane++)
            {
                XmmAddress(op.RegA, lane * width);
                il.Emit(OpCodes.Ldloc, _fr[lane]!);
                il.Emit(dbl ? OpCodes.Stind_I8 : OpCodes.Stind_I4);
            }
            il.Emit(OpCodes.Br, done);
            il.MarkLabel(slow);
            CallVectorHelper(k);
            il.MarkLabel(done);
        }

        /// <summary>cvtsi2sd: an integer a double holds exactly converts with no flag under any MXCSR; a larger 64-bit one goes to the helper (it rounds).</summary>
        private void EmitIntToDouble(int k, in MicroOp op)
        {
            ILGenerator il = _il;
            LocalBuilder v = Local(ref _fa, typeof(ulong));
            LoadB(k, in op, op.Size);
            if (op.Size == 4)
            {
                il.Emit(OpCodes.Conv_I4);
                il.Emit(OpCodes.Conv_I8);
            }
            il.Emit(OpCodes.Stloc, v);
            Label slow = il.DefineLabel(), done = il.DefineLabel();
            if (op.Size == 8)
            {
                il.Emit(OpCodes.Ldloc, v);
                il.Emit(OpCodes.Call, ExactDoubleMethod);
                il.Emit(OpCodes.Brfalse, slow);
            }
            XmmAddress(op.RegA);
            il.Emit(OpCodes.Ldloc, v);
            il.Emit(OpCodes.Conv_R8);
            il.Emit(OpCodes.Call, DoubleToBitsMethod);
            il.Emit(OpCodes.Stind_I8);
            if (op.Size == 8)
            {
                il.Emit(OpCodes.Br, done);
                il.MarkLabel(slow);
                CallVectorHelper(k);
                il.MarkLabel(done);
            }
        }

        /// <summary>
        /// The slow path of an inline op: the interpreter's semantics for the whole op through
        /// <c>EmulatorVcpu.ExecuteVectorOp</c>, with the lazy record and the count written back first (a #XM is
        /// delivered from the vCPU's state); the count is taken back afterwards, since the fast path leaves it in
        /// <see cref="_unflushed"/>. The record stays in the locals (these ops write no RFLAGS).
        /// </summary>
        /// <remarks>The same call as <see cref="EmitVectorOp"/>'s, which also spills the registers; it can forget them afterwards because no fast path joins it.</remarks>
        private void CallVectorHelper(int k)
        {
            Flush(_pending);
            // The helper reads its operands' registers from the vCPU and, on a fault, exits with the whole register
            // file there: store the dirty ones. The emitter's state stays as it is, since the fast path joins after
            // this (on this path the stores are merely early), and these ops write no general-purpose register.
            WriteBack(_dirty);
            AddCount(_unflushed);
            CallExecuteVectorOp(k);
            AddCount(-_unflushed);
        }
    }
}
