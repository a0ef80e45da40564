namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>The two-operand x87 arithmetic, in the order of the opcode's reg field (D8 /0 ... /7).</summary>
internal enum X87ArithOp : byte
{
    Add,
    Mul,
    Com,
    Comp,
    Sub,
    Subr,
    Div,
    Divr,
}

/// <summary>Memory operand formats of x87 loads, stores and arithmetic (<see cref="Stack"/>: a register operand).</summary>
internal enum X87Format : byte
{
    Stack,
    F32,
    F64,
    F80,
    I16,
    I32,
    I64,
}

/// <summary>x87 operations on ST(0) (and ST(1)) without a memory operand.</summary>
internal enum X87Unary : byte
{
    Chs,
    Abs,
    Tst,
    Xam,
    F2xm1,
    Fyl2x,
    Fptan,
    Fpatan,
    Fxtract,
    Fprem1,
    Fdecstp,
    Fincstp,
    Fprem,
    Fyl2xp1,
    Fsqrt,
    Fsincos,
    Frndint,
    Fscale,
    Fsin,
    Fcos,
}

/// <summary>The x87 constants (fld1, fldl2t, fldl2e, fldpi, fldlg2, fldln2, fldz).</summary>
internal enum X87Constant : byte
{
    One,
    L2T,
    L2E,
    Pi,
    LG2,
    LN2,
    Zero,
}

/// <summary>
/// x87 FPU semantics on an <see cref="FpuState"/>: the register stack (TOP, tags, overflow and underflow as stack
/// faults with the masked "indefinite" response), the status word (flags, C0-C3), precision and rounding control,
/// and every arithmetic, compare, load, store and transcendental instruction compilers and libm use. Values move
/// through <see cref="SoftFloat"/> (80-bit extended, exact), never through host doubles. Memory operands come in and
/// go out as raw bits: the caller does the memory access. An unmasked exception leaves its flag set (the next
/// waiting x87 instruction raises #MF); an unmasked pre-computation exception (invalid, denormal, divide by zero)
/// also leaves the destination and the stack unchanged, as the hardware does.
/// </summary>
internal static class X87
{
    public const ushort C0 = FpuState.C0, C1 = FpuState.C1, C2 = FpuState.C2, C3 = FpuState.C3;
    private const ushort CcMask = C0 | C1 | C2 | C3;
    public static readonly Float80 Indefinite = new(0xC000_0000_0000_0000, 0xFFFF);

    // ---- stack ----

    public static int Phys(in FpuState s, int i) => (s.Top + i) & 7;

    public static bool IsEmpty(in FpuState s, int i) => (s.Valid & (1 << Phys(s, i))) == 0;

    public static Unpacked Get(in FpuState s, int i)
    {
        Float80 r = s.Regs[Phys(s, i)];
        return SoftFloat.Unpack80(r.SignExp, r.Mant);
    }

    public static void Set(ref FpuState s, int i, in Unpacked v)
    {
        ulong m = SoftFloat.Pack80(v, out ushort se);
        SetRaw(ref s, i, new Float80(m, se));
    }

    public static void SetRaw(ref FpuState s, int i, Float80 v)
    {
        int p = Phys(s, i);
        s.Regs[p] = v;
        s.Valid |= (byte)(1 << p);
    }

    public static void Pop(ref FpuState s)
    {
        s.Valid &= (byte)~(1 << s.Top);
        s.Top = (s.Top + 1) & 7;
    }

    /// <summary>A pending unmasked exception: the next waiting x87 instruction raises #MF.</summary>
    public static uint Pending(in FpuState s) => (uint)(s.Fsw & ~s.Fcw & 0x3F);

    private static bool Masked(in FpuState s, FpFlags f) => ((uint)f & 0x3F & ~(uint)s.Fcw) == 0;

    /// <summary>Rounding with the precision and rounding control of FCW (for the arithmetic that precision control governs).</summary>
    public static RoundParams ArithParams(in FpuState s)
    {
        int precision = ((s.Fcw >> 8) & 3) switch { 0 => 24, 2 => 53, _ => 64 };
        return RoundParams.Extended(precision, (RoundingMode)((s.Fcw >> 10) & 3), (s.Fcw & 0x10) == 0, (s.Fcw & 0x08) == 0);
    }

    /// <summary>Rounding to 64 bits with FCW's rounding control (everything precision control does not govern).</summary>
    public static RoundParams FullParams(in FpuState s) =>
        RoundParams.Extended(64, (RoundingMode)((s.Fcw >> 10) & 3), (s.Fcw & 0x10) == 0, (s.Fcw & 0x08) == 0);

    private static void SetCc(ref FpuState s, ushort cc) => s.Fsw = (ushort)((s.Fsw & ~CcMask) | cc);

    /// <summary>
    /// Records the flags of an operation; C1 = rounded up (C0, C2, C3 unchanged). Returns false when an unmasked
    /// pre-computation exception means the result must not be delivered.
    /// </summary>
    private static bool Commit(ref FpuState s, FpFlags f)
    {
        ushort sw = (ushort)(s.Fsw | (ushort)((uint)f & 0x3F));
        sw = (ushort)((sw & ~C1) | ((f & FpFlags.RoundedUp) != 0 && (f & FpFlags.Inexact) != 0 ? C1 : 0));
        s.Fsw = sw;
        return Masked(s, f & FpFlags.PreComputation);
    }

    /// <summary>Stack underflow (an empty register read): IE and SF, C1 = 0. True when masked (the caller delivers the indefinite).</summary>
    private static bool StackUnderflow(ref FpuState s)
    {
        s.Fsw = (ushort)((s.Fsw | 0x41) & ~C1);
        return (s.Fcw & 1) != 0;
    }

    /// <summary>Stack overflow (a push onto a full register): IE and SF, C1 = 1. True when masked.</summary>
    private static bool StackOverflow(ref FpuState s)
    {
        s.Fsw = (ushort)(s.Fsw | 0x41 | C1);
        return (s.Fcw & 1) != 0;
    }

