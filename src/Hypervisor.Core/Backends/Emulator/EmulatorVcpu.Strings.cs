namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// String instructions (movs, stos, lods, cmps, scas; 64-bit addressing). A <c>rep</c> form counts one instruction
/// per iteration (one for a zero count), runs at most <see cref="RepChunk"/> iterations (and never past the budget)
/// per dispatch, then yields with rip still on it and rcx/rsi/rdi holding its progress, exactly as a hardware rep
/// is interrupted; the dispatcher checks for kicks, interrupts and the budget and resumes it. Forward copies and
/// fills move whole page runs at a time through host pointers (after translation and code invalidation).
/// </summary>
internal sealed unsafe partial class EmulatorVcpu
{
    /// <summary>Executes a string instruction without a rep prefix (counted as one instruction by the caller).</summary>
    private void StringOnce(ref MicroOp op)
    {
        int s = op.Size;
        bool down = (_s->Rflags & DF) != 0;
        switch (op.Kind)
        {
            case OpKind.Movs:
                Store(_r[7], s, Load(_r[6], s));
                Advance(6, s, down);
                Advance(7, s, down);
                break;
            case OpKind.Stos:
                Store(_r[7], s, GetReg(0, s));
                Advance(7, s, down);
                break;
            case OpKind.Lods:
                SetReg(0, s, Load(_r[6], s));
                Advance(6, s, down);
                break;
            default:
                CompareOnce(op.Kind == OpKind.Cmps, s, down);
                break;
        }
    }

    /// <summary>
    /// Runs a rep string instruction for at most <paramref name="allowed"/> iterations (capped at
    /// <see cref="RepChunk"/>; one under TF, which traps after each iteration), adding each to the retired count.
    /// Returns true when it finished (rcx reached 0, or the repe/repne condition ended it), false when it yielded.
    /// </summary>
    private bool RepString(ref MicroOp op, ulong allowed)
    {
        if (_r[1] == 0)
        {
            _s->Icount++;
            return true;
        }
        allowed = (_s->Rflags & TF) != 0 ? 1 : Math.Min(allowed, RepChunk);
        int s = op.Size;
        bool down = (_s->Rflags & DF) != 0;
        return op.Kind switch
        {
            OpKind.Movs => RepMovs(s, down, allowed),
            OpKind.Stos => RepStosLods(store: true, s, down, allowed),
            OpKind.Lods => RepStosLods(store: false, s, down, allowed),
            _ => RepCompare(op.Kind == OpKind.Cmps, op.Rep == 1, s, down, allowed),
        };
    }

    // rep movs, stos and lods move whole runs of elements that stay within a page (forward only) through host
    // pointers, and an element that straddles a page, or any element of a backward (DF) string, one at a time.

    /// <summary>How many of the <paramref name="n"/> next elements of size <paramref name="s"/> at <paramref name="addr"/> lie within its page (0 going down, or when the first straddles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong RunInPage(ulong addr, int s, bool down, ulong n) =>
        down ? 0 : Math.Min(n, (0x1000 - (addr & 0xFFF)) / (ulong)s);

    /// <summary>Counts <paramref name="k"/> elements as done: rcx, the instruction count and this chunk's tally.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Retire(ulong k, ref ulong done)
    {
        _r[1] -= k;
        _s->Icount += k;
        done += k;
    }

    private bool RepMovs(int s, bool down, ulong allowed)
    {
        ulong done = 0;
        while (done < allowed && _r[1] != 0)
        {
            ulong n = Math.Min(allowed - done, _r[1]);
            ulong src = _r[6], dst = _r[7];
            ulong k = Math.Min(RunInPage(src, s, down, n), RunInPage(dst, s, down, n));
            if (k > 0)
            {
                ulong bytes = k * (ulong)s;
                byte* ps = TranslateRun(src, bytes, MemoryAccess.Read);
                byte* pd = TranslateRun(dst, bytes, MemoryAccess.Write);
                if (pd > ps && pd < ps + bytes)
                {
                    // The destination overlaps the source ahead of it: copy element by element, as the CPU does.
                    for (ulong j = 0; j < bytes; j += (ulong)s)
                    {
                        CopyElement(ps + j, pd + j, s);
                    }
                }
                else
                {
                    Buffer.MemoryCopy(ps, pd, bytes, bytes);
                }
                _r[6] = src + bytes;
                _r[7] = dst + bytes;
            }
            else
            {
                Store(dst, s, Load(src, s));
                Advance(6, s, down);
                Advance(7, s, down);
                k = 1;
            }
            Retire(k, ref done);
        }
        return _r[1] == 0;
    }

