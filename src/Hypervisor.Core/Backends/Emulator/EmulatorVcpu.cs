using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Iced.Intel;
using Paravirt.Abi;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The emulated vCPU: architectural state (16 GPRs, RIP, RFLAGS, 16 XMM registers), the decoded-block cache with
/// per-page invalidation, the checked memory path and the run loop. Execution lives in
/// <c>EmulatorVcpu.Execute.cs</c>.
/// </summary>
/// <summary>Which ALU op last set the arithmetic flags lazily (<see cref="LazyKind.None"/>: they are in RFLAGS).</summary>
internal enum LazyKind : byte
{
    None,
    Add,
    Sub,
    Logic,
    Inc,
    Dec,
    Shl,
    Shr,
    Sar,
}

[SkipLocalsInit]
internal sealed unsafe partial class EmulatorVcpu : IVcpu
{
    internal const ulong CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, TF = 0x100, IF = 0x200, DF = 0x400, OF = 0x800;
    internal const ulong ArithFlags = CF | PF | AF | ZF | SF | OF;
    /// <summary>RFLAGS bits popfq may change at CPL0 (VM, RF, VIF, VIP stay clear).</summary>
    internal const ulong PopfMask = 0x247FD5;
    private const int MaxBlockInstructions = 256;
    private const int FastCacheSize = 4096;
    /// <summary>Most decoded blocks kept; a guest that makes more (hostile code jumping everywhere) gets the cache flushed, bounding host memory.</summary>
    internal const int MaxCachedBlocks = 65536;

    private readonly GuestMemory _memory;
    private readonly byte* _mem;
    private readonly ulong _size;
    private readonly ulong[] _regArray = GC.AllocateArray<ulong>(20, pinned: true);
    private readonly ulong* _r;
    private readonly Vector128<byte>[] _xmmArray = GC.AllocateArray<Vector128<byte>>(16, pinned: true);
    private readonly Vector128<byte>* _x;
    private readonly byte[] _codePageArray;
    private readonly byte* _codePage;
    private readonly ulong? _budget;

    private ulong _rip;
    /// <summary>Where to resume after the out that ended the last run (0: none pending); see <see cref="CompletePendingOut"/>.</summary>
    private ulong _outResume;
    private ulong _rf = 0x2;
    // Lazy arithmetic flags: the last flag-setting ALU op's kind, operands, result and size (see Materialize).
    private LazyKind _lk;
    private ulong _la, _lb, _lr;
    private int _lsize;
    private bool _ovr;
    private ulong _ovrFlags;
    private ulong _icount;
    private volatile bool _interrupt;

    private readonly Dictionary<ulong, Block> _blocks = [];
    private readonly Dictionary<ulong, List<Block>> _pageBlocks = [];
    private readonly Block?[] _fast = new Block?[FastCacheSize];
    private readonly List<MicroOp> _decodeOps = [];
    private readonly List<string> _decodeTexts = [];
    private VcpuExit _exit;
    /// <summary>Control registers as the guest sees them: the long-mode values the hardware backends load; writes are kept but have no effect.</summary>
    private readonly ulong[] _cr = new ulong[16];
    private (ulong Base, ulong Limit) _gdtr, _idtr;
    /// <summary>System MSRs as last loaded (kept and reported; the emulator has no SYSCALL yet, so they change nothing).</summary>
    private (ulong Star, ulong Lstar, ulong Cstar, ulong Sfmask, ulong KernelGsBase, ulong TscAux) _msrs;
    private ulong _efer = LongModeSetup.Efer;

    /// <summary>GDTR as last loaded (for tests and diagnostics).</summary>
    internal (ulong Base, ulong Limit) Gdtr => _gdtr;

    /// <summary>IDTR as last loaded (for tests and diagnostics).</summary>
    internal (ulong Base, ulong Limit) Idtr => _idtr;
    private bool _disposed;
    private int _jitThreshold = BlockCompiler.Enabled ? BlockCompiler.Threshold : 0;

    /// <summary>Whole-block runs after which a block is translated to IL; 0 = never (for tests and diagnostics).</summary>
    internal int JitThreshold
    {
        get => _jitThreshold;
        set => _jitThreshold = BlockCompiler.Enabled ? value : 0;
    }