    /// <summary>
    /// Makes room for a push: false when ST(7) is in use (stack overflow); with the exception masked the stack is
    /// pushed with the indefinite value, unmasked it is left unchanged.
    /// </summary>
    private static bool TryPush(ref FpuState s)
    {
        int p = (s.Top - 1) & 7;
        if ((s.Valid & (1 << p)) != 0)
        {
            if (StackOverflow(ref s))
            {
                s.Top = p;
                SetRaw(ref s, 0, Indefinite);
            }
            return false;
        }
        s.Top = p;
        return true;
    }

    // ---- NaN propagation (x87 rules) ----

    /// <summary>
    /// The NaN result of a two-operand operation with at least one NaN (or unsupported) operand: an unsupported
    /// operand gives the default NaN; a quiet NaN beats a signaling one; between two NaNs of the same kind the larger
    /// significand wins (on a tie, the positive one). Sets IE for a signaling or unsupported operand.
    /// </summary>
    public static Unpacked PropagateNaN(in Unpacked a, in Unpacked b, ref FpFlags f)
    {
        if (a.Class == FpClass.Unsupported || b.Class == FpClass.Unsupported)
        {
            f |= FpFlags.Invalid;
            return Unpacked.DefaultNaN;
        }
        bool sa = a.Class == FpClass.SignalingNaN, sb = b.Class == FpClass.SignalingNaN;
        if (sa || sb)
        {
            f |= FpFlags.Invalid;
        }
        if (!a.IsNaN)
        {
            return b.Quieted();
        }
        if (!b.IsNaN)
        {
            return a.Quieted();
        }
        if (sa != sb)
        {
            return sa ? b.Quieted() : a.Quieted(); // the quiet one
        }
        ulong ma = a.Sig | 0x4000_0000_0000_0000, mb = b.Sig | 0x4000_0000_0000_0000;
        if (ma != mb)
        {
            return ma > mb ? a.Quieted() : b.Quieted();
        }
        return !a.Sign ? a.Quieted() : b.Quieted();
    }

    private static bool IsSpecialOperand(in Unpacked v) => v.IsNaN || v.Class == FpClass.Unsupported;

    /// <summary>The one-operand NaN rule: quieted, IE for signaling; unsupported gives the default NaN.</summary>
    private static Unpacked NaNResult(in Unpacked v, ref FpFlags f)
    {
        if (v.Class == FpClass.Unsupported)
        {
            f |= FpFlags.Invalid;
            return Unpacked.DefaultNaN;
        }
        if (v.Class == FpClass.SignalingNaN)
        {
            f |= FpFlags.Invalid;
        }
        return v.Quieted();
    }

    // ---- memory operand conversions ----

    /// <summary>A memory operand of <paramref name="format"/> as an unpacked value (integers exactly; float NaNs with their payload).</summary>
    public static Unpacked FromMemory(X87Format format, ulong bits) => format switch
    {
        X87Format.F32 => SoftFloat.Unpack32((uint)bits, daz: false),
        X87Format.F64 => SoftFloat.Unpack64(bits, daz: false),
        X87Format.I16 => FromInteger((short)bits),
        X87Format.I32 => FromInteger((int)bits),
        _ => FromInteger((long)bits),
    };

    private static Unpacked FromInteger(long v) => SoftFloat.FromInteger(v < 0, v < 0 ? (ulong)-(v + 1) + 1 : (ulong)v);

    // ---- arithmetic ----

    /// <summary>
    /// ST(<paramref name="dst"/>) = ST(dst) op source, where the source is ST(<paramref name="src"/>) or
    /// <paramref name="memory"/> (when <paramref name="src"/> is negative); then <paramref name="pops"/> pops.
    /// </summary>
    public static void Arith(ref FpuState s, X87ArithOp op, int dst, int src, in Unpacked memory, int pops)
    {
        if (IsEmpty(s, dst) || (src >= 0 && IsEmpty(s, src)))
        {
            if (!StackUnderflow(ref s))
            {
                return;
            }
            SetRaw(ref s, dst, Indefinite);
        }
        else
        {
            Unpacked a = Get(s, dst), b = src >= 0 ? Get(s, src) : memory;
            if (op is X87ArithOp.Subr or X87ArithOp.Divr)
            {
                (a, b) = (b, a);
            }
            FpFlags f = FpFlags.None;
            Unpacked r;
            if (IsSpecialOperand(a) || IsSpecialOperand(b))
            {
                r = PropagateNaN(a, b, ref f);
            }
            else
            {
                SseOp sop = op switch
                {
                    X87ArithOp.Add => SseOp.Add,
                    X87ArithOp.Mul => SseOp.Mul,
                    X87ArithOp.Sub or X87ArithOp.Subr => SseOp.Sub,
                    _ => SseOp.Div,
                };
                r = SoftFloat.Operate(sop, a, b, ArithParams(s), ref f);
            }
            if (!Commit(ref s, f))
            {
                return;
            }
            Set(ref s, dst, r);
        }
        for (int k = 0; k < pops; k++)
        {
            Pop(ref s);
        }
    }

    /// <summary>fsqrt (precision control applies).</summary>
    private static Unpacked Sqrt(in FpuState s, in Unpacked a, ref FpFlags f) =>
        a.Class == FpClass.Unsupported ? NaNResult(a, ref f) : SoftFloat.Sqrt(a, ArithParams(s), ref f);

    // ---- comparisons ----

    /// <summary>Compares two operands: -1, 0, 1, or 2 for unordered; sets IE (any NaN unless quiet; signaling or unsupported always) and DE.</summary>
    private static int CompareValues(in Unpacked a, in Unpacked b, bool quiet, ref FpFlags f)
    {
        if (IsSpecialOperand(a) || IsSpecialOperand(b))
        {
            if (!quiet || a.Class is FpClass.SignalingNaN or FpClass.Unsupported || b.Class is FpClass.SignalingNaN or FpClass.Unsupported)
            {
                f |= FpFlags.Invalid;
            }
            return 2;
        }
        if (a.Class == FpClass.Denormal || b.Class == FpClass.Denormal)
        {
            f |= FpFlags.Denormal;
        }
        return SoftFloat.Compare(a, b);
    }