    /// <summary>
    /// rep stos (<paramref name="store"/>: the accumulator to [rdi]) and rep lods (from [rsi] to the accumulator, of
    /// which only the last element stays): one string pointer, one loop.
    /// </summary>
    private bool RepStosLods(bool store, int s, bool down, ulong allowed)
    {
        int reg = store ? 7 : 6;
        ulong v = store ? GetReg(0, s) : 0;
        ulong done = 0;
        while (done < allowed && _r[1] != 0)
        {
            ulong addr = _r[reg];
            ulong k = RunInPage(addr, s, down, Math.Min(allowed - done, _r[1]));
            if (k > 0)
            {
                byte* p = TranslateRun(addr, k * (ulong)s, store ? MemoryAccess.Write : MemoryAccess.Read);
                if (store)
                {
                    Fill(p, k, s, v);
                }
                else
                {
                    SetReg(0, s, ReadHost(p + ((k - 1) * (ulong)s), s));
                }
                _r[reg] = addr + (k * (ulong)s);
            }
            else
            {
                if (store)
                {
                    Store(addr, s, v);
                }
                else
                {
                    SetReg(0, s, Load(addr, s));
                }
                Advance(reg, s, down);
                k = 1;
            }
            Retire(k, ref done);
        }
        return _r[1] == 0;
    }

    /// <summary>Writes <paramref name="k"/> elements of size <paramref name="s"/> holding <paramref name="v"/> at host <paramref name="p"/>.</summary>
    private static void Fill(byte* p, ulong k, int s, ulong v)
    {
        switch (s)
        {
            case 1: new Span<byte>(p, (int)k).Fill((byte)v); break;
            case 2: new Span<ushort>(p, (int)k).Fill((ushort)v); break;
            case 4: new Span<uint>(p, (int)k).Fill((uint)v); break;
            default: new Span<ulong>(p, (int)k).Fill(v); break;
        }
    }

    private bool RepCompare(bool cmps, bool repe, int s, bool down, ulong allowed)
    {
        for (ulong done = 0; done < allowed; done++)
        {
            CompareOnce(cmps, s, down);
            _s->Icount++;
            if (--_r[1] == 0)
            {
                return true;
            }
            bool zf = (_s->Rflags & ZF) != 0;
            if (repe ? !zf : zf)
            {
                return true;
            }
        }
        return false;
    }

    private void CompareOnce(bool cmps, int s, bool down)
    {
        ulong a, b;
        if (cmps)
        {
            a = Load(_r[6], s);
            b = Load(_r[7], s);
        }
        else
        {
            a = GetReg(0, s);
            b = Load(_r[7], s);
        }
        if (cmps)
        {
            Advance(6, s, down);
        }
        Advance(7, s, down);
        ulong r = (a - b) & Mask(s);
        SetArith(SubFlags(a, b, r, s, a < b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyElement(byte* from, byte* to, int s)
    {
        switch (s)
        {
            case 1: *to = *from; break;
            case 2: Unsafe.WriteUnaligned(to, Unsafe.ReadUnaligned<ushort>(from)); break;
            case 4: Unsafe.WriteUnaligned(to, Unsafe.ReadUnaligned<uint>(from)); break;
            default: Unsafe.WriteUnaligned(to, Unsafe.ReadUnaligned<ulong>(from)); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Advance(int reg, int s, bool down) => _r[reg] = down ? _r[reg] - (ulong)s : _r[reg] + (ulong)s;
}