    public EmulatorVcpu(GuestMemory memory, VirtualMachineOptions options, in VcpuStartState start)
    {
        _memory = memory;
        _mem = (byte*)memory.HostAddress;
        _size = memory.Size;
        _budget = options.InstructionBudget;
        // Safe: the arrays are pinned for the lifetime of this object (GC.AllocateArray pinned: true).
        _r = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_regArray));
        _x = (Vector128<byte>*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_xmmArray));
        _codePageArray = GC.AllocateArray<byte>((int)((_size + 0xFFF) >> 12) + 1, pinned: true);
        _codePage = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_codePageArray));
        _rip = start.Rip;
        _r[4] = start.Rsp;
        _r[7] = start.Rdi;
        _cr[0] = LongModeSetup.Cr0;
        _cr[3] = GuestLayout.Pml4;
        _cr[4] = LongModeSetup.Cr4;
        _gdtr = (GuestLayout.Gdt, (ulong)(LongModeSetup.GdtEntries.Length * 8) - 1);
        _idtr = (start.Idt.Base, start.Idt.Limit); // kept and reported; exceptions still end the run directly
    }

    public ulong? InstructionsRetired => _icount;

    /// <summary>The exact count, for the emulator's own tests.</summary>
    internal ulong Retired => _icount;

    // ---- IVcpu ----

    public VcpuExit Run()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_memory.HostAddress != (nint)_mem)
        {
            // Throws ObjectDisposedException when the memory was disposed under the vCPU; never run on freed memory.
            throw new InvalidOperationException("guest memory changed under the vCPU");
        }
        bool outCompleted = _outResume != 0;
        CompletePendingOut();
        if (outCompleted && _singleStep)
        {
            return new VcpuExit(VcpuExitKind.Debug, _rip, DebugReason: DebugStopReason.SingleStep); // the stepped out is done
        }
        while (true)
        {
            if (_interrupt)
            {
                _interrupt = false;
                return new VcpuExit(VcpuExitKind.Interrupted, _rip);
            }
            ulong left = ulong.MaxValue;
            if (_budget is ulong budget)
            {
                if (_icount >= budget)
                {
                    return new VcpuExit(VcpuExitKind.BudgetExhausted, _rip, Detail: $"instruction budget of {budget} used");
                }
                left = budget - _icount;
            }
            bool oneAtATime = false;
            if (_debugActive)
            {
                if (IsBreakpoint(_rip))
                {
                    return new VcpuExit(VcpuExitKind.Debug, _rip, DebugReason: DebugStopReason.Breakpoint);
                }
                oneAtATime = DebugOneAtATime;
            }
            Block block = GetBlock(_rip);
            int n = block.Ops.Length;
            if ((ulong)n > left)
            {
                n = (int)left;
            }
            if (oneAtATime)
            {
                n = 1;
            }
            int start = 0;
            if (n == block.Ops.Length)
            {
                if (block.Compiled is { } compiled)
                {
                    try
                    {
                        // Safe: the translated block bounds-checks every access against _size itself.
                        start = compiled(this, _r, _mem, block);
                    }
#pragma warning disable CA1031 // a bug in translated code must stop this guest, not the host process
                    catch (Exception bug)
                    {
                        return new VcpuExit(VcpuExitKind.InternalError, _rip, Detail: $"emulator internal error in translated block 0x{block.Start:x}: {bug.GetType().Name}: {bug.Message}");
                    }
#pragma warning restore CA1031
                    if (start == BlockCompiler.Completed)
                    {
                        continue;
                    }
                    if (start == BlockCompiler.ExitRequested)
                    {
                        return _exit;
                    }
                }
                else if (++block.Hits == _jitThreshold)
                {
                    block.Compiled = BlockCompiler.TryCompile(block);
                    BlocksCompiled += block.Compiled is null ? 0 : 1;
                }
            }
            if (ExecuteBlock(block, start, n))
            {
                return _exit;
            }
            if (oneAtATime && DebugAfterInstruction(out VcpuExit debugExit))
            {
                return debugExit;
            }
        }
    }

    /// <summary>
    /// Finishes the out instruction the last run stopped at: rip moves past it. Runs at the start of the next run and
    /// before <see cref="GetState"/>, so a state taken at a port exit never repeats the out (KVM's semantics).
    /// </summary>
    private void CompletePendingOut()
    {
        if (_outResume != 0)
        {
            _rip = _outResume;
            _outResume = 0;
        }
    }

    public VcpuRegisters GetRegisters()
    {
        Materialize();
        return Snapshot();
    }

    private VcpuRegisters Snapshot() => new(
        _r[0], _r[3], _r[1], _r[2], _r[6], _r[7], _r[4], _r[5],
        _r[8], _r[9], _r[10], _r[11], _r[12], _r[13], _r[14], _r[15], _rip, _rf);

    public void SetRegisters(in VcpuRegisters registers)
    {
        _r[0] = registers.Rax; _r[1] = registers.Rcx; _r[2] = registers.Rdx; _r[3] = registers.Rbx;
        _r[4] = registers.Rsp; _r[5] = registers.Rbp; _r[6] = registers.Rsi; _r[7] = registers.Rdi;
        _r[8] = registers.R8; _r[9] = registers.R9; _r[10] = registers.R10; _r[11] = registers.R11;
        _r[12] = registers.R12; _r[13] = registers.R13; _r[14] = registers.R14; _r[15] = registers.R15;
        if (registers.Rip != _rip)
        {
            _outResume = 0; // the VMM moved rip: the out is abandoned, not completed
        }
        _rip = registers.Rip;
        _lk = LazyKind.None;
        _rf = (registers.Rflags & PopfMask) | 2;
    }

    public VcpuState GetState()
    {
        CompletePendingOut();
        VcpuState state = LongModeSetup.State.ToVcpuState(default);
        state.Registers = GetRegisters();
        state.Cr0 = _cr[0];
        state.Cr2 = _cr[2];
        state.Cr3 = _cr[3];
        state.Cr4 = _cr[4];
        state.Cr8 = _cr[8];
        state.Gdtr = new DescriptorTableRegister(_gdtr.Base, (ushort)_gdtr.Limit);
        state.Idtr = new DescriptorTableRegister(_idtr.Base, (ushort)_idtr.Limit);
        (state.Star, state.Lstar, state.Cstar, state.Sfmask, state.KernelGsBase, state.TscAux) = _msrs;
        state.Efer = _efer;
        state.Tsc = _icount;
        for (int i = 0; i < 16; i++)
        {
            _x[i].CopyTo(state.Xmm(i));
        }
        return state;
    }

    public void SetState(VcpuState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        _outResume = 0;
        SetRegisters(state.Registers);
        _cr[0] = state.Cr0;
        _cr[2] = state.Cr2;
        _cr[3] = state.Cr3;
        _cr[4] = state.Cr4;
        _cr[8] = state.Cr8;
        _gdtr = (state.Gdtr.Base, state.Gdtr.Limit);
        _idtr = (state.Idtr.Base, state.Idtr.Limit);
        _msrs = (state.Star, state.Lstar, state.Cstar, state.Sfmask, state.KernelGsBase, state.TscAux);
        _efer = state.Efer;
        for (int i = 0; i < 16; i++)
        {
            _x[i] = Vector128.Create(state.Xmm(i));
        }
    }

    public void Interrupt() => _interrupt = true;

    public void Dispose()
    {
        _disposed = true;
        _blocks.Clear();
        _pageBlocks.Clear();
        Array.Clear(_fast);
    }

    /// <summary>For tests: forgets all decoded code and state and starts again at <paramref name="start"/> (the host rewrote guest code).</summary>
    internal void Reset(in VcpuStartState start)
    {
        _blocks.Clear();
        _pageBlocks.Clear();
        Array.Clear(_fast);
        Array.Clear(_codePageArray);
        Array.Clear(_regArray);
        Array.Clear(_xmmArray);
        _rip = start.Rip;
        _r[4] = start.Rsp;
        _r[7] = start.Rdi;
        _rf = 2;
        _lk = LazyKind.None;
        _icount = 0;
        _ovr = false;
        _interrupt = false;
        _outResume = 0;
    }

    /// <summary>For tests: sets a general-purpose register (0 = rax ... 15 = r15).</summary>
    internal void SetRegister(int index, ulong value) => _r[index & 15] = value;

    /// <summary>For tests: sets RFLAGS (bit 1 is forced on).</summary>
    internal void SetFlags(ulong value)
    {
        _lk = LazyKind.None;
        _rf = (value & PopfMask) | 2;
    }

    /// <summary>For tests: an XMM register.</summary>
    internal Vector128<byte> GetXmm(int index) => _x[index & 15];

    /// <summary>For tests: sets an XMM register.</summary>
    internal void SetXmm(int index, Vector128<byte> value) => _x[index & 15] = value;

    // ---- block cache ----

    private Block GetBlock(ulong rip)
    {
        int slot = (int)((rip ^ (rip >> 12)) & (FastCacheSize - 1));
        Block? b = _fast[slot];
        if (b is not null && b.Start == rip && b.Valid)
        {
            return b;
        }
        if (!_blocks.TryGetValue(rip, out b))
        {
            if (_blocks.Count >= MaxCachedBlocks)
            {
                FlushBlocks();
            }
            b = Decode(rip);
            BlocksDecoded++;
            _blocks[rip] = b;
            if (b.End > b.Start)
            {
                for (ulong page = b.Start >> 12; page <= (b.End - 1) >> 12 && page < (_size >> 12); page++)
                {
                    _codePage[page] |= CodePageFlag;
                    if (!_pageBlocks.TryGetValue(page, out List<Block>? list))
                    {
                        list = [];
                        _pageBlocks[page] = list;
                    }
                    list.Add(b);
                }
            }
        }
        _fast[slot] = b;
        return b;
    }

    /// <summary>Number of decoded blocks in the cache (for tests).</summary>
    internal int CachedBlocks => _blocks.Count;

    /// <summary>Drops every decoded block (between blocks: none is running).</summary>
    private void FlushBlocks()
    {
        foreach (Block old in _blocks.Values)
        {
            old.Valid = false;
        }
        _blocks.Clear();
        _pageBlocks.Clear();
        Array.Clear(_fast);
        Array.Clear(_codePageArray);
        RestoreWatchFlags();
    }

    private Block Decode(ulong rip)
    {
        _decodeOps.Clear();
        _decodeTexts.Clear();
        var reader = new GuestCodeReader(_mem, _size, rip);
        var decoder = Decoder.Create(64, reader, rip, DecoderOptions.None);
        ulong end = rip;
        while (_decodeOps.Count < MaxBlockInstructions)
        {
            decoder.Decode(out Instruction ins);
            if (_decodeOps.Count > 0 && IsBreakpoint(ins.IP))
            {
                break; // the block ends before a breakpoint: the run loop stops there
            }
            var op = default(MicroOp);
            if (ins.IsInvalid)
            {
                string text = decoder.LastError == DecoderError.NoMoreBytes
                    ? $"page fault: instruction fetch at 0x{ins.IP:x} outside guest memory"
                    : $"invalid opcode (#UD) at 0x{ins.IP:x}";
                if (ins.IP < _size)
                {
                    end = Math.Min(ins.IP + 15, _size); // cover the bad bytes: rewriting them must drop this block
                }
                AddUnsupported(ref op, ins.IP, text);
                break;
            }
            end = ins.NextIP;
            if (ins.Mnemonic is Mnemonic.Ud0 or Mnemonic.Ud1 or Mnemonic.Ud2)
            {
                AddUnsupported(ref op, ins.IP, $"invalid opcode (#UD): '{Format(in ins)}' at 0x{ins.IP:x}");
                break;
            }
            if (!Translator.Translate(in ins, ref op))
            {
                op = default;
                AddUnsupported(ref op, ins.IP, $"the emulator does not implement '{Format(in ins)}' at 0x{ins.IP:x}", OpKind.Unimplemented);
                break;
            }
            _decodeOps.Add(op);
            if (EndsBlock(op.Kind))
            {
                break;
            }
        }
        return new Block(rip, end, [.. _decodeOps], [.. _decodeTexts]);
    }

    private void AddUnsupported(ref MicroOp op, ulong ip, string text, OpKind kind = OpKind.Unsupported)
    {
        op.Kind = kind;
        op.Rip = ip;
        op.Next = ip;
        op.Text = _decodeTexts.Count;
        _decodeTexts.Add(text);
        _decodeOps.Add(op);
    }

    private static string Format(in Instruction ins)
    {
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        formatter.Format(in ins, output);
        return output.ToStringAndReset();
    }

    private static bool EndsBlock(OpKind k) => k is OpKind.Jcc or OpKind.Jmp or OpKind.JmpInd or OpKind.Call
        or OpKind.CallInd or OpKind.Ret or OpKind.Loop or OpKind.Loope or OpKind.Loopne or OpKind.Jrcxz
        or OpKind.Hlt or OpKind.Out or OpKind.In or OpKind.Unsupported or OpKind.Unimplemented;

    /// <summary>
    /// A guest store touched a page holding decoded code: drop the blocks whose bytes it overlaps (self-modifying
    /// code). Stores to data that merely shares a page with code leave the blocks alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void InvalidateCode(ulong address, int size)
    {
        ulong end = address + (ulong)size;
        for (ulong page = address >> 12; page <= (end - 1) >> 12; page++)
        {
            if (!_pageBlocks.TryGetValue(page, out List<Block>? list))
            {
                _codePage[page] &= WatchPageFlag; // no code left on the page; a watchpoint stays
                continue;
            }
            for (int k = list.Count - 1; k >= 0; k--)
            {
                Block b = list[k];
                if (b.Valid && (b.Start >= end || b.End <= address))
                {
                    continue; // no overlap
                }
                list.RemoveAt(k);
                if (!b.Valid)
                {
                    continue; // dropped earlier through another page
                }
                b.Valid = false;
                // The block may be running: make every op of it leave the block, so that execution resumes at the
                // next instruction decoded from the modified memory. A dropped block never runs again.
                foreach (ref MicroOp op in b.Ops.AsSpan())
                {
                    op.Kind = OpKind.SmcExit;
                }
                if (_blocks.TryGetValue(b.Start, out Block? cur) && ReferenceEquals(cur, b))
                {
                    _blocks.Remove(b.Start);
                }
            }
            if (list.Count == 0)
            {
                _pageBlocks.Remove(page);
                _codePage[page] &= WatchPageFlag; // no code left on the page; a watchpoint stays
            }
        }
    }

    /// <summary>Blocks translated to IL so far (for tests).</summary>
    internal int BlocksCompiled { get; private set; }

    /// <summary>Blocks decoded so far (for tests).</summary>
    internal int BlocksDecoded { get; private set; }

    // ---- checked memory path ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Load(ulong a, int size)
    {
        if (a > _size - (ulong)size)
        {
            GuestFault.PageFault(a, size, write: false);
        }
        byte* p = _mem + a;
        return size switch
        {
            1 => *p,
            2 => Unsafe.ReadUnaligned<ushort>(p),
            4 => Unsafe.ReadUnaligned<uint>(p),
            _ => Unsafe.ReadUnaligned<ulong>(p),
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Load64(ulong a)
    {
        if (a > _size - 8)
        {
            GuestFault.PageFault(a, 8, write: false);
        }
        return Unsafe.ReadUnaligned<ulong>(_mem + a);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Store(ulong a, int size, ulong v)
    {
        if (a > _size - (ulong)size)
        {
            GuestFault.PageFault(a, size, write: true);
        }
        if ((_codePage[a >> 12] | _codePage[(a + (ulong)size - 1) >> 12]) != 0)
        {
            OnFlaggedStore(a, size);
        }
        byte* p = _mem + a;
        switch (size)
        {
            case 1: *p = (byte)v; break;
            case 2: Unsafe.WriteUnaligned(p, (ushort)v); break;
            case 4: Unsafe.WriteUnaligned(p, (uint)v); break;
            default: Unsafe.WriteUnaligned(p, v); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Store64(ulong a, ulong v)
    {
        if (a > _size - 8)
        {
            GuestFault.PageFault(a, 8, write: true);
        }
        if ((_codePage[a >> 12] | _codePage[(a + 7) >> 12]) != 0)
        {
            OnFlaggedStore(a, 8);
        }
        Unsafe.WriteUnaligned(_mem + a, v);
    }

    private Vector128<byte> Load128(ulong a, bool aligned)
    {
        if (aligned && (a & 15) != 0)
        {
            GuestFault.Misaligned(a);
        }
        if (a > _size - 16)
        {
            GuestFault.PageFault(a, 16, write: false);
        }
        return Unsafe.ReadUnaligned<Vector128<byte>>(_mem + a);
    }

    private void Store128(ulong a, Vector128<byte> v, bool aligned)
    {
        if (aligned && (a & 15) != 0)
        {
            GuestFault.Misaligned(a);
        }
        if (a > _size - 16)
        {
            GuestFault.PageFault(a, 16, write: true);
        }
        if ((_codePage[a >> 12] | _codePage[(a + 15) >> 12]) != 0)
        {
            OnFlaggedStore(a, 16);
        }
        Unsafe.WriteUnaligned(_mem + a, v);
    }

    /// <summary>Reads guest code for Iced; returns -1 past the end of guest memory.</summary>
    private sealed class GuestCodeReader : CodeReader
    {
        private readonly byte* _mem;
        private readonly ulong _size;
        private ulong _pos;

        public GuestCodeReader(byte* mem, ulong size, ulong pos)
        {
            _mem = mem;
            _size = size;
            _pos = pos;
        }

        public override int ReadByte() => _pos < _size ? _mem[_pos++] : -1;
    }
}