    /// <summary>fcom/fcomp/fcompp/fucom*/ficom*/ftst: C3, C2, C0 from the comparison of ST(0) with the source; C1 = 0.</summary>
    public static void Compare(ref FpuState s, int src, in Unpacked memory, bool quiet, int pops)
    {
        if (IsEmpty(s, 0) || (src >= 0 && IsEmpty(s, src)))
        {
            if (!StackUnderflow(ref s))
            {
                return;
            }
            SetCc(ref s, C3 | C2 | C0);
        }
        else
        {
            FpFlags f = FpFlags.None;
            int c = CompareValues(Get(s, 0), src >= 0 ? Get(s, src) : memory, quiet, ref f);
            s.Fsw |= (ushort)((uint)f & 0x3F);
            if (!Masked(s, f))
            {
                return;
            }
            SetCc(ref s, c switch { 0 => C3, -1 => C0, 1 => 0, _ => C3 | C2 | C0 });
        }
        for (int k = 0; k < pops; k++)
        {
            Pop(ref s);
        }
    }

    /// <summary>fcomi/fcomip/fucomi/fucomip: ZF, PF, CF from the comparison (OF, SF, AF clear); null when EFLAGS must stay.</summary>
    public static ulong? CompareToFlags(ref FpuState s, int src, bool quiet, bool pop)
    {
        const ulong CF = 0x1, PF = 0x4, ZF = 0x40;
        ulong flags;
        if (IsEmpty(s, 0) || IsEmpty(s, src))
        {
            if (!StackUnderflow(ref s))
            {
                return null;
            }
            flags = ZF | PF | CF;
        }
        else
        {
            FpFlags f = FpFlags.None;
            int c = CompareValues(Get(s, 0), Get(s, src), quiet, ref f);
            s.Fsw |= (ushort)((uint)f & 0x3F);
            if (!Masked(s, f))
            {
                return null;
            }
            flags = c switch { 0 => ZF, -1 => CF, 1 => 0, _ => ZF | PF | CF };
        }
        if (pop)
        {
            Pop(ref s);
        }
        return flags;
    }

    // ---- loads ----

    /// <summary>fld m32/m64, fild: pushes the converted value (IE for a signaling NaN, DE for a denormal float).</summary>
    public static void Load(ref FpuState s, X87Format format, ulong bits)
    {
        Unpacked v = FromMemory(format, bits);
        FpFlags f = FpFlags.None;
        if (v.IsNaN)
        {
            v = NaNResult(v, ref f);
        }
        else if (v.Class == FpClass.Denormal)
        {
            f |= FpFlags.Denormal;
        }
        if (f != FpFlags.None && !Masked(s, f))
        {
            s.Fsw |= (ushort)((uint)f & 0x3F);
            return;
        }
        if (!TryPush(ref s))
        {
            return;
        }
        s.Fsw = (ushort)((s.Fsw | ((uint)f & 0x3F)) & ~C1);
        Set(ref s, 0, v);
    }

    /// <summary>fld m80: pushes the bits unchanged (no exception for any encoding).</summary>
    public static void LoadRaw(ref FpuState s, Float80 value)
    {
        if (!TryPush(ref s))
        {
            return;
        }
        s.Fsw &= unchecked((ushort)~C1);
        SetRaw(ref s, 0, value);
    }

    /// <summary>fld st(i).</summary>
    public static void LoadStack(ref FpuState s, int i)
    {
        if (IsEmpty(s, i))
        {
            if (StackUnderflow(ref s))
            {
                // The masked response pushes the indefinite over whatever ST(7) held.
                s.Top = (s.Top - 1) & 7;
                SetRaw(ref s, 0, Indefinite);
            }
            return;
        }
        Float80 v = s.Regs[Phys(s, i)];
        LoadRaw(ref s, v);
    }

    /// <summary>fld1, fldl2t, fldl2e, fldpi, fldlg2, fldln2, fldz: rounded with the rounding control, no precision exception.</summary>
    public static void LoadConstant(ref FpuState s, X87Constant c)
    {
        Unpacked v;
        if (c is X87Constant.One or X87Constant.Zero)
        {
            v = c == X87Constant.One ? SoftFloat.FromInteger(false, 1) : Unpacked.Zero(false);
        }
        else
        {
            Wide w = c switch
            {
                X87Constant.L2T => Wide.Log2Ten,
                X87Constant.L2E => Wide.Log2E,
                X87Constant.Pi => Wide.Pi,
                X87Constant.LG2 => Wide.Log10Two,
                _ => Wide.Ln2,
            };
            FpFlags ignored = FpFlags.None;
            v = w.Round(RoundParams.Extended(64, (RoundingMode)((s.Fcw >> 10) & 3)), ref ignored);
        }
        if (!TryPush(ref s))
        {
            return;
        }
        s.Fsw &= unchecked((ushort)~C1);
        Set(ref s, 0, v);
    }

    // ---- stores ----

