using System.Numerics;

namespace Paravirt.Hypervisor.Backends.Emulator;

internal sealed unsafe partial class EmulatorVcpu
{
    // ---- registers and operands ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mask(int size) => size == 8 ? ulong.MaxValue : (1UL << (size << 3)) - 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong GetReg(int r, int size) => size switch
    {
        8 => _r[r],
        4 => (uint)_r[r],
        2 => (ushort)_r[r],
        _ => r >= 16 ? (byte)(_r[r - 16] >> 8) : (byte)_r[r],
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetReg(int r, int size, ulong v)
    {
        switch (size)
        {
            case 8: _r[r] = v; break;
            case 4: _r[r] = (uint)v; break;
            case 2: _r[r] = (_r[r] & ~0xFFFFUL) | (ushort)v; break;
            default:
                if (r >= 16)
                {
                    _r[r - 16] = (_r[r - 16] & ~0xFF00UL) | ((v & 0xFF) << 8);
                }
                else
                {
                    _r[r] = (_r[r] & ~0xFFUL) | (byte)v;
                }
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Ea(ref MicroOp op)
    {
        ulong a = op.Disp;
        if (op.Base != Translator.NoReg)
        {
            a += _r[op.Base];
        }
        if (op.Index != Translator.NoReg)
        {
            a += _r[op.Index] << op.Shift;
        }
        if (op.Addr32 || op.Seg != 0)
        {
            return EaAdjust(ref op, a);
        }
        return a;
    }

    /// <summary>32-bit address size truncates; an FS/GS override adds the segment base (the only segment bases 64-bit mode uses).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong EaAdjust(ref MicroOp op, ulong a)
    {
        if (op.Addr32)
        {
            a = (uint)a;
        }
        return op.Seg == 0 ? a : a + SegmentBase(op.Seg);
    }

    /// <summary>The base an FS (<see cref="MicroOp.SegFs"/>) or GS override adds.</summary>
    internal ulong SegmentBase(int seg) => seg == MicroOp.SegFs ? _sys.Fs.Base : _sys.Gs.Base;

    /// <summary>
    /// Reads the destination of a read-modify-write instruction. A memory operand is translated for WRITE before it
    /// is read (as the CPU checks it: a read-only page faults with W set), so the write that follows cannot fault
    /// and the instruction never leaves flags or registers changed behind a fault.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong ReadModify(ref MicroOp op, out ulong ea) => ReadA(ref op, out ea, forWrite: true);

    /// <summary>Reads operand A (a register, or memory at <paramref name="ea"/>; translated for write when <paramref name="forWrite"/>, see <see cref="ReadModify"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong ReadA(ref MicroOp op, out ulong ea, bool forWrite = false)
    {
        if (op.A == Loc.Reg)
        {
            ea = 0;
            return GetReg(op.RegA, op.Size);
        }
        ea = Ea(ref op);
        return forWrite ? LoadForWrite(ea, op.Size) : Load(ea, op.Size);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteA(ref MicroOp op, ulong ea, ulong v)
    {
        if (op.A == Loc.Reg)
        {
            SetReg(op.RegA, op.Size, v);
        }
        else
        {
            Store(ea, op.Size, v);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong ReadB(ref MicroOp op, int size)
    {
        if (op.B == Loc.Reg)
        {
            return GetReg(op.RegB, size);
        }
        if (op.B == Loc.Imm)
        {
            return op.Imm & Mask(size);
        }
        return Load(Ea(ref op), size);
    }

    // ---- flags ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Szp(ulong r, int size) => LazyFlags.Szp(r, size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetArith(ulong f)
    {
        _s->LazyKind = LazyKind.None;
        _s->FlagOverride = false;
        _s->Rflags = (_s->Rflags & ~ArithFlags) | f;
    }

    /// <summary>Records the operands of a flag-setting ALU op; the flags are computed only if something reads them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetLazy(LazyKind kind, ulong a, ulong b, ulong r, int size)
    {
        _s->LazyKind = kind;
        _s->FlagOverride = false;
        _s->LazyA = a;
        _s->LazyB = b;
        _s->LazyResult = r;
        _s->LazySize = size;
    }

    /// <summary>Computes the arithmetic flags of the last lazily recorded op into <see cref="CpuState.Rflags"/>.</summary>
    private void Materialize()
    {
        if (_s->LazyKind == LazyKind.None)
        {
            return;
        }
        _s->Rflags = (_s->Rflags & ~ArithFlags) | LazyFlags.Compute(_s->LazyKind, _s->LazyA, _s->LazyB, _s->LazyResult, _s->LazySize, _s->Rflags, _s->FlagOverride, _s->OverrideFlags);
        _s->FlagOverride = false;
        _s->LazyKind = LazyKind.None;
    }

    /// <summary>CF without materializing everything.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Carry() => LazyFlags.Carry((int)_s->LazyKind, _s->LazyA, _s->LazyB, _s->LazyResult, _s->LazySize, _s->Rflags, _s->FlagOverride, _s->OverrideFlags);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong AddFlags(ulong a, ulong b, ulong r, int size, bool carry) => LazyFlags.AddFlags(a, b, r, size, carry);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SubFlags(ulong a, ulong b, ulong r, int size, bool borrow) => LazyFlags.SubFlags(a, b, r, size, borrow);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool Cond(int cc) => LazyFlags.Condition(cc, (int)_s->LazyKind, _s->LazyA, _s->LazyB, _s->LazyResult, _s->LazySize, _s->Rflags, _s->FlagOverride, _s->OverrideFlags);

    // ---- the block executor ----

    /// <summary>
    /// Executes ops [<paramref name="from"/>, <paramref name="n"/>) of <paramref name="block"/>. Returns true when the
    /// block was left early by an event (a fault delivered, an exit): the caller (the dispatcher, or translated code
    /// that handed it one op) goes back to dispatch and returns <see cref="_exit"/> when <see cref="_exitPending"/>.
    /// </summary>
    private bool ExecuteBlock(Block block, int from, int n)
    {
        MicroOp[] ops = block.Ops;
        int i = from;
        try
        {
        Run:
            // The bound is a field, not n: a store that drops a block (self-modifying code) sets it to 0 (BlockDropped),
            // so the loop ends after the instruction that stored. One compare against memory, as cheap as against n.
            _runLimit = n;
            for (; i < _runLimit; i++)
            {
                ref MicroOp op = ref ops[i];
                int size = op.Size;
                switch (op.Kind)
                {
                    case OpKind.Nop:
                        break;
                    case OpKind.MovRR64: { _r[op.RegA] = _r[op.RegB]; break; }
                    case OpKind.MovRR32: { _r[op.RegA] = (uint)_r[op.RegB]; break; }
                    case OpKind.MovRI64: { _r[op.RegA] = op.Imm; break; }
                    case OpKind.MovRI32: { _r[op.RegA] = op.Imm; break; }
                    case OpKind.AddRR64: { ulong a = _r[op.RegA], b = _r[op.RegB]; ulong r = a + b; _r[op.RegA] = r; SetLazy(LazyKind.Add, a, b, r, 8); break; }
                    case OpKind.AddRR32: { ulong a = (uint)_r[op.RegA], b = (uint)_r[op.RegB]; ulong r = (uint)(a + b); _r[op.RegA] = r; SetLazy(LazyKind.Add, a, b, r, 4); break; }
                    case OpKind.AddRI64: { ulong a = _r[op.RegA], b = op.Imm; ulong r = a + b; _r[op.RegA] = r; SetLazy(LazyKind.Add, a, b, r, 8); break; }
                    case OpKind.AddRI32: { ulong a = (uint)_r[op.RegA], b = op.Imm; ulong r = (uint)(a + b); _r[op.RegA] = r; SetLazy(LazyKind.Add, a, b, r, 4); break; }
                    case OpKind.SubRR64: { ulong a = _r[op.RegA], b = _r[op.RegB]; ulong r = a - b; _r[op.RegA] = r; SetLazy(LazyKind.Sub, a, b, r, 8); break; }
                    case OpKind.SubRR32: { ulong a = (uint)_r[op.RegA], b = (uint)_r[op.RegB]; ulong r = (uint)(a - b); _r[op.RegA] = r; SetLazy(LazyKind.Sub, a, b, r, 4); break; }
                    case OpKind.SubRI64: { ulong a = _r[op.RegA], b = op.Imm; ulong r = a - b; _r[op.RegA] = r; SetLazy(LazyKind.Sub, a, b, r, 8); break; }
                    case OpKind.SubRI32: { ulong a = (uint)_r[op.RegA], b = op.Imm; ulong r = (uint)(a - b); _r[op.RegA] = r; SetLazy(LazyKind.Sub, a, b, r, 4); break; }
                    case OpKind.AndRR64: { ulong a = _r[op.RegA], b = _r[op.RegB]; ulong r = a & b; _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.AndRR32: { ulong a = (uint)_r[op.RegA], b = (uint)_r[op.RegB]; ulong r = (uint)(a & b); _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.AndRI64: { ulong a = _r[op.RegA], b = op.Imm; ulong r = a & b; _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.AndRI32: { ulong a = (uint)_r[op.RegA], b = op.Imm; ulong r = (uint)(a & b); _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.OrRR64: { ulong a = _r[op.RegA], b = _r[op.RegB]; ulong r = a | b; _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.OrRR32: { ulong a = (uint)_r[op.RegA], b = (uint)_r[op.RegB]; ulong r = (uint)(a | b); _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.OrRI64: { ulong a = _r[op.RegA], b = op.Imm; ulong r = a | b; _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.OrRI32: { ulong a = (uint)_r[op.RegA], b = op.Imm; ulong r = (uint)(a | b); _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.XorRR64: { ulong a = _r[op.RegA], b = _r[op.RegB]; ulong r = a ^ b; _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.XorRR32: { ulong a = (uint)_r[op.RegA], b = (uint)_r[op.RegB]; ulong r = (uint)(a ^ b); _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.XorRI64: { ulong a = _r[op.RegA], b = op.Imm; ulong r = a ^ b; _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.XorRI32: { ulong a = (uint)_r[op.RegA], b = op.Imm; ulong r = (uint)(a ^ b); _r[op.RegA] = r; SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.CmpRR64: { ulong a = _r[op.RegA], b = _r[op.RegB]; ulong r = a - b; SetLazy(LazyKind.Sub, a, b, r, 8); break; }
                    case OpKind.CmpRR32: { ulong a = (uint)_r[op.RegA], b = (uint)_r[op.RegB]; ulong r = (uint)(a - b); SetLazy(LazyKind.Sub, a, b, r, 4); break; }
                    case OpKind.CmpRI64: { ulong a = _r[op.RegA], b = op.Imm; ulong r = a - b; SetLazy(LazyKind.Sub, a, b, r, 8); break; }
                    case OpKind.CmpRI32: { ulong a = (uint)_r[op.RegA], b = op.Imm; ulong r = (uint)(a - b); SetLazy(LazyKind.Sub, a, b, r, 4); break; }
                    case OpKind.TestRR64: { ulong a = _r[op.RegA], b = _r[op.RegB]; ulong r = a & b; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.TestRR32: { ulong a = (uint)_r[op.RegA], b = (uint)_r[op.RegB]; ulong r = (uint)(a & b); SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.TestRI64: { ulong a = _r[op.RegA], b = op.Imm; ulong r = a & b; SetLazy(LazyKind.Logic, a, b, r, 8); break; }
                    case OpKind.TestRI32: { ulong a = (uint)_r[op.RegA], b = op.Imm; ulong r = (uint)(a & b); SetLazy(LazyKind.Logic, a, b, r, 4); break; }
                    case OpKind.LoadRM64: _r[op.RegA] = Load64(Ea(ref op)); break;
                    case OpKind.LoadRM32: _r[op.RegA] = Load(Ea(ref op), 4); break;
                    case OpKind.StoreMR64: Store64(Ea(ref op), _r[op.RegB]); break;
                    case OpKind.StoreMR32: Store(Ea(ref op), 4, (uint)_r[op.RegB]); break;
                    case OpKind.MovzxLoad8: _r[op.RegA] = Load(Ea(ref op), 1); break;
                    case OpKind.MovzxRR8: _r[op.RegA] = (byte)_r[op.RegB]; break;
                    case OpKind.Lea64: _r[op.RegA] = Ea(ref op); break;
                    case OpKind.Lea32: _r[op.RegA] = (uint)Ea(ref op); break;
                    case OpKind.ShiftRI:
                    {
                        // shift/rotate of a 32/64-bit register by a non-zero immediate (count pre-masked at decode).
                        ulong a = size == 8 ? _r[op.RegA] : (uint)_r[op.RegA];
                        _r[op.RegA] = Shift((OpKind)op.Cond, a, (int)op.Imm, size);
                        break;
                    }
                    case OpKind.Mov:
                        WriteA(ref op, op.A == Loc.Mem ? Ea(ref op) : 0, ReadB(ref op, size));
                        break;
                    case OpKind.Movzx:
                        SetReg(op.RegA, size, ReadB(ref op, op.Size2));
                        break;
                    case OpKind.Movsx:
                        SetReg(op.RegA, size, (ulong)LazyFlags.SignExtend(ReadB(ref op, op.Size2), op.Size2));
                        break;
                    case OpKind.Lea:
                        SetReg(op.RegA, size, Ea(ref op));
                        break;
                    case OpKind.Push:
                    {
                        ulong v = ReadB(ref op, 8);
                        ulong sp = _r[4] - 8;
                        Store64(sp, v);
                        _r[4] = sp;
                        break;
                    }
                    case OpKind.Pop:
                    {
                        ulong v = Load64(_r[4]);
                        if (op.A == Loc.Mem)
                        {
                            PopToMemory(ref op, v);
                            break;
                        }
                        _r[4] += 8;
                        WriteA(ref op, 0, v);
                        break;
                    }
                    case OpKind.Add:
                    case OpKind.Sub:
                    case OpKind.Cmp:
                    case OpKind.And:
                    case OpKind.Test:
                    case OpKind.Or:
                    case OpKind.Xor:
                    {
                        // cmp and test only record the flags (their destination is read, not translated for write).
                        bool writes = op.Kind is not (OpKind.Cmp or OpKind.Test);
                        ulong b = ReadB(ref op, size);
                        ulong a = ReadA(ref op, out ulong ea, forWrite: writes);
                        (LazyKind kind, ulong r) = op.Kind switch
                        {
                            OpKind.Add => (LazyKind.Add, (a + b) & Mask(size)),
                            OpKind.Sub or OpKind.Cmp => (LazyKind.Sub, (a - b) & Mask(size)),
                            OpKind.And or OpKind.Test => (LazyKind.Logic, a & b),
                            OpKind.Or => (LazyKind.Logic, a | b),
                            _ => (LazyKind.Logic, a ^ b),
                        };
                        SetLazy(kind, a, b, r, size);
                        if (writes)
                        {
                            WriteA(ref op, ea, r);
                        }
                        break;
                    }
                    case OpKind.Adc:
                    case OpKind.Sbb:
                    {
                        ulong b = ReadB(ref op, size);
                        ulong a = ReadModify(ref op, out ulong ea);
                        ulong c = Carry();
                        bool add = op.Kind == OpKind.Adc;
                        ulong r = (add ? a + b + c : a - b - c) & Mask(size);
                        SetArith(add ? AddFlags(a, b, r, size, c != 0 ? r <= a : r < a) : SubFlags(a, b, r, size, c != 0 ? a <= b : a < b));
                        WriteA(ref op, ea, r);
                        break;
                    }
                    case OpKind.Inc:
                    case OpKind.Dec:
                    {
                        // CF is the one arithmetic flag inc and dec keep: materialize it before recording their own.
                        ulong a = ReadModify(ref op, out ulong ea);
                        bool inc = op.Kind == OpKind.Inc;
                        ulong r = (inc ? a + 1 : a - 1) & Mask(size);
                        _s->Rflags = (_s->Rflags & ~CF) | Carry();
                        SetLazy(inc ? LazyKind.Inc : LazyKind.Dec, a, 1, r, size);
                        WriteA(ref op, ea, r);
                        break;
                    }
                    case OpKind.Neg:
                    {
                        ulong a = ReadModify(ref op, out ulong ea);
                        ulong r = (0 - a) & Mask(size);
                        SetLazy(LazyKind.Sub, 0, a, r, size);
                        WriteA(ref op, ea, r);
                        break;
                    }
                    case OpKind.Not:
                    {
                        ulong a = ReadModify(ref op, out ulong ea);
                        WriteA(ref op, ea, ~a & Mask(size));
                        break;
                    }
                    case OpKind.Mul1:
                    case OpKind.Imul1:
                        MulAccumulator(ReadB(ref op, size), size, signed: op.Kind == OpKind.Imul1);
                        break;
                    case OpKind.Imul2:
                    {
                        ulong b = ReadB(ref op, size);
                        ulong a = GetReg(op.RegA, size);
                        SetReg(op.RegA, size, ImulTrunc(a, b, size));
                        break;
                    }
                    case OpKind.Imul3:
                        SetReg(op.RegA, size, ImulTrunc(ReadB(ref op, size), op.Imm & Mask(size), size));
                        break;
                    case OpKind.Div:
                        Div(ReadB(ref op, size), size);
                        break;
                    case OpKind.Idiv:
                        Idiv(ReadB(ref op, size), size);
                        break;
                    case OpKind.Shl:
                    case OpKind.Shr:
                    case OpKind.Sar:
                    case OpKind.Rol:
                    case OpKind.Ror:
                    case OpKind.Rcl:
                    case OpKind.Rcr:
                    {
                        int count = (int)(op.B == Loc.Imm ? op.Imm : _r[1]) & (size == 8 ? 63 : 31);
                        ulong a = ReadModify(ref op, out ulong ea);
                        if (count != 0)
                        {
                            WriteA(ref op, ea, Shift(op.Kind, a, count, size));
                        }
                        else if (size == 4 && op.A == Loc.Reg)
                        {
                            _r[op.RegA] = (uint)_r[op.RegA]; // a 32-bit destination is written (zero-extended) even for count 0
                        }
                        break;
                    }
                    case OpKind.Shld:
                    case OpKind.Shrd:
                    {
                        int count = (int)(op.Rep != 0 ? _r[1] : op.Imm) & (size == 8 ? 63 : 31);
                        ulong b = GetReg(op.RegB, size);
                        ulong a = ReadModify(ref op, out ulong ea);
                        if (count != 0)
                        {
                            WriteA(ref op, ea, DoubleShift(op.Kind == OpKind.Shld, a, b, count, size));
                        }
                        else if (size == 4 && op.A == Loc.Reg)
                        {
                            _r[op.RegA] = (uint)_r[op.RegA];
                        }
                        break;
                    }
                    case OpKind.Bt:
                    case OpKind.Bts:
                    case OpKind.Btr:
                    case OpKind.Btc:
                        BitTest(ref op, size);
                        break;
                    case OpKind.Bsf:
                    case OpKind.Bsr:
                    {
                        ulong src = ReadB(ref op, size);
                        Materialize();
                        if (src == 0)
                        {
                            _s->Rflags |= ZF;
                        }
                        else
                        {
                            _s->Rflags &= ~ZF;
                            SetReg(op.RegA, size, op.Kind == OpKind.Bsf ? (ulong)BitOperations.TrailingZeroCount(src) : (ulong)(63 - BitOperations.LeadingZeroCount(src)));
                        }
                        break;
                    }
                    case OpKind.Tzcnt:
                    case OpKind.Lzcnt:
                    {
                        // The zero bits below the lowest (tzcnt) or above the highest (lzcnt) set bit, the operand size
                        // for a zero source; CF when the source is zero, ZF when the count is.
                        ulong src = ReadB(ref op, size);
                        ulong r = op.Kind == OpKind.Lzcnt
                            ? (ulong)(BitOperations.LeadingZeroCount(src) - (64 - (size << 3)))
                            : src == 0 ? (ulong)(size << 3) : (ulong)BitOperations.TrailingZeroCount(src);
                        Materialize();
                        _s->Rflags = (_s->Rflags & ~(CF | ZF)) | (src == 0 ? CF : 0) | (r == 0 ? ZF : 0);
                        SetReg(op.RegA, size, r);
                        break;
                    }
                    case OpKind.Popcnt:
                    {
                        ulong src = ReadB(ref op, size);
                        SetArith(src == 0 ? ZF : 0);
                        SetReg(op.RegA, size, (ulong)BitOperations.PopCount(src));
                        break;
                    }
                    case OpKind.Andn:
                    {
                        ulong r = ~GetReg(op.RegC, size) & ReadB(ref op, size) & Mask(size);
                        Materialize();
                        SetArith(Szp(r, size) & (ZF | SF) | (_s->Rflags & (AF | PF)));
                        SetReg(op.RegA, size, r);
                        break;
                    }
                    case OpKind.Blsi:
                    case OpKind.Blsr:
                    case OpKind.Blsmsk:
                    {
                        ulong src = ReadB(ref op, size);
                        ulong m = Mask(size);
                        ulong r = op.Kind switch
                        {
                            OpKind.Blsi => (0 - src) & src,
                            OpKind.Blsr => (src - 1) & src,
                            _ => (src - 1) ^ src,
                        } & m;
                        bool cf = op.Kind == OpKind.Blsi ? src != 0 : src == 0;
                        Materialize();
                        SetArith(Szp(r, size) & (ZF | SF) | (cf ? CF : 0) | (_s->Rflags & (AF | PF)));
                        SetReg(op.RegA, size, r);
                        break;
                    }
                    case OpKind.Bextr:
                    {
                        ulong src = ReadB(ref op, size);
                        ulong ctl = GetReg(op.RegC, size);
                        int start = (int)(ctl & 0xFF), len = (int)((ctl >> 8) & 0xFF);
                        int bits = size << 3;
                        ulong r = start >= bits ? 0 : src >> start;
                        if (len < 64)
                        {
                            r &= (1UL << len) - 1;
                        }
                        Materialize();
                        SetArith((r == 0 ? ZF : 0) | (_s->Rflags & (AF | PF | SF)));
                        SetReg(op.RegA, size, r);
                        break;
                    }
                    case OpKind.Cmovcc:
                    {
                        ulong v = ReadB(ref op, size);
                        if (Cond(op.Cond))
                        {
                            SetReg(op.RegA, size, v);
                        }
                        else if (size == 4)
                        {
                            _r[op.RegA] = (uint)_r[op.RegA];
                        }
                        break;
                    }
                    case OpKind.Setcc:
                        WriteA(ref op, op.A == Loc.Mem ? Ea(ref op) : 0, Cond(op.Cond) ? 1UL : 0);
                        break;
                    case OpKind.Jcc:
                        _s->Rip = Cond(op.Cond) ? op.Imm : op.Next;
                        i++;
                        goto Done;
                    case OpKind.Jmp:
                        _s->Rip = op.Imm;
                        i++;
                        goto Done;
                    case OpKind.JmpInd:
                        _s->Rip = ReadB(ref op, 8);
                        i++;
                        goto Done;
                    case OpKind.Call:
                    {
                        ulong sp = _r[4] - 8;
                        Store64(sp, op.Next);
                        _r[4] = sp;
                        _s->Rip = op.Imm;
                        i++;
                        goto Done;
                    }
                    case OpKind.CallInd:
                    {
                        ulong target = ReadB(ref op, 8);
                        ulong sp = _r[4] - 8;
                        Store64(sp, op.Next);
                        _r[4] = sp;
                        _s->Rip = target;
                        i++;
                        goto Done;
                    }
                    case OpKind.Ret:
                    {
                        ulong target = Load64(_r[4]);
                        _r[4] += 8 + op.Imm;
                        _s->Rip = target;
                        i++;
                        goto Done;
                    }
                    case OpKind.Loop:
                    case OpKind.Loope:
                    case OpKind.Loopne:
                    {
                        Materialize();
                        ulong c = --_r[1];
                        bool take = c != 0 && (op.Kind == OpKind.Loop || ((_s->Rflags & ZF) != 0) == (op.Kind == OpKind.Loope));
                        _s->Rip = take ? op.Imm : op.Next;
                        i++;
                        goto Done;
                    }
                    case OpKind.Jrcxz:
                        _s->Rip = _r[1] == 0 ? op.Imm : op.Next;
                        i++;
                        goto Done;
                    case OpKind.Movs:
                    case OpKind.Stos:
                    case OpKind.Lods:
                    case OpKind.Cmps:
                    case OpKind.Scas:
                        if (op.Rep == 0)
                        {
                            StringOnce(ref op);
                            break;
                        }
                        // A rep op ends its block and counts its own iterations (see EmulatorVcpu.Strings.cs).
                        _s->Rip = RepString(ref op, _s->BudgetLimit - _s->Icount - (ulong)(i - from)) ? op.Next : op.Rip;
                        goto Done;
                    case OpKind.Xchg:
                    {
                        ulong a = ReadModify(ref op, out ulong ea);
                        ulong b = GetReg(op.RegB, size);
                        WriteA(ref op, ea, b);
                        SetReg(op.RegB, size, a);
                        break;
                    }
                    case OpKind.Cmpxchg:
                    {
                        ulong src = GetReg(op.RegB, size);
                        ulong t = ReadModify(ref op, out ulong ea);
                        ulong acc = GetReg(0, size);
                        ulong r = (acc - t) & Mask(size);
                        SetLazy(LazyKind.Sub, acc, t, r, size);
                        if (acc == t)
                        {
                            WriteA(ref op, ea, src);
                        }
                        else
                        {
                            SetReg(0, size, t);
                        }
                        break;
                    }
                    case OpKind.Xadd:
                    {
                        ulong s = GetReg(op.RegB, size);
                        ulong t = ReadModify(ref op, out ulong ea);
                        ulong r = (t + s) & Mask(size);
                        SetLazy(LazyKind.Add, t, s, r, size);
                        SetReg(op.RegB, size, t);
                        WriteA(ref op, ea, r);
                        break;
                    }
                    case OpKind.Cmpxchg8b:
                    {
                        ulong ea = Ea(ref op);
                        ulong m = LoadForWrite(ea, 8);
                        Materialize();
                        ulong expect = ((ulong)(uint)_r[2] << 32) | (uint)_r[0];
                        if (m == expect)
                        {
                            Store64(ea, ((ulong)(uint)_r[1] << 32) | (uint)_r[3]);
                            _s->Rflags |= ZF;
                        }
                        else
                        {
                            _r[0] = (uint)m;
                            _r[2] = m >> 32;
                            _s->Rflags &= ~ZF;
                        }
                        break;
                    }
                    case OpKind.Cmpxchg16b:
                    {
                        ulong ea = Ea(ref op);
                        if ((ea & 15) != 0)
                        {
                            GuestFault.Misaligned(ea);
                        }
                        ulong lo = LoadForWrite(ea, 8), hi = LoadForWrite(ea + 8, 8);
                        Materialize();
                        if (lo == _r[0] && hi == _r[2])
                        {
                            Store64(ea, _r[3]);
                            Store64(ea + 8, _r[1]);
                            _s->Rflags |= ZF;
                        }
                        else
                        {
                            _r[0] = lo;
                            _r[2] = hi;
                            _s->Rflags &= ~ZF;
                        }
                        break;
                    }
                    case OpKind.Bswap:
                        if (size == 8)
                        {
                            _r[op.RegA] = BinaryPrimitives.ReverseEndianness(_r[op.RegA]);
                        }
                        else if (size == 4)
                        {
                            _r[op.RegA] = BinaryPrimitives.ReverseEndianness((uint)_r[op.RegA]);
                        }
                        else
                        {
                            SetReg(op.RegA, 2, 0);
                        }
                        break;
                    case OpKind.SignExtendAcc:
                        SetReg(0, size, (ulong)LazyFlags.SignExtend(_r[0], size >> 1));
                        break;
                    case OpKind.SignExtendToDx:
                        SetReg(2, size, (GetReg(0, size) & LazyFlags.SignBit(size)) != 0 ? ulong.MaxValue : 0);
                        break;
                    case OpKind.Leave:
                    {
                        ulong v = Load64(_r[5]);
                        _r[4] = _r[5] + 8;
                        _r[5] = v;
                        break;
                    }
                    case OpKind.Cpuid:
                        Cpuid();
                        break;
                    case OpKind.Rdtsc:
                    case OpKind.Rdtscp:
                    {
                        RequireTsc();
                        ulong tsc = Tsc + (ulong)(i - from); // counts the instructions retired earlier in this block
                        _r[0] = (uint)tsc;
                        _r[2] = tsc >> 32;
                        if (op.Kind == OpKind.Rdtscp)
                        {
                            _r[1] = (uint)_sys.TscAux; // IA32_TSC_AUX
                        }
                    }
                        break;
                    case OpKind.Cld: _s->Rflags &= ~DF; break;
                    case OpKind.Std: _s->Rflags |= DF; break;
                    case OpKind.Clc: Materialize(); _s->Rflags &= ~CF; break;
                    case OpKind.Stc: Materialize(); _s->Rflags |= CF; break;
                    case OpKind.Cmc: Materialize(); _s->Rflags ^= CF; break;
                    case OpKind.Lahf:
                        Materialize();
                        SetReg(16, 1, (_s->Rflags & 0xD5) | 2);
                        break;
                    case OpKind.Sahf:
                        Materialize();
                        _s->Rflags = (_s->Rflags & ~0xD5UL) | (GetReg(16, 1) & 0xD5);
                        break;
                    case OpKind.Pushf:
                    {
                        ulong sp = _r[4] - 8;
                        Materialize();
                        Store64(sp, _s->Rflags);
                        _r[4] = sp;
                        break;
                    }
                    case OpKind.Popf:
                    {
                        ulong v = Load64(_r[4]);
                        _r[4] += 8;
                        _s->LazyKind = LazyKind.None;
                        ulong writable = FlagsWritable(_sys.Cpl);
                        _s->Rflags = (_s->Rflags & ~writable) | (v & writable) | 2;
                        break;
                    }
                    case OpKind.Hlt:
                        RequireCpl0("hlt");
                        _s->Rip = op.Next;
                        i++;
                        SetExit(new VcpuExit(VcpuExitKind.Halt, op.Next));
                        goto Done;
                    case OpKind.Out:
                    {
                        // Port writes stop the vCPU; the VMM decides what they mean (the hypercall page's trap among
                        // them). As on KVM, rip stays on the out until the next Run completes it (CompletePendingOut).
                        ulong port = op.B == Loc.Imm ? op.Imm : (ushort)_r[2];
                        CheckIo(port, size);
                        _s->Rip = op.Rip;
                        _outResume = op.Next;
                        i++;
                        ulong data = size switch { 1 => (byte)_r[0], 2 => (ushort)_r[0], _ => (uint)_r[0] };
                        SetExit(new VcpuExit(VcpuExitKind.IoOut, op.Rip, port, Size: (byte)size, Data: data));
                        _s->Icount += (ulong)(i - from);
                        return true;
                    }
                    case OpKind.In:
                    {
                        ulong port = op.B == Loc.Imm ? op.Imm : (ushort)_r[2];
                        CheckIo(port, size);
                        _s->Rip = op.Rip;
                        SetExit(new VcpuExit(VcpuExitKind.IoIn, op.Rip, port, Detail: $"in from port 0x{port:x}", Size: (byte)size));
                        _s->Icount += (ulong)(i - from);
                        return true;
                    }
                    case OpKind.Unsupported:
                        GuestFault.Raise(block.Texts[op.Text]);
                        break;
                    case OpKind.Unimplemented:
                        _s->Rip = op.Rip;
                        SetExit(new VcpuExit(VcpuExitKind.Unimplemented, op.Rip, Detail: block.Texts[op.Text]));
                        _s->Icount += (ulong)(i - from);
                        return true;
                    case >= OpKind.SseArith and <= OpKind.ExtensionLast:
                        ExecuteIsa(ref op);
                        break;
                    case OpKind.Cli: Cli(); break;
                    case OpKind.Sti: Sti(); break;
                    case OpKind.Lgdt: Lgdt(ref op, idt: false); break;
                    case OpKind.Lidt: Lgdt(ref op, idt: true); break;
                    case OpKind.MovFromCr:
                        _r[op.RegA] = ReadControlRegister(op.RegB);
                        break;
                    case OpKind.MovToCr:
                        WriteControlRegister(op.RegA, _r[op.RegB]);
                        break;
                    case >= OpKind.Syscall and <= OpKind.FetchFault:
                        if (ExecuteSystem(ref op, block))
                        {
                            i++;
                            goto Done;
                        }
                        break;
                    default:
                        ExecuteSse(ref op);
                        break;
                }
            }
            if (i < n)
            {
                if (block.Valid)
                {
                    goto Run; // the store dropped another block
                }
                // It dropped this one (the ops are shared and never rewritten): resume at the next instruction, decoded afresh.
                _s->Rip = ops[i].Rip;
                goto Done;
            }
            _s->Rip = ops[n - 1].Next;
        Done:
            _s->Icount += (ulong)(i - from);
            return _exitPending;
        }
        catch (GuestFault fault)
        {
            // A fault: the instruction did not complete (rip stays on it); deliver it or end the run.
            _s->Icount += (ulong)(i - from);
            _s->Rip = ops[i].Rip;
            RaiseFault(fault, _s->Rip);
            return true;
        }
#pragma warning disable CA1031 // a bug in the emulator must stop this guest, not the host process
        catch (Exception bug)
        {
            _s->Icount += (ulong)(i - from);
            _s->Rip = ops[i].Rip;
            SetExit(new VcpuExit(VcpuExitKind.InternalError, _s->Rip, Detail: $"emulator internal error at 0x{_s->Rip:x} ({ops[i].Kind}): {bug.GetType().Name}: {bug.Message}"));
            return true;
        }
#pragma warning restore CA1031
    }

    // ---- multiply / divide ----

    /// <summary>
    /// mul and imul with one operand (unsigned or <paramref name="signed"/>): the accumulator times <paramref name="src"/>
    /// into AX (byte), DX:AX, EDX:EAX or RDX:RAX; CF and OF when the high half is more than the low half's extension.
    /// </summary>
    private void MulAccumulator(ulong src, int size, bool signed)
    {
        bool overflow;
        ulong lo;
        if (size == 8)
        {
            ulong hi;
            if (signed)
            {
                hi = (ulong)Math.BigMul((long)_r[0], (long)src, out long l);
                lo = (ulong)l;
                overflow = (long)hi != (l >> 63);
            }
            else
            {
                hi = Math.BigMul(_r[0], src, out lo);
                overflow = hi != 0;
            }
            _r[0] = lo;
            _r[2] = hi;
        }
        else
        {
            // The whole product fits 64 bits: written as its low and high halves of the operand size.
            ulong a = _r[0] & Mask(size);
            ulong p = signed ? (ulong)(LazyFlags.SignExtend(a, size) * LazyFlags.SignExtend(src, size)) : a * src;
            lo = p & Mask(size);
            overflow = signed ? (long)p != LazyFlags.SignExtend(lo, size) : p > Mask(size);
            if (size == 1)
            {
                SetReg(0, 2, p);
            }
            else
            {
                SetReg(0, size, p);
                SetReg(2, size, p >> (size * 8));
            }
        }
        SetArith(Szp(lo, size) | (overflow ? CF | OF : 0));
    }

    private ulong ImulTrunc(ulong a, ulong b, int size)
    {
        bool overflow;
        ulong r;
        if (size == 8)
        {
            long hi = Math.BigMul((long)a, (long)b, out long l);
            overflow = hi != (l >> 63);
            r = (ulong)l;
        }
        else
        {
            long p = LazyFlags.SignExtend(a, size) * LazyFlags.SignExtend(b, size);
            r = (ulong)p & Mask(size);
            overflow = p != LazyFlags.SignExtend(r, size);
        }
        SetArith(Szp(r, size) | (overflow ? CF | OF : 0));
        return r;
    }

    private void Div(ulong d, int size)
    {
        if (d == 0)
        {
            GuestFault.DivideError();
        }
        switch (size)
        {
            case 1:
            case 2:
            case 4:
            {
                ulong n = NarrowDividend(size);
                ulong q = n / d;
                if (q > Mask(size))
                {
                    GuestFault.DivideError();
                }
                SetReg(0, size, q);
                SetReg(RemainderRegister(size), size, n % d);
                break;
            }
            default:
            {
                if (_r[2] >= d)
                {
                    GuestFault.DivideError();
                }
                UInt128 n = WideDividend();
                _r[0] = (ulong)(n / d);
                _r[2] = (ulong)(n % d);
                break;
            }
        }
    }

    /// <summary>The raw bits of the dividend of a div or idiv by a 1-, 2- or 4-byte divisor: AX, DX:AX or EDX:EAX.</summary>
    private ulong NarrowDividend(int size) => size switch
    {
        1 => (ushort)_r[0],
        2 => ((ulong)(ushort)_r[2] << 16) | (ushort)_r[0],
        _ => ((ulong)(uint)_r[2] << 32) | (uint)_r[0],
    };

    /// <summary>The dividend of a div or idiv by an 8-byte divisor: RDX:RAX.</summary>
    private UInt128 WideDividend() => ((UInt128)_r[2] << 64) | _r[0];

    /// <summary>Where div and idiv leave the remainder: AH for a byte divisor (register 16, see <see cref="SetReg"/>), else rDX.</summary>
    private static int RemainderRegister(int size) => size == 1 ? 16 : 2;

    private void Idiv(ulong dRaw, int size)
    {
        if (dRaw == 0)
        {
            GuestFault.DivideError();
        }
        long d = LazyFlags.SignExtend(dRaw, size);
        switch (size)
        {
            case 1:
            case 2:
            case 4:
            {
                long n = LazyFlags.SignExtend(NarrowDividend(size), 2 * size);
                if (n == long.MinValue && d == -1)
                {
                    GuestFault.DivideError();
                }
                long q = n / d, rem = n % d;
                if (q != LazyFlags.SignExtend((ulong)q & Mask(size), size))
                {
                    GuestFault.DivideError();
                }
                SetReg(0, size, (ulong)q);
                SetReg(RemainderRegister(size), size, (ulong)rem);
                break;
            }
            default:
            {
                Int128 n = (Int128)WideDividend();
                if (d == -1 && n == Int128.MinValue)
                {
                    GuestFault.DivideError(); // the quotient overflows (and would overflow Int128 itself)
                }
                Int128 q = n / d;
                if (q > long.MaxValue || q < long.MinValue)
                {
                    GuestFault.DivideError();
                }
                _r[0] = (ulong)(long)q;
                _r[2] = (ulong)(long)(n % d);
                break;
            }
        }
    }

    // ---- shifts and rotates (count != 0, already masked to 5 or 6 bits) ----

    internal ulong Shift(OpKind kind, ulong a, int count, int size)
    {
        int bits = size << 3;
        ulong m = Mask(size);
        ulong msb = LazyFlags.SignBit(size);
        ulong r;
        switch (kind)
        {
            case OpKind.Shl:
                r = count >= 64 ? 0 : (a << count) & m;
                SetLazy(LazyKind.Shl, a, (ulong)count, r, size);
                return r;
            case OpKind.Shr:
                r = a >> count;
                SetLazy(LazyKind.Shr, a, (ulong)count, r, size);
                return r;
            case OpKind.Sar:
                r = (ulong)(LazyFlags.SignExtend(a, size) >> count) & m;
                SetLazy(LazyKind.Sar, a, (ulong)count, r, size);
                return r;
            case OpKind.Rol:
            {
                int c = count & (bits - 1);
                r = c == 0 ? a : ((a << c) | (a >> (bits - c))) & m;
                ulong cf = r & 1;
                SetRotateFlags(cf | (((r & msb) != 0) ^ (cf != 0) ? OF : 0));
                return r;
            }
            case OpKind.Ror:
            {
                int c = count & (bits - 1);
                r = c == 0 ? a : ((a >> c) | (a << (bits - c))) & m;
                ulong cf = (r & msb) != 0 ? 1UL : 0;
                SetRotateFlags(cf | (((r & msb) != 0) ^ ((r & (msb >> 1)) != 0) ? OF : 0));
                return r;
            }
            default:
                break;
        }
        Materialize();
        ulong f = _s->Rflags & ArithFlags;
        switch (kind)
        {
            case OpKind.Rcl:
            {
                int c = size <= 2 ? count % (bits + 1) : count;
                ulong cf = _s->Rflags & CF;
                r = a;
                for (int k = 0; k < c; k++)
                {
                    ulong out1 = (r & msb) != 0 ? 1UL : 0;
                    r = ((r << 1) | cf) & m;
                    cf = out1;
                }
                f = (f & ~(CF | OF)) | cf | (((r & msb) != 0) ^ (cf != 0) ? OF : 0);
                break;
            }
            default: // Rcr
            {
                int c = size <= 2 ? count % (bits + 1) : count;
                ulong cf = _s->Rflags & CF;
                ulong of = ((a & msb) != 0) ^ (cf != 0) ? OF : 0;
                r = a;
                for (int k = 0; k < c; k++)
                {
                    ulong out1 = r & 1;
                    r = (r >> 1) | (cf << (bits - 1));
                    cf = out1;
                }
                f = (f & ~(CF | OF)) | cf | of;
                break;
            }
        }
        SetArith(f);
        return r;
    }

    /// <summary>For translated inc/dec (which keep CF): folds the current record's CF into RFLAGS, as the interpreter's Inc/Dec do before recording theirs.</summary>
    internal void KeepCarry() => _s->Rflags = (_s->Rflags & ~CF) | Carry();

    /// <summary>Rotates change only CF and OF: keep the other flags lazy and override those two.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetRotateFlags(ulong cfOf)
    {
        if (_s->LazyKind == LazyKind.None)
        {
            _s->Rflags = (_s->Rflags & ~(CF | OF)) | cfOf;
        }
        else
        {
            _s->FlagOverride = true;
            _s->OverrideFlags = cfOf;
        }
    }

    private ulong DoubleShift(bool left, ulong a, ulong b, int count, int size)
    {
        int bits = size << 3;
        ulong m = Mask(size);
        ulong msb = LazyFlags.SignBit(size);
        ulong r, cf;
        if (count > bits)
        {
            // 16-bit operand with a count of 17-31: the result is undefined; use a 32-bit funnel shift of b:a.
            ulong wide = left ? (a << 16) | b : (b << 16) | a;
            r = left ? (wide << count) >> 16 : wide >> (count - 16);
            r &= m;
            cf = left ? (wide >> (32 - count)) & 1 : (wide >> (count - 1)) & 1;
        }
        else if (left)
        {
            r = ((a << count) | (count == 64 ? 0 : b >> (bits - count))) & m;
            cf = (a >> (bits - count)) & 1;
        }
        else
        {
            r = ((a >> count) | (b << (bits - count))) & m;
            cf = (a >> (count - 1)) & 1;
        }
        SetArith(Szp(r, size) | cf | ((((r ^ a) & msb) != 0) ? OF : 0));
        return r;
    }

    private void BitTest(ref MicroOp op, int size)
    {
        int bits = size << 3;
        ulong offset = op.B == Loc.Imm ? op.Imm : GetReg(op.RegB, size);
        ulong a, ea = 0;
        int bit;
        if (op.A == Loc.Reg)
        {
            bit = (int)(offset & (ulong)(bits - 1));
            a = GetReg(op.RegA, size);
        }
        else
        {
            ea = Ea(ref op);
            if (op.B == Loc.Imm)
            {
                bit = (int)(offset & (ulong)(bits - 1));
            }
            else
            {
                long so = LazyFlags.SignExtend(offset, size);
                ea += (ulong)((so >> BitOperations.Log2((uint)bits)) * size);
                bit = (int)(so & (bits - 1));
            }
            a = op.Kind == OpKind.Bt ? Load(ea, size) : LoadForWrite(ea, size);
        }
        ulong mask = 1UL << bit;
        Materialize();
        _s->Rflags = (_s->Rflags & ~CF) | ((a >> bit) & 1);
        ulong r;
        switch (op.Kind)
        {
            case OpKind.Bts: r = a | mask; break;
            case OpKind.Btr: r = a & ~mask; break;
            case OpKind.Btc: r = a ^ mask; break;
            default: return;
        }
        if (op.A == Loc.Reg)
        {
            SetReg(op.RegA, size, r);
        }
        else
        {
            Store(ea, size, r);
        }
    }

    /// <summary>POP to memory: the address uses the incremented rsp, and a faulting store leaves rsp as it was.</summary>
    private void PopToMemory(ref MicroOp op, ulong v)
    {
        ulong old = _r[4];
        _r[4] = old + 8;
        try
        {
            Store(Ea(ref op), 8, v);
        }
        catch (GuestFault)
        {
            _r[4] = old;
            throw;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong LoadForWrite(ulong a, int size)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->WriteTag != ((a + (ulong)size - 1) & ~0xFFFUL))
        {
            return LoadForWriteSlow(a, size);
        }
        return ReadHost((byte*)(e->Addend + (long)a), size);
    }

    /// <summary>Translates [a, a+size) for write (both pages, before anything happens), then reads it.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong LoadForWriteSlow(ulong a, int size)
    {
        byte* lo = TranslateForWrite(a, size, out byte* hi, out int first);
        ulong v = 0;
        var bytes = new Span<byte>(&v, size);
        new ReadOnlySpan<byte>(lo, first).CopyTo(bytes);
        if (hi != null)
        {
            new ReadOnlySpan<byte>(hi, size - first).CopyTo(bytes[first..]);
        }
        return v;
    }

    // ---- cpuid ----

    /// <summary>CPUID from the fixed <see cref="CpuidModel"/>: exactly what the emulator implements.</summary>
    private void Cpuid()
    {
        (uint a, uint b, uint c, uint d) = CpuidModel.Query((uint)_r[0], (uint)_r[1]);
        _r[0] = a;
        _r[3] = b;
        _r[1] = c;
        _r[2] = d;
    }
}