    /// <summary>
    /// fst/fstp m32/m64: ST(0) rounded to the memory format (rounding control only). Returns false when nothing may be
    /// stored (an unmasked exception). An empty ST(0) stores the indefinite when masked.
    /// </summary>
    public static bool StoreFloat(ref FpuState s, X87Format format, out ulong bits)
    {
        bool dbl = format == X87Format.F64;
        if (IsEmpty(s, 0))
        {
            bits = dbl ? 0xFFF8_0000_0000_0000 : 0xFFC0_0000;
            return StackUnderflow(ref s);
        }
        Unpacked v = Get(s, 0);
        FpFlags f = FpFlags.None;
        Unpacked r;
        if (IsSpecialOperand(v))
        {
            r = NaNResult(v, ref f);
        }
        else if (v.IsFiniteNonZero)
        {
            RoundingMode mode = (RoundingMode)((s.Fcw >> 10) & 3);
            bool uUnmasked = (s.Fcw & 0x10) == 0, oUnmasked = (s.Fcw & 0x08) == 0;
            r = SoftFloat.Round(v, dbl ? RoundParams.Double(mode, false, uUnmasked, oUnmasked) : RoundParams.Single(mode, false, uUnmasked, oUnmasked), ref f);
        }
        else
        {
            r = v;
        }
        bits = dbl ? SoftFloat.Pack64(r) : SoftFloat.Pack32(r);
        bool ok = Commit(ref s, f);
        // An unmasked overflow or underflow leaves memory unchanged too.
        return ok && Masked(s, f & (FpFlags.Overflow | FpFlags.Underflow));
    }

    /// <summary>fstp m80: the register's bits (the indefinite for an empty ST(0) when masked).</summary>
    public static bool StoreExtended(ref FpuState s, out Float80 value)
    {
        if (IsEmpty(s, 0))
        {
            value = Indefinite;
            return StackUnderflow(ref s);
        }
        s.Fsw &= unchecked((ushort)~C1);
        value = s.Regs[Phys(s, 0)];
        return true;
    }

    /// <summary>fst/fstp st(i); <paramref name="noEmptyCheck"/>: the undocumented D9 D8+i alias, which only pops when ST(0) is empty.</summary>
    public static void StoreStack(ref FpuState s, int i, bool pop, bool noEmptyCheck = false)
    {
        if (IsEmpty(s, 0) && noEmptyCheck)
        {
            s.Fsw &= unchecked((ushort)~C1);
            Pop(ref s);
            return;
        }
        if (IsEmpty(s, 0))
        {
            if (!StackUnderflow(ref s))
            {
                return;
            }
            SetRaw(ref s, i, Indefinite);
        }
        else
        {
            s.Fsw &= unchecked((ushort)~C1);
            SetRaw(ref s, i, s.Regs[Phys(s, 0)]);
        }
        if (pop)
        {
            Pop(ref s);
        }
    }

    /// <summary>fist/fistp/fisttp: ST(0) rounded (or truncated) to a 16/32/64-bit integer; the integer indefinite when out of range (IE).</summary>
    public static bool StoreInteger(ref FpuState s, int size, bool truncate, out ulong bits)
    {
        ulong indefinite = 1UL << ((size * 8) - 1);
        if (IsEmpty(s, 0))
        {
            bits = indefinite;
            return StackUnderflow(ref s);
        }
        Unpacked v = Get(s, 0);
        FpFlags f = FpFlags.None;
        bits = 0;
        if (IsSpecialOperand(v) || v.Class == FpClass.Infinity)
        {
            f |= FpFlags.Invalid;
            bits = indefinite;
        }
        else if (v.IsFiniteNonZero)
        {
            RoundingMode mode = truncate ? RoundingMode.TowardZero : (RoundingMode)((s.Fcw >> 10) & 3);
            ulong mag = SoftFloat.ToIntegerMagnitude(v, mode, out bool inexact, out bool huge, out bool up);
            ulong limit = 1UL << ((size * 8) - 1);
            if (huge || mag > limit || (mag == limit && !v.Sign))
            {
                f |= FpFlags.Invalid;
                bits = indefinite;
            }
            else
            {
                if (inexact)
                {
                    f |= FpFlags.Inexact;
                    if (up)
                    {
                        f |= FpFlags.RoundedUp;
                    }
                }
                bits = v.Sign ? 0 - mag : mag;
            }
        }
        if (size < 8)
        {
            bits &= (1UL << (size * 8)) - 1;
        }
        if ((f & FpFlags.Invalid) != 0)
        {
            f &= ~(FpFlags.Inexact | FpFlags.RoundedUp);
        }
        return Commit(ref s, f);
    }

    // ---- one-operand operations ----

    /// <summary>The operations on ST(0) (and ST(1)): sign, classification, square root, rounding, scaling, remainders, transcendentals.</summary>
    public static void Unary(ref FpuState s, X87Unary op)
    {
        switch (op)
        {
            case X87Unary.Fincstp:
                s.Top = (s.Top + 1) & 7;
                s.Fsw &= unchecked((ushort)~C1);
                return;
            case X87Unary.Fdecstp:
                s.Top = (s.Top - 1) & 7;
                s.Fsw &= unchecked((ushort)~C1);
                return;
            case X87Unary.Xam:
                Examine(ref s);
                return;
            case X87Unary.Tst:
                Compare(ref s, -1, Unpacked.Zero(false), quiet: false, 0);
                return;
            case X87Unary.Fyl2x:
            case X87Unary.Fyl2xp1:
            case X87Unary.Fpatan:
            case X87Unary.Fscale:
            case X87Unary.Fprem:
            case X87Unary.Fprem1:
                Binary(ref s, op);
                return;
            case X87Unary.Fptan:
            case X87Unary.Fsincos:
            case X87Unary.Fxtract:
                TwoResults(ref s, op);
                return;
            default:
                break;
        }
        if (IsEmpty(s, 0))
        {
            if (op is X87Unary.Fsin or X87Unary.Fcos)
            {
                s.Fsw &= unchecked((ushort)~C2);
            }
            if (StackUnderflow(ref s))
            {
                SetRaw(ref s, 0, Indefinite);
            }
            return;
        }
        Unpacked a = Get(s, 0);
        FpFlags f = FpFlags.None;
        Unpacked r;
        switch (op)
        {
            case X87Unary.Chs:
            case X87Unary.Abs:
            {
                Float80 raw = s.Regs[Phys(s, 0)];
                raw.SignExp = op == X87Unary.Chs ? (ushort)(raw.SignExp ^ 0x8000) : (ushort)(raw.SignExp & 0x7FFF);
                s.Fsw &= unchecked((ushort)~C1);
                SetRaw(ref s, 0, raw);
                return;
            }
            case X87Unary.Fsqrt:
                r = Sqrt(s, a, ref f);
                break;
            case X87Unary.Frndint:
                if (IsSpecialOperand(a))
                {
                    r = NaNResult(a, ref f);
                }
                else
                {
                    if (a.Class == FpClass.Denormal)
                    {
                        f |= FpFlags.Denormal;
                    }
                    r = SoftFloat.RoundToIntegral(a, (RoundingMode)((s.Fcw >> 10) & 3), ref f);
                }
                break;
            case X87Unary.F2xm1:
                r = Exp2M1(s, a, ref f);
                break;
            default: // Fsin, Fcos
            {
                if (Trig(ref s, a, out r, ref f))
                {
                    return; // out of range: C2 set, operand unchanged
                }
                if (a.IsFiniteNonZero)
                {
                    X87Math.SinCos(a, out Wide sin, out Wide cos);
                    r = (op == X87Unary.Fsin ? sin : cos).Round(FullParams(s), ref f);
                }
                else if (a.Class == FpClass.Zero && op == X87Unary.Fcos)
                {
                    r = SoftFloat.FromInteger(false, 1);
                }
                break;
            }
        }
        if (Commit(ref s, f))
        {
            Set(ref s, 0, r);
        }
    }

    /// <summary>
    /// The common part of fsin/fcos/fptan/fsincos: C2 = 1 and true when |x| >= 2^63 (nothing else changes);
    /// otherwise C2 = 0 and <paramref name="r"/> is the special-case result (NaN, invalid for infinity, zero), or a
    /// Normal-class placeholder when the caller must evaluate the function.
    /// </summary>
    private static bool Trig(ref FpuState s, in Unpacked a, out Unpacked r, ref FpFlags f)
    {
        if (a.IsFiniteNonZero && a.Exp >= X87Math.TrigMaxExponent)
        {
            s.Fsw = (ushort)((s.Fsw & ~C1) | C2);
            r = a;
            return true;
        }
        s.Fsw &= unchecked((ushort)~C2);
        if (IsSpecialOperand(a))
        {
            r = NaNResult(a, ref f);
        }
        else if (a.Class == FpClass.Infinity)
        {
            f |= FpFlags.Invalid;
            r = Unpacked.DefaultNaN;
        }
        else if (a.Class == FpClass.Zero)
        {
            r = a;
        }
        else
        {
            if (a.Class == FpClass.Denormal)
            {
                f |= FpFlags.Denormal;
            }
            r = new Unpacked(FpClass.Normal, false, 0, 0);
        }
        return false;
    }

    private static Unpacked Exp2M1(in FpuState s, in Unpacked a, ref FpFlags f)
    {
        if (IsSpecialOperand(a))
        {
            return NaNResult(a, ref f);
        }
        switch (a.Class)
        {
            case FpClass.Zero:
                return a;
            case FpClass.Infinity:
                return a.Sign ? SoftFloat.FromInteger(true, 1) : a; // 2^-inf - 1 = -1
            default:
                if (a.Class == FpClass.Denormal)
                {
                    f |= FpFlags.Denormal;
                }
                if (a.Exp >= 15)
                {
                    // Far outside the defined domain (|x| <= 1): 2^x - 1 overflows, or is -1 rounded.
                    // (-1 + a tiny positive amount: just above -1; or beyond the largest finite value.)
                    return a.Sign
                        ? SoftFloat.RoundPack(true, -1, UInt128.MaxValue, FullParams(s), ref f)
                        : SoftFloat.RoundPack(false, 20000, (UInt128)1 << 127, FullParams(s), ref f);
                }
                if (a.Exp == 0 && a.Sig == 0x8000_0000_0000_0000)
                {
                    // x = +-1: exactly 1 or -1/2 (the hardware still reports the precision exception).
                    f |= FpFlags.Inexact;
                    return a.Sign ? new Unpacked(FpClass.Normal, true, -1, 0x8000_0000_0000_0000) : a;
                }
                return X87Math.Exp2M1(a).Round(FullParams(s), ref f);
        }
    }

    /// <summary>fxam: C3, C2, C0 = class of ST(0) (unsupported 000, NaN 001, normal 010, infinity 011, zero 100, empty 101, denormal 110); C1 = sign.</summary>
    private static void Examine(ref FpuState s)
    {
        Float80 raw = s.Regs[Phys(s, 0)];
        ushort c1 = (raw.SignExp & 0x8000) != 0 ? C1 : (ushort)0;
        ushort cc;
        if (IsEmpty(s, 0))
        {
            cc = C3 | C0;
        }
        else
        {
            cc = Get(s, 0).Class switch
            {
                FpClass.Unsupported => 0,
                FpClass.QuietNaN or FpClass.SignalingNaN => C0,
                FpClass.Normal => C2,
                FpClass.Infinity => C2 | C0,
                FpClass.Zero => C3,
                _ => C3 | C2,
            };
        }
        SetCc(ref s, (ushort)(cc | c1));
    }

    /// <summary>Operations on ST(0) and ST(1): fyl2x, fyl2xp1, fpatan (result in ST(1), then pop), fscale, fprem, fprem1 (result in ST(0)).</summary>
    private static void Binary(ref FpuState s, X87Unary op)
    {
        bool popAfter = op is X87Unary.Fyl2x or X87Unary.Fyl2xp1 or X87Unary.Fpatan;
        int dst = popAfter ? 1 : 0;
        if (IsEmpty(s, 0) || IsEmpty(s, 1))
        {
            if (!StackUnderflow(ref s))
            {
                return;
            }
            SetRaw(ref s, dst, Indefinite);
            if (op is X87Unary.Fprem or X87Unary.Fprem1)
            {
                SetCc(ref s, (ushort)(s.Fsw & (C0 | C3))); // C2 (and C1) cleared, the quotient bits left
            }
            if (popAfter)
            {
                Pop(ref s);
            }
            return;
        }
        Unpacked x = Get(s, 0), y = Get(s, 1);
        FpFlags f = FpFlags.None;
        Unpacked r;
        ushort cc = (ushort)(s.Fsw & CcMask);
        if (IsSpecialOperand(x) || IsSpecialOperand(y))
        {
            r = PropagateNaN(x, y, ref f);
            cc = (ushort)(cc & (C0 | C3));
        }
        else
        {
            switch (op)
            {
                case X87Unary.Fyl2x: r = Yl2x(s, x, y, ref f); break;
                case X87Unary.Fyl2xp1: r = Yl2xp1(s, x, y, ref f); break;
                case X87Unary.Fpatan: r = Patan(s, x, y, ref f); break;
                case X87Unary.Fscale: r = Scale(s, x, y, ref f); break;
                default: r = Remainder(x, y, op == X87Unary.Fprem1, ref f, ref cc); break;
            }
            // A denormal operand is reported unless an invalid or divide-by-zero exception takes precedence.
            if ((x.Class == FpClass.Denormal || y.Class == FpClass.Denormal) && (f & (FpFlags.Invalid | FpFlags.DivideByZero)) == 0)
            {
                f |= FpFlags.Denormal;
            }
        }
        if (!Commit(ref s, f))
        {
            return;
        }
        if (op is X87Unary.Fprem or X87Unary.Fprem1)
        {
            SetCc(ref s, cc);
        }
        Set(ref s, dst, r);
        if (popAfter)
        {
            Pop(ref s);
        }
    }

    /// <summary>ST(1) * log2(ST(0)).</summary>
    private static Unpacked Yl2x(in FpuState s, in Unpacked x, in Unpacked y, ref FpFlags f)
    {
        if (x.Sign && x.Class != FpClass.Zero)
        {
            f |= FpFlags.Invalid; // log of a negative number
            return Unpacked.DefaultNaN;
        }
        bool xIsOne = x.Class == FpClass.Normal && x.Exp == 0 && x.Sig == 0x8000_0000_0000_0000;
        // log2(x): -inf for zero (divide by zero when y is finite nonzero), +inf for +inf, zero for one.
        if (x.Class == FpClass.Zero)
        {
            if (y.Class == FpClass.Zero)
            {
                f |= FpFlags.Invalid;
                return Unpacked.DefaultNaN;
            }
            if (y.Class != FpClass.Infinity)
            {
                f |= FpFlags.DivideByZero;
            }
            return Unpacked.Infinity(!y.Sign);
        }
        if (x.Class == FpClass.Infinity)
        {
            if (y.Class == FpClass.Zero)
            {
                f |= FpFlags.Invalid;
                return Unpacked.DefaultNaN;
            }
            return Unpacked.Infinity(y.Sign);
        }
        if (xIsOne)
        {
            if (y.Class == FpClass.Infinity)
            {
                f |= FpFlags.Invalid;
                return Unpacked.DefaultNaN;
            }
            return Unpacked.Zero(y.Sign);
        }
        bool logNegative = x.Exp < 0;
        if (y.Class == FpClass.Infinity)
        {
            return Unpacked.Infinity(y.Sign ^ logNegative);
        }
        if (y.Class == FpClass.Zero)
        {
            return Unpacked.Zero(y.Sign ^ logNegative);
        }
        // The microcode does not detect exact results (x a power of two): it always reports the precision exception.
        f |= FpFlags.Inexact;
        return (Wide.From(y) * X87Math.Log2(x)).Round(FullParams(s), ref f);
    }

    /// <summary>ST(1) * log2(ST(0) + 1).</summary>
    private static Unpacked Yl2xp1(in FpuState s, in Unpacked x, in Unpacked y, ref FpFlags f)
    {
        if (x.Class == FpClass.Infinity || (x.Sign && x.IsFiniteNonZero && (x.Exp > 0 || (x.Exp == 0 && x.Sig >= 0x8000_0000_0000_0000))))
        {
            // x + 1 <= 0 or infinite: the hardware leaves |x| >= 1 - sqrt(2)/2 undefined; treat like log2 of it.
            if (x.Class == FpClass.Infinity && !x.Sign)
            {
                if (y.Class == FpClass.Zero)
                {
                    f |= FpFlags.Invalid;
                    return Unpacked.DefaultNaN;
                }
                return Unpacked.Infinity(y.Sign);
            }
            f |= FpFlags.Invalid;
            return Unpacked.DefaultNaN;
        }
        if (x.Class == FpClass.Zero)
        {
            if (y.Class == FpClass.Infinity)
            {
                f |= FpFlags.Invalid;
                return Unpacked.DefaultNaN;
            }
            return Unpacked.Zero(x.Sign ^ y.Sign);
        }
        if (y.Class == FpClass.Infinity)
        {
            return Unpacked.Infinity(x.Sign ^ y.Sign);
        }
        if (y.Class == FpClass.Zero)
        {
            return Unpacked.Zero(x.Sign ^ y.Sign);
        }
        return (Wide.From(y) * X87Math.Log2OnePlus(x)).Round(FullParams(s), ref f);
    }

    /// <summary>atan2(ST(1), ST(0)) with the IEEE special cases (the multiples of pi rounded like any result).</summary>
    private static Unpacked Patan(in FpuState s, in Unpacked x, in Unpacked y, ref FpFlags f)
    {
        RoundParams p = FullParams(s);
        Wide pi = Wide.Pi;
        bool negative = y.Sign;
        Wide Signed(Wide w) => negative ? w.Negate() : w;
        if (y.Class == FpClass.Zero)
        {
            return x.Sign ? Signed(pi).Round(p, ref f) : Unpacked.Zero(y.Sign); // atan2(+-0, -x) = +-pi; (+-0, +x) = +-0
        }
        if (x.Class == FpClass.Zero)
        {
            return Signed(pi.Scale(-1)).Round(p, ref f);
        }
        if (y.Class == FpClass.Infinity)
        {
            Wide w = x.Class == FpClass.Infinity
                ? (x.Sign ? pi.Scale(-2) * Wide.FromInt(3) : pi.Scale(-2))
                : pi.Scale(-1);
            return Signed(w).Round(p, ref f);
        }
        if (x.Class == FpClass.Infinity)
        {
            return x.Sign ? Signed(pi).Round(p, ref f) : Unpacked.Zero(y.Sign);
        }
        return X87Math.Atan2(y, x).Round(p, ref f);
    }

    /// <summary>ST(0) * 2^trunc(ST(1)).</summary>
    private static Unpacked Scale(in FpuState s, in Unpacked x, in Unpacked y, ref FpFlags f)
    {
        if (y.Class == FpClass.Infinity)
        {
            if ((!y.Sign && x.Class == FpClass.Zero) || (y.Sign && x.Class == FpClass.Infinity))
            {
                f |= FpFlags.Invalid;
                return Unpacked.DefaultNaN;
            }
            if (x.Class is FpClass.Zero or FpClass.Infinity)
            {
                return x;
            }
            return y.Sign ? Unpacked.Zero(x.Sign) : Unpacked.Infinity(x.Sign);
        }
        if (x.Class is FpClass.Zero or FpClass.Infinity)
        {
            return x;
        }
        long n = 0;
        if (y.IsFiniteNonZero)
        {
            ulong mag = SoftFloat.ToIntegerMagnitude(y, RoundingMode.TowardZero, out _, out bool huge, out _);
            long m = huge || mag > 1_000_000 ? 1_000_000 : (long)mag;
            n = y.Sign ? -m : m;
        }
        return SoftFloat.RoundPack(x.Sign, (int)(x.Exp + n), (UInt128)x.Sig << 64, FullParams(s), ref f);
    }

    /// <summary>
    /// fprem (quotient truncated) and fprem1 (quotient rounded to nearest): exact partial remainder of ST(0) by
    /// ST(1). When the exponents differ by 64 or more, one reduction step of 32 + (difference mod 32) bits is made and
    /// C2 is set (the caller loops); otherwise the remainder is final, C2 = 0 and C0, C3, C1 = quotient bits 2, 1, 0.
    /// </summary>
    private static Unpacked Remainder(in Unpacked x, in Unpacked y, bool nearest, ref FpFlags f, ref ushort cc)
    {
        if (x.Class == FpClass.Infinity || y.Class == FpClass.Zero)
        {
            f |= FpFlags.Invalid;
            cc = (ushort)(cc & (C0 | C3));
            return Unpacked.DefaultNaN;
        }
        if (x.Class == FpClass.Zero || y.Class == FpClass.Infinity)
        {
            cc = 0;
            return x;
        }
        cc = 0;
        int d = x.Exp - y.Exp;
        if (d >= 64)
        {
            // Partial: remove the top n bits of the quotient, n = 32 + d mod 32, and report incomplete.
            int n = 32 + (d % 32);
            int shift = d - n; // the quotient chunk is scaled by 2^shift
            // x = X * 2^(x.Exp - 63), y * 2^shift = Y * 2^(x.Exp - 63 - n) with X = Sig, Y = y.Sig.
            UInt128 big = (UInt128)x.Sig << n;
            UInt128 q = big / y.Sig;
            UInt128 rem = big - (q * y.Sig);
            cc = C2;
            if (rem == 0)
            {
                return Unpacked.Zero(x.Sign);
            }
            return SoftFloat.Round(FromRemainder(x.Sign, rem, x.Exp - n), RoundParams.Extended(64, RoundingMode.Nearest), ref f);
        }
        UInt128 quotient;
        UInt128 r;
        int remExp; // r * 2^(remExp - 63)
        bool negate = false;
        if (d >= 0)
        {
            UInt128 big = (UInt128)x.Sig << d;
            quotient = big / y.Sig;
            r = big - (quotient * y.Sig);
            remExp = y.Exp;
        }
        else
        {
            quotient = 0;
            r = x.Sig;
            remExp = x.Exp;
            if (nearest && d == -1 && x.Sig > y.Sig)
            {
                // |x| in (|y|/2, |y|): the nearest quotient is 1.
                quotient = 1;
                return Finish(x.Sign, SubtractFrom(y, x), quotient, ref cc, ref f);
            }
        }
        if (nearest && d >= 0)
        {
            UInt128 twice = r << 1;
            if (twice > y.Sig || (twice == y.Sig && (quotient & 1) != 0))
            {
                quotient++;
                r = y.Sig - r;
                negate = true;
            }
        }
        Unpacked result = r == 0 ? Unpacked.Zero(x.Sign) : FromRemainder(x.Sign ^ negate, r, remExp);
        return Finish(x.Sign, result, quotient, ref cc, ref f);
    }

    private static Unpacked Finish(bool sign, Unpacked result, UInt128 quotient, ref ushort cc, ref FpFlags f)
    {
        cc = (ushort)(((quotient & 4) != 0 ? C0 : 0) | ((quotient & 2) != 0 ? C3 : 0) | ((quotient & 1) != 0 ? C1 : 0));
        if (result.Class == FpClass.Zero)
        {
            return Unpacked.Zero(sign);
        }
        // Exact, but may need denormalizing: round only for the range (underflow flags as the hardware reports).
        return SoftFloat.Round(result, RoundParams.Extended(64, RoundingMode.Nearest), ref f);
    }

    /// <summary>|y| - |x| with the sign of -x (fprem1's nearest-quotient case for exponent difference -1).</summary>
    private static Unpacked SubtractFrom(in Unpacked y, in Unpacked x)
    {
        // y.Sig * 2^(y.Exp - 63) - x.Sig * 2^(y.Exp - 64): in units of 2^(y.Exp - 64).
        UInt128 v = ((UInt128)y.Sig << 1) - x.Sig;
        return FromRemainder(!x.Sign, v, y.Exp - 1);
    }

    /// <summary>The value r * 2^(exp - 63) as an unpacked (exact; r nonzero, at most 65 bits).</summary>
    private static Unpacked FromRemainder(bool sign, UInt128 r, int exp)
    {
        int lz = (int)UInt128.LeadingZeroCount(r);
        // normalize into 64 bits (r has at most 65 significant bits here)
        int msb = 127 - lz;
        ulong sig = msb <= 63 ? (ulong)(r << (63 - msb)) : (ulong)(r >> (msb - 63));
        return new Unpacked(FpClass.Normal, sign, exp + msb - 63, sig);
    }

    /// <summary>fptan (tan, then push 1.0), fsincos (sin in ST(1), cos in ST(0)), fxtract (exponent in ST(1), significand in ST(0)).</summary>
    private static void TwoResults(ref FpuState s, X87Unary op)
    {
        bool underflow = IsEmpty(s, 0);
        if (underflow || !IsEmpty(s, 7))
        {
            // No operand (stack underflow) or no room for the second result (stack overflow).
            if (op != X87Unary.Fxtract)
            {
                s.Fsw &= unchecked((ushort)~C2);
            }
            if (underflow ? StackUnderflow(ref s) : StackOverflow(ref s))
            {
                // Both results are the indefinite; the push overwrites whatever ST(7) held.
                SetRaw(ref s, 0, Indefinite);
                s.Top = (s.Top - 1) & 7;
                SetRaw(ref s, 0, Indefinite);
            }
            return;
        }
        Unpacked a = Get(s, 0);
        FpFlags f = FpFlags.None;
        Unpacked first, second; // first goes to ST(1) after the push, second to ST(0)
        if (op == X87Unary.Fxtract)
        {
            if (IsSpecialOperand(a))
            {
                first = second = NaNResult(a, ref f);
            }
            else if (a.Class == FpClass.Zero)
            {
                f |= FpFlags.DivideByZero;
                first = Unpacked.Infinity(true);
                second = a;
            }
            else if (a.Class == FpClass.Infinity)
            {
                first = Unpacked.Infinity(false);
                second = a;
            }
            else
            {
                if (a.Class == FpClass.Denormal)
                {
                    f |= FpFlags.Denormal;
                }
                first = a.Exp == 0 ? Unpacked.Zero(false) : SoftFloat.FromInteger(a.Exp < 0, (ulong)Math.Abs((long)a.Exp));
                second = new Unpacked(FpClass.Normal, a.Sign, 0, a.Sig);
            }
        }
        else
        {
            if (Trig(ref s, a, out Unpacked special, ref f))
            {
                return; // out of range: C2 = 1, nothing pushed
            }
            if (special.Class == FpClass.Normal && a.IsFiniteNonZero)
            {
                RoundParams p = FullParams(s);
                if (op == X87Unary.Fptan)
                {
                    first = X87Math.Tan(a).Round(p, ref f);
                    second = SoftFloat.FromInteger(false, 1);
                }
                else
                {
                    X87Math.SinCos(a, out Wide sin, out Wide cos);
                    first = sin.Round(p, ref f);
                    second = cos.Round(p, ref f);
                }
            }
            else if (a.Class == FpClass.Zero)
            {
                first = a; // tan(+-0) = +-0, sin(+-0) = +-0
                second = SoftFloat.FromInteger(false, 1);
            }
            else
            {
                first = second = special; // NaN or invalid (infinity)
            }
        }
        if (!Commit(ref s, f))
        {
            return;
        }
        Set(ref s, 0, first);
        s.Top = (s.Top - 1) & 7;
        Set(ref s, 0, second);
    }

    // ---- control ----

    /// <summary>fxch st(i): swaps ST(0) and ST(i); an empty one counts as a stack underflow (masked: replaced by the indefinite first).</summary>
    public static void Exchange(ref FpuState s, int i)
    {
        if (IsEmpty(s, 0) || IsEmpty(s, i))
        {
            if (!StackUnderflow(ref s))
            {
                return;
            }
            if (IsEmpty(s, 0))
            {
                SetRaw(ref s, 0, Indefinite);
            }
            if (IsEmpty(s, i))
            {
                SetRaw(ref s, i, Indefinite);
            }
        }
        else
        {
            s.Fsw &= unchecked((ushort)~C1);
        }
        int a = Phys(s, 0), b = Phys(s, i);
        (s.Regs[a], s.Regs[b]) = (s.Regs[b], s.Regs[a]);
    }

    /// <summary>fcmovcc: ST(0) = ST(i) when <paramref name="condition"/>; an empty operand is a stack underflow.</summary>
    public static void ConditionalMove(ref FpuState s, int i, bool condition)
    {
        if (IsEmpty(s, 0) || IsEmpty(s, i))
        {
            if (StackUnderflow(ref s))
            {
                SetRaw(ref s, 0, Indefinite);
            }
            return;
        }
        if (condition)
        {
            SetRaw(ref s, 0, s.Regs[Phys(s, i)]);
        }
    }

    /// <summary>fninit: control word 0x037F, status and tags cleared (all registers empty).</summary>
    public static void Init(ref FpuState s)
    {
        s.Fcw = FpuState.FcwDefault;
        s.Fsw = 0;
        s.Top = 0;
        s.Valid = 0;
    }

    /// <summary>The control word as loaded by fldcw/fldenv/frstor/fxrstor: bits 13-15 read as zero, bit 6 as one.</summary>
    public static ushort NormalizeControlWord(ushort cw) => (ushort)((cw & 0x1F3F) | 0x40);
}

/// <summary>The x87 control instructions.</summary>
internal enum X87Control : byte
{
    Fldcw,
    Fnstcw,
    FnstswMemory,
    FnstswAx,
    Fnclex,
    Fninit,
    Fnstenv,
    Fldenv,
    Fnsave,
    Frstor,
    Ffree,
    Ffreep,
    Fxch,
    Fwait,
    Fnop,
}
