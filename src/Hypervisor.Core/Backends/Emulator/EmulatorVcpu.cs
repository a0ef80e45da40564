using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Iced.Intel;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The emulated vCPU: the general-purpose and XMM registers, RIP and RFLAGS, the run loop (dispatch, budget,
/// interrupts, single step), the memory access path through the software TLB, and instruction fetch through the
/// code cache. The system state lives in <see cref="SystemRegisters"/>, paging in <see cref="Mmu"/>, decoded code in
/// <see cref="CodeCache"/>, IDT delivery in <see cref="ExceptionDelivery"/>, the x87/MXCSR state in
/// <see cref="Semantics.FpuState"/>. Execution lives in <c>EmulatorVcpu.Execute.cs</c>, <c>EmulatorVcpu.Strings.cs</c>,
/// <c>EmulatorVcpu.Sse.cs</c>, <c>EmulatorVcpu.Isa.cs</c>, <c>EmulatorVcpu.X87.cs</c> and <c>EmulatorVcpu.System.cs</c>.
/// </summary>
[SkipLocalsInit]
internal sealed unsafe partial class EmulatorVcpu : IVcpu, IGeneralRegisters, IGuestMemoryWriteObserver
{
    internal const ulong CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, TF = 0x100, IF = 0x200, DF = 0x400, OF = 0x800,
        IOPL = 0x3000, NT = 0x4000, RF = 0x1_0000, VM = 0x2_0000, AC = 0x4_0000, VIF = 0x8_0000, VIP = 0x10_0000, ID = 0x20_0000;
    internal const ulong ArithFlags = CF | PF | AF | ZF | SF | OF;
    /// <summary>RFLAGS bits popfq may change at CPL0 (VM, RF, VIF, VIP stay clear).</summary>
    internal const ulong PopfMask = 0x247FD5;
    private const int MaxBlockInstructions = 256;

    /// <summary>
    /// Most iterations a <c>rep</c> string instruction runs before it yields to the dispatcher, which then checks for
    /// interrupts, timeouts and the budget and resumes it (rcx, rsi, rdi hold its progress, as after a hardware
    /// interrupt): bounds the time an interrupt waits to one chunk (well under a millisecond).
    /// </summary>
    internal const ulong RepChunk = 65536;

    /// <summary>Bits of the attention word (<see cref="CpuState.Attention"/>); <see cref="AttentionDebug"/> is not work to do but a state: a debugger has breakpoints, watchpoints or stepping set.</summary>
    private const int AttentionKick = 1, AttentionHostWrite = 2, AttentionIrq = 4, AttentionDirtyCleared = 8, AttentionDebug = 16;

    private readonly GuestMemory _memory;
    private readonly byte* _mem;
    private readonly ulong _size;
    /// <summary>The run state (registers, RIP, RFLAGS and lazy flags, count, budget, attention, TLB): one pinned struct that translated code addresses by offset.</summary>
    private readonly CpuState[] _stateArray = GC.AllocateArray<CpuState>(1, pinned: true);
    private readonly CpuState* _s;
    /// <summary>The general-purpose registers (<c>_s-&gt;R</c>).</summary>
    private readonly ulong* _r;
    /// <summary>The XMM registers (<c>_s-&gt;Xmm</c>).</summary>
    private readonly Vector128<byte>* _x;
    /// <summary>The budget as last given (for the exit's message).</summary>
    private ulong? _budget;

    private readonly SystemRegisters _sys = new();
    private readonly CodeCache _code;
    private readonly Mmu _mmu;
    private readonly ExceptionDelivery _delivery;
    /// <summary>Where to resume after the out that ended the last run (0: none pending); see <see cref="CompletePendingOut"/>.</summary>
    private ulong _outResume;
    private long _tscOffset;

    /// <summary>External interrupts requested and not yet delivered, one bit per vector.</summary>
    private readonly ulong[] _pendingIrq = new ulong[4];
    /// <summary>The next instruction runs with interrupts inhibited (after STI, MOV SS, POP SS).</summary>
    private bool _shadow;
    /// <summary>Events (exceptions, interrupts) delivered so far: tells the single-step logic whether an instruction completed normally.</summary>
    private ulong _deliveries;

    private readonly List<MicroOp> _decodeOps = [];
    private readonly List<string> _decodeTexts = [];
    private VcpuExit _exit;
    /// <summary>True when <see cref="_exit"/> holds an exit <see cref="Run"/> must return.</summary>
    private bool _exitPending;
    /// <summary>The interpreter's loop bound (<see cref="ExecuteBlock"/>): 0 once a block was dropped under it.</summary>
    private int _runLimit;

    private bool _disposed;
    /// <summary>This VM's scope in <see cref="SharedDecodeCache.Process"/> (<see cref="VirtualMachineOptions.CodeShareKey"/>), or 0: decodes alone.</summary>
    private readonly long _shareScope;
    private int _jitThreshold = BlockCompiler.Enabled ? BlockCompiler.Threshold : 0;

    /// <summary>Whole-block runs after which a block is translated to IL; 0 = never (for tests and diagnostics).</summary>
    internal int JitThreshold
    {
        get => _jitThreshold;
        set => _jitThreshold = BlockCompiler.Enabled ? value : 0;
    }

    /// <summary>Where linked successors of translated blocks are followed (for tests and A/B measurements; blocks translated before a change keep the mode they were made with).</summary>
    internal BlockCompiler.ChainMode Chaining { get; set; } = BlockCompiler.DefaultChaining;

    /// <summary>Translated blocks one dispatch may chain through (for tests: a huge limit proves that each link checks the attention word itself).</summary>
    internal int ChainLimit { get; set; } = BlockCompiler.DefaultChainLimit;

    /// <summary>A translated block left through a chainable exit that was not followed: link it to the block the dispatcher finds next (see <see cref="LinkPending"/>).</summary>
    private Block? _linkFrom;
    /// <summary>Written by translated code when it returns a <see cref="BlockCompiler.ChainExit"/> code: the block that left (the last of a chain, not necessarily the one the dispatcher entered).</summary>
    internal Block? ChainExitBlock;
    private BlockCompiler.LinkSlot _linkSlot;
    private ulong _linkRip, _linkEpoch;

    /// <summary>Creates a vCPU in <paramref name="initial"/> (the state every backend starts from: <c>LongModeSetup.Write(memory).ToVcpuState(start)</c>).</summary>
    public EmulatorVcpu(GuestMemory memory, VirtualMachineOptions options, VcpuState initial)
    {
        _memory = memory;
        _mem = (byte*)memory.TrackedHostAddress; // every store marks the dirty page map (Mmu, TLB write tags)
        _size = memory.Size;
        _budget = options.InstructionBudget;
        _shareScope = options.CodeShareKey is { } key ? SharedDecodeCache.Process.ScopeOf(key) : 0;
        // Safe: the array is pinned for the lifetime of this object.
        _s = (CpuState*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_stateArray));
        _r = _s->R;
        _x = (Vector128<byte>*)Unsafe.AsPointer(ref _s->Xmm[0]);
        _s->Rflags = 0x2;
        _s->BudgetLimit = options.InstructionBudget ?? ulong.MaxValue;
        _code = new CodeCache(_size, page => _mmu!.RevokeWrite(page), () => Interlocked.Or(ref _s->Attention, AttentionHostWrite), BlockDropped);
        _mmu = new Mmu(_mem, _size, _sys, _code, memory.DirtyPagePointer, options.GuardPages);
        _delivery = new ExceptionDelivery(_sys, _mmu);
        SetState(initial);
        memory.AddWriteObserver(this);
    }

    public ulong? InstructionsRetired => _s->Icount;

    /// <summary>The exact count, for the emulator's own tests.</summary>
    internal ulong Retired => _s->Icount;

    /// <summary>The system registers (for tests and diagnostics).</summary>
    internal SystemRegisters SystemState => _sys;

    /// <summary>GDTR as last loaded (for tests and diagnostics).</summary>
    internal (ulong Base, ulong Limit) Gdtr => (_sys.Gdtr.Base, _sys.Gdtr.Limit);

    /// <summary>IDTR as last loaded (for tests and diagnostics).</summary>
    internal (ulong Base, ulong Limit) Idtr => (_sys.Idtr.Base, _sys.Idtr.Limit);

    /// <summary>The decoded-block cache (for tests and diagnostics).</summary>
    internal CodeCache Code => _code;

    // ---- IVcpu ----

    public VcpuExit Run()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_memory.TrackedHostAddress != (nint)_mem)
        {
            // Throws ObjectDisposedException when the memory was disposed under the vCPU; never run on freed memory.
            throw new InvalidOperationException("guest memory changed under the vCPU");
        }
        bool outCompleted = _outResume != 0;
        CompletePendingOut();
        if (outCompleted && _singleStep)
        {
            return new VcpuExit(VcpuExitKind.Debug, _s->Rip, DebugReason: DebugStopReason.SingleStep); // the stepped out is done
        }
        while (true)
        {
            bool step = false, debugOne = false;
            if ((Volatile.Read(ref _s->Attention) | (int)(_s->Rflags & TF) | (_shadow ? 1 : 0)) != 0)
            {
                if (Service())
                {
                    return TakeExit();
                }
                step = _shadow || (_s->Rflags & TF) != 0;
                if ((Volatile.Read(ref _s->Attention) & AttentionDebug) != 0)
                {
                    // A debugger is attached (the bit stays set while it has anything set): this slow path runs before every block.
                    if (IsBreakpoint(_s->Rip))
                    {
                        return new VcpuExit(VcpuExitKind.Debug, _s->Rip, DebugReason: DebugStopReason.Breakpoint);
                    }
                    debugOne = DebugOneAtATime;
                }
            }
            if (_s->Icount >= _s->BudgetLimit)
            {
                return new VcpuExit(VcpuExitKind.BudgetExhausted, _s->Rip, Detail: $"instruction budget of {_budget} used");
            }
            ulong left = _s->BudgetLimit - _s->Icount;
            Block block;
            try
            {
                block = GetBlock(_s->Rip);
            }
            catch (GuestFault fault)
            {
                if (RaiseFault(fault, _s->Rip))
                {
                    return TakeExit();
                }
                continue;
            }
            if (_linkFrom is not null)
            {
                LinkPending(block);
            }
            int n = block.Ops.Length;
            if ((ulong)n > left)
            {
                n = (int)left;
            }
            if (step || debugOne)
            {
                if (step ? StepOne(block) : (ExecuteBlock(block, 0, 1) && _exitPending))
                {
                    return TakeExit();
                }
                if (debugOne && DebugAfterInstruction(out VcpuExit debugExit))
                {
                    return debugExit;
                }
                continue;
            }
            if (n == block.Ops.Length)
            {
                if (block.Compiled is { } compiled)
                {
                    // The fast path: translated blocks, chained through their link slots (in translated code, or in
                    // this loop when chaining is left to the dispatcher or a chain stopped at its limit).
                    _s->ChainLeft = ChainLimit;
                    int code;
                    while (true)
                    {
                        try
                        {
                            // Safe: the translated block reaches guest memory only through TLB entries, as the interpreter does.
                            code = compiled(_r, _s->Tlb, block);
                        }
#pragma warning disable CA1031 // a bug in translated code must stop this guest, not the host process
                        catch (Exception bug)
                        {
                            return new VcpuExit(VcpuExitKind.InternalError, _s->Rip, Detail: $"emulator internal error in translated code entered at block 0x{block.Start:x}: {bug.GetType().Name}: {bug.Message}");
                        }
#pragma warning restore CA1031
                        if (code > BlockCompiler.ChainExit)
                        {
                            break;
                        }
                        TranslatedBlocksCompleted++;
                        block = ChainExitBlock!;
                        if (FollowLink(block, BlockCompiler.SlotOf(code)) is not { } next)
                        {
                            break;
                        }
                        _s->ChainLeft = ChainLimit;
                        block = next;
                        compiled = next.Compiled!;
                    }
                    if (code == BlockCompiler.Completed)
                    {
                        TranslatedBlocksCompleted++;
                    }
                    else if (code == BlockCompiler.ExitRequested && _exitPending)
                    {
                        return TakeExit();
                    }
                    continue;
                }
                else if (++block.Hits == _jitThreshold)
                {
                    block.Compiled = BlockCompiler.TryCompile(block, this, out int translatedBytes);
                    if (block.Compiled is not null)
                    {
                        BlocksCompiled++;
                        block.HostBytes += translatedBytes;
                        _code.AddTranslated(translatedBytes);
                    }
                }
            }
            if (ExecuteBlock(block, 0, n) && _exitPending)
            {
                return TakeExit();
            }
        }
    }

    /// <summary>
    /// The successor <paramref name="from"/>'s exit <paramref name="slot"/> is linked to, when the dispatcher may run it
    /// next without looking it up (the checks of <c>BlockCompiler.Emitter.Leave</c>, and rip is its start); otherwise
    /// null, and the exit is remembered so that the block found next is linked to it (<see cref="LinkPending"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Block? FollowLink(Block from, BlockCompiler.LinkSlot slot)
    {
        Block? next = slot switch
        {
            BlockCompiler.LinkSlot.Next => from.LinkNext,
            BlockCompiler.LinkSlot.Target => from.LinkTarget,
            _ => from.LinkIndirect,
        };
        ulong epoch = *_code.LinkEpoch;
        if (next is not null && from.LinkEpoch == epoch && next.Valid && next.Start == _s->Rip
            && Volatile.Read(ref _s->Attention) == 0 && _s->BudgetLimit - _s->Icount >= (ulong)next.Ops.Length)
        {
            return next;
        }
        _linkFrom = from;
        _linkSlot = slot;
        _linkRip = _s->Rip;
        _linkEpoch = epoch;
        return null;
    }

    /// <summary>
    /// For an indirect exit of <paramref name="from"/> whose link slot does not hold its target: the translated block
    /// at <paramref name="rip"/> when the direct-mapped cache holds it (valid under the same rule as a link: no TLB
    /// flush and the same privilege since it was entered), which then becomes the slot's link (a return, or an
    /// indirect call of one target, finds it there next time); else null.
    /// </summary>
    internal Block? FindTranslated(Block from, ulong rip)
    {
        Block? b = _code.Fast[CodeCache.FastSlot(rip)];
        if (b is null || b.Start != rip || !b.Valid || b.Compiled is null)
        {
            return null;
        }
        ulong epoch = *_code.LinkEpoch;
        if (from.LinkEpoch != epoch)
        {
            from.LinkNext = from.LinkTarget = null;
            from.LinkEpoch = epoch;
        }
        from.LinkIndirect = b;
        return b;
    }

    /// <summary>
    /// Links the exit remembered by <see cref="FollowLink"/> to <paramref name="block"/>, the block the dispatcher found
    /// at rip, when it is translated and nothing came between (an interrupt delivered, a TLB flush, a privilege change).
    /// </summary>
    private void LinkPending(Block block)
    {
        Block from = _linkFrom!;
        _linkFrom = null;
        ulong epoch = *_code.LinkEpoch;
        if (block.Compiled is null || block.Start != _linkRip || epoch != _linkEpoch || !from.Valid)
        {
            return;
        }
        if (from.LinkEpoch != epoch)
        {
            from.LinkNext = from.LinkTarget = from.LinkIndirect = null;
            from.LinkEpoch = epoch;
        }
        switch (_linkSlot)
        {
            case BlockCompiler.LinkSlot.Next: from.LinkNext = block; break;
            case BlockCompiler.LinkSlot.Target: from.LinkTarget = block; break;
            default: from.LinkIndirect = block; break;
        }
        LinksMade++;
    }

    private VcpuExit TakeExit()
    {
        _exitPending = false;
        return _exit;
    }

    /// <summary>Sets the exit <see cref="Run"/> returns next.</summary>
    private void SetExit(in VcpuExit exit)
    {
        _exit = exit;
        _exitPending = true;
    }

    /// <summary>
    /// The dispatcher's slow path, taken when <see cref="CpuState.Attention"/> is set, TF is set or an interrupt shadow is
    /// active: a kick, queued host writes to code, a pending external interrupt (delivered when RFLAGS.IF allows).
    /// Returns true when <see cref="Run"/> must return <see cref="_exit"/>.
    /// </summary>
    private bool Service()
    {
        int attention = Volatile.Read(ref _s->Attention);
        if ((attention & AttentionKick) != 0)
        {
            Interlocked.And(ref _s->Attention, ~AttentionKick);
            SetExit(new VcpuExit(VcpuExitKind.Interrupted, _s->Rip));
            return true;
        }
        if ((attention & AttentionHostWrite) != 0)
        {
            Interlocked.And(ref _s->Attention, ~AttentionHostWrite);
            _code.ApplyHostWrites();
        }
        if ((attention & AttentionDirtyCleared) != 0)
        {
            Interlocked.And(ref _s->Attention, ~AttentionDirtyCleared);
            _mmu.RevokeAllWrites();
        }
        if ((attention & AttentionIrq) != 0 && (_s->Rflags & IF) != 0 && !_shadow)
        {
            int vector = TakePendingInterrupt();
            if (vector >= 0)
            {
                return RaiseEvent(new GuestEvent(vector, -1, EventSource.External), _s->Rip);
            }
        }
        return false;
    }

    /// <summary>Takes the highest pending vector (a fixed-priority controller), or -1; clears the attention bit when none is left.</summary>
    private int TakePendingInterrupt()
    {
        for (int w = 3; w >= 0; w--)
        {
            ulong bits = Volatile.Read(ref _pendingIrq[w]);
            while (bits != 0)
            {
                int bit = 63 - System.Numerics.BitOperations.LeadingZeroCount(bits);
                ulong mask = 1UL << bit;
                if ((Interlocked.And(ref _pendingIrq[w], ~mask) & mask) != 0)
                {
                    RefreshIrqAttention();
                    return (w * 64) + bit;
                }
                bits = Volatile.Read(ref _pendingIrq[w]);
            }
        }
        RefreshIrqAttention();
        return -1;
    }

    private void RefreshIrqAttention()
    {
        Interlocked.And(ref _s->Attention, ~AttentionIrq);
        if ((Volatile.Read(ref _pendingIrq[0]) | Volatile.Read(ref _pendingIrq[1]) | Volatile.Read(ref _pendingIrq[2]) | Volatile.Read(ref _pendingIrq[3])) != 0)
        {
            Interlocked.Or(ref _s->Attention, AttentionIrq); // raced with a new request: keep looking
        }
    }

    /// <summary>
    /// Runs one instruction under TF (then a single-step #DB trap unless it raised an event itself) or in an
    /// interrupt shadow (then interrupts are allowed again). Returns true when the run must stop.
    /// </summary>
    private bool StepOne(Block block)
    {
        bool trap = (_s->Rflags & TF) != 0;
        ulong delivered = _deliveries;
        bool stop = ExecuteBlock(block, 0, 1);
        _shadow = false;
        if (stop && _exitPending)
        {
            return true;
        }
        if (trap && _deliveries == delivered)
        {
            _sys.Dr6 |= 1UL << 14; // BS: single step
            return RaiseEvent(new GuestEvent(Vectors.DB, -1, EventSource.Trap), _s->Rip);
        }
        return false;
    }

    /// <summary>
    /// Finishes the out instruction the last run stopped at: rip moves past it. Runs at the start of the next run and
    /// before <see cref="GetState"/>, so a state taken at a port exit never repeats the out (KVM's semantics).
    /// </summary>
    private void CompletePendingOut()
    {
        if (_outResume != 0)
        {
            _s->Rip = _outResume;
            _outResume = 0;
        }
    }

    public VcpuRegisters GetRegisters()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Materialize();
        return Snapshot();
    }

    private VcpuRegisters Snapshot() => new(
        _r[0], _r[3], _r[1], _r[2], _r[6], _r[7], _r[4], _r[5],
        _r[8], _r[9], _r[10], _r[11], _r[12], _r[13], _r[14], _r[15], _s->Rip, _s->Rflags);

    public void SetRegisters(in VcpuRegisters registers)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _r[0] = registers.Rax; _r[1] = registers.Rcx; _r[2] = registers.Rdx; _r[3] = registers.Rbx;
        _r[4] = registers.Rsp; _r[5] = registers.Rbp; _r[6] = registers.Rsi; _r[7] = registers.Rdi;
        _r[8] = registers.R8; _r[9] = registers.R9; _r[10] = registers.R10; _r[11] = registers.R11;
        _r[12] = registers.R12; _r[13] = registers.R13; _r[14] = registers.R14; _r[15] = registers.R15;
        if (registers.Rip != _s->Rip)
        {
            _outResume = 0; // the VMM moved rip: the out is abandoned, not completed
        }
        _s->Rip = registers.Rip;
        _s->LazyKind = LazyKind.None;
        _s->Rflags = (registers.Rflags & PopfMask) | 2;
    }

    /// <summary>No flag materialization and no copy of the file: a hypercall reads its six registers straight from the run state.</summary>
    public ulong GetGeneralRegister(int index) => _r[index & 15];

    public void SetGeneralRegister(int index, ulong value) => _r[index & 15] = value;

    public VcpuState GetState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CompletePendingOut();
        var state = new VcpuState { Registers = GetRegisters() };
        _sys.CopyTo(state);
        state.Tsc = Tsc;
        // x87, MXCSR and XMM: the FXSAVE layout of the legacy region, both components in use (XSTATE_BV = x87 | SSE).
        SaveFxsave(state.ExtendedState.AsSpan(0, 512));
        BinaryPrimitives.WriteUInt64LittleEndian(state.ExtendedState.AsSpan(512), 0x3);
        return state;
    }

    /// <exception cref="ArgumentException">The state is not 64-bit long mode (the only mode the emulator runs).</exception>
    public void SetState(VcpuState state)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(state);
        var check = new SystemRegisters();
        check.Load(state);
        if (check.Unsupported() is string why)
        {
            throw new ArgumentException(why, nameof(state));
        }
        if ((state.Mxcsr & ~Semantics.SseFloat.MxcsrMask) != 0)
        {
            throw new ArgumentException($"the state's MXCSR 0x{state.Mxcsr:x} sets reserved bits", nameof(state));
        }
        _outResume = 0;
        SetRegisters(state.Registers);
        _sys.Load(state);
        _tscOffset = (long)(state.Tsc - _s->Icount);
        // The legacy region as FXRSTOR loads it (as the WHP backend does; components are not re-initialized from
        // XSTATE_BV); its MXCSR was checked above, so nothing is loaded from a state that is refused.
        _ = LoadFxrstor(state.ExtendedState.AsSpan(0, 512));
        _shadow = false;
        SystemStateChanged(flushTlb: true);
    }

    /// <summary>The time-stamp counter: the retired-instruction count plus the offset a loaded state or WRMSR set (deterministic).</summary>
    private ulong Tsc => _s->Icount + (ulong)_tscOffset;

    public void Interrupt() => Interlocked.Or(ref _s->Attention, AttentionKick);

    /// <summary>Requests external interrupt <paramref name="vector"/> (32-255): delivered through the IDT once RFLAGS.IF allows. Thread-safe.</summary>
    public void RequestInterrupt(int vector)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vector, 32);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(vector, 255);
        Interlocked.Or(ref _pendingIrq[vector >> 6], 1UL << (vector & 63));
        Interlocked.Or(ref _s->Attention, AttentionIrq);
    }

    /// <summary>From now the vCPU may retire <paramref name="instructions"/> more instructions (null: no limit). Between runs.</summary>
    public void SetInstructionBudget(ulong? instructions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _budget = instructions;
        _s->BudgetLimit = instructions is ulong n ? (ulong.MaxValue - _s->Icount < n ? ulong.MaxValue : _s->Icount + n) : ulong.MaxValue;
    }

    /// <summary>The host wrote guest memory (any thread): code decoded from it is dropped before the guest runs on.</summary>
    void IGuestMemoryWriteObserver.OnHostWrite(ulong address, ulong length) => _code.OnHostWrite(address, length);

    /// <summary>
    /// The dirty page map was cleared (vCPU stopped): the TLB's write permissions stand for pages already marked, so
    /// they are revoked before the guest runs on, and each page's next store takes the slow path that marks it.
    /// </summary>
    void IGuestMemoryWriteObserver.OnDirtyPagesCleared() => Interlocked.Or(ref _s->Attention, AttentionDirtyCleared);

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _memory.RemoveWriteObserver(this);
        // The TLBs and direct-mapped caches go to the next vCPU (VcpuArrayPool): from here on every entry point throws.
        _s->Tlb = null;
        _code.Release();
        _mmu.Release();
    }

    /// <summary>For tests: forgets all decoded code and the run state and starts again at <paramref name="start"/> (the host rewrote guest code).</summary>
    internal void Reset(in VcpuStartState start)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _code.Flush();
        _mmu.FlushAll();
        new Span<ulong>(_r, 20).Clear();
        new Span<Vector128<byte>>(_x, 16).Clear();
        _fpu = Semantics.FpuState.Initial;
        _s->Rip = start.Rip;
        _r[4] = start.Rsp;
        _r[7] = start.Rdi;
        _s->Rflags = 2;
        _s->LazyKind = LazyKind.None;
        _s->Icount = 0;
        _s->FlagOverride = false;
        _s->Attention = 0;
        Array.Clear(_pendingIrq);
        _shadow = false;
        _exitPending = false;
        _outResume = 0;
    }

    /// <summary>For tests: sets a general-purpose register (0 = rax ... 15 = r15).</summary>
    internal void SetRegister(int index, ulong value) => _r[index & 15] = value;

    /// <summary>For tests: sets RFLAGS (bit 1 is forced on).</summary>
    internal void SetFlags(ulong value)
    {
        _s->LazyKind = LazyKind.None;
        _s->Rflags = (value & PopfMask) | 2;
    }

    /// <summary>For tests: an XMM register.</summary>
    internal Vector128<byte> GetXmm(int index) => _x[index & 15];

    /// <summary>For tests: sets an XMM register.</summary>
    internal void SetXmm(int index, Vector128<byte> value) => _x[index & 15] = value;

    /// <summary>
    /// The privilege level, paging mode or TLB contents may have changed (a far transfer, a CR write, a loaded
    /// state): selects the TLB and direct-mapped block cache of the current CPL, and when <paramref name="flushTlb"/>,
    /// drops every translation and every block reached through one.
    /// </summary>
    private void SystemStateChanged(bool flushTlb)
    {
        if (flushTlb)
        {
            _mmu.FlushAll();
            _code.FlushFast();
        }
        PrivilegeChanged();
        UpdateFpuAvailability();
    }

    /// <summary>CS changed: switch the TLB and the direct-mapped block cache to the new CPL.</summary>
    private void PrivilegeChanged()
    {
        int cpl = _sys.Cpl;
        _mmu.SetPrivilege(cpl);
        _s->Tlb = _mmu.Current;
        _code.SetPrivilege(cpl);
    }

    // ---- block cache ----

    /// <summary>
    /// The code cache dropped a block (<see cref="CodeCache.Drop"/>): if the interpreter is running, its loop ends
    /// after the current instruction, and goes on only if its own block is still valid (<see cref="ExecuteBlock"/>).
    /// </summary>
    private void BlockDropped() => _runLimit = 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Block GetBlock(ulong rip)
    {
        Block? b = _code.Fast[CodeCache.FastSlot(rip)];
        if (b is not null && b.Start == rip && b.Valid)
        {
            return b;
        }
        return GetBlockSlow(rip);
    }

    /// <summary>Translates rip for execution (may raise #PF/#GP), finds or decodes the block, enters it in the direct-mapped cache.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private Block GetBlockSlow(ulong rip)
    {
        byte* host = TranslateFetch(rip);
        ulong phys = (ulong)(host - _mem);
        Block? b = _code.Find(rip, phys);
        if (b is not null && b.PhysicalSecond != Block.NoPage)
        {
            // The last instruction runs into the next page: that page must still map where it did when decoded.
            ulong next = (rip | 0xFFF) + 1;
            if (!_mmu.TryProbe(next, out ulong second) || (second & ~0xFFFUL) != b.PhysicalSecond)
            {
                _code.Drop(b);
                b = null;
            }
        }
        if (b is null)
        {
            b = _shareScope != 0 && _breakpoints is null ? SharedOrDecode(rip, host, phys) : DecodeAlone(rip, host, phys);
            _code.Add(b);
        }
        _code.Fast[CodeCache.FastSlot(rip)] = b;
        return b;
    }

    private Block DecodeAlone(ulong rip, byte* host, ulong phys)
    {
        BlocksDecoded++;
        return Decode(rip, host, phys, out _);
    }

    /// <summary>
    /// The block at <paramref name="rip"/> from <see cref="SharedDecodeCache"/> (another VM of the same image decoded
    /// these bytes), or decoded, published and taken back from the cache: the decoding VM takes its block the way every
    /// other VM will, so the second VM of an image runs no code path the first did not (measured: the JIT of that path
    /// was about half a millisecond of the second VM). Not with breakpoints set: they end blocks.
    /// </summary>
    private Block SharedOrDecode(ulong rip, byte* host, ulong phys)
    {
        int onPage = (int)(0x1000 - (rip & 0xFFF));
        SharedDecodeCache cache = SharedDecodeCache.Process;
        if (cache.Find(_shareScope, rip, phys, host, onPage) is { } shared)
        {
            _blocksShared++;
            return shared.Instantiate(rip, phys);
        }
        Block decoded = Decode(rip, host, phys, out int codeLength);
        BlocksDecoded++;
        if (codeLength == 0)
        {
            return decoded; // depends on the next page's mapping: not shared
        }
        cache.Publish(_shareScope, decoded, host, codeLength);
        // Found unless the cache was flushed meanwhile; another VM's variant at this address never matches these bytes.
        return cache.Find(_shareScope, rip, phys, host, onPage)?.Instantiate(rip, phys) ?? decoded;
    }

    /// <summary>Number of decoded blocks in the cache (for tests).</summary>
    internal int CachedBlocks => _code.Count;

    /// <summary>The host address of the instruction byte at <paramref name="rip"/> (instruction TLB, or a walk for execute).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* TranslateFetch(ulong rip)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(rip);
        if (e->ExecTag == (rip & ~0xFFFUL))
        {
            return (byte*)(e->Addend + (long)rip);
        }
        return _mmu.Translate(rip, MemoryAccess.Execute, _mmu.UserMode, 1);
    }

    /// <summary>
    /// Decodes the block at <paramref name="rip"/> (host address <paramref name="host"/>, guest-physical
    /// <paramref name="phys"/>): straight-line code ending at a control transfer, an exit instruction, an unsupported
    /// instruction, 256 instructions or the end of the page (an instruction that straddles into the next page ends the
    /// block, which then depends on both pages' mappings).
    /// </summary>
    /// <remarks><paramref name="codeLength"/>: the bytes from <paramref name="rip"/> that the decode depends on, all on
    /// its page; 0 when it also depends on the next page's mapping (an instruction that crosses into it, a fetch
    /// fault): such a block is not shared (<see cref="SharedDecodeCache"/>).</remarks>
    private Block Decode(ulong rip, byte* host, ulong phys, out int codeLength)
    {
        _decodeOps.Clear();
        _decodeTexts.Clear();
        var reader = new GuestCodeReader(this, rip, host);
        var decoder = Decoder.Create(64, reader, rip, DecoderOptions.None);
        ulong end = rip;
        ulong pageEnd = (rip | 0xFFF) + 1;
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
                if (reader.FetchFailed)
                {
                    AddFetchFault(ref op, in ins, reader);
                    end = reader.FailAddress;
                    break;
                }
                string text = decoder.LastError == DecoderError.NoMoreBytes
                    ? $"invalid opcode (#UD) at 0x{ins.IP:x}: the instruction is longer than 15 bytes"
                    : $"invalid opcode (#UD) at 0x{ins.IP:x}";
                end = Math.Min(ins.IP + 15, reader.Crossed ? pageEnd + 0x1000 : pageEnd); // cover the bad bytes: rewriting them must drop this block
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
                // The one place an instruction the emulator lacks is recognised: a VcpuExitKind.Unimplemented exit.
                op = default;
                if (Translator.InvalidInLongMode(in ins))
                {
                    AddUnsupported(ref op, ins.IP, $"invalid opcode (#UD): '{Format(in ins)}' is invalid in 64-bit mode at 0x{ins.IP:x}");
                }
                else
                {
                    AddUnsupported(ref op, ins.IP, $"the emulator does not implement '{Format(in ins)}' at 0x{ins.IP:x}", OpKind.Unimplemented);
                }
                break;
            }
            if (op.Kind == OpKind.Undefined)
            {
                // An instruction of a feature this CPU model does not have (see CpuidModel): #UD, as on such a CPU.
                op = default;
                AddUnsupported(ref op, ins.IP, $"invalid opcode (#UD): '{Format(in ins)}' at 0x{ins.IP:x}");
                break;
            }
            _decodeOps.Add(op);
            if (InstructionTable.EndsBlock(in op) || reader.Crossed || ins.NextIP >= pageEnd)
            {
                break;
            }
        }
        codeLength = reader.Crossed || reader.FetchFailed ? 0 : (int)(Math.Min(Math.Max(end, reader.Position), pageEnd) - rip);
        return new Block(rip, end, [.. _decodeOps], [.. _decodeTexts], phys, reader.SecondPhysical);
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

    /// <summary>An instruction whose bytes run into a page that cannot be fetched: the fault is raised when (if) the instruction is reached.</summary>
    private void AddFetchFault(ref MicroOp op, in Instruction ins, GuestCodeReader reader)
    {
        AddUnsupported(ref op, ins.IP, reader.FailReason ?? "instruction fetch fault", OpKind.FetchFault);
        ref MicroOp added = ref CollectionsMarshal.AsSpan(_decodeOps)[^1];
        added.Imm = reader.FailAddress;
        added.Disp = (ulong)(long)reader.FailErrorCode;
        added.Size = (byte)reader.FailVector;
    }

    private static string Format(in Instruction ins)
    {
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        formatter.Format(in ins, output);
        return output.ToStringAndReset();
    }

    /// <summary>Blocks translated to IL so far (for tests).</summary>
    internal int BlocksCompiled { get; private set; }

    /// <summary>Runs of translated blocks that completed the whole block in translated code (for tests: proves it ran).</summary>
    internal long TranslatedBlocksCompleted { get; private set; }

    /// <summary>Link slots filled so far (for tests: proves chaining happened).</summary>
    internal long LinksMade { get; private set; }

    /// <summary>Blocks decoded so far (for tests).</summary>
    internal int BlocksDecoded { get; private set; }

    /// <summary>Blocks taken from <see cref="SharedDecodeCache"/> instead of decoded (for tests).</summary>
    internal int BlocksShared => _blocksShared;

    private int _blocksShared;

    // ---- the memory access path: software TLB inline, Mmu on a miss ----

    /// <summary>True at CPL 3: accesses are user accesses.</summary>
    private bool UserMode => _mmu.UserMode;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Load(ulong a, int size)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->ReadTag != ((a + (ulong)size - 1) & ~0xFFFUL))
        {
            return LoadSlow(a, size);
        }
        return ReadHost((byte*)(e->Addend + (long)a), size);
    }

    /// <summary>Reads 1, 2, 4 or 8 bytes at a host address the TLB gave.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong ReadHost(byte* p, int size) => size switch
    {
        1 => *p,
        2 => Unsafe.ReadUnaligned<ushort>(p),
        4 => Unsafe.ReadUnaligned<uint>(p),
        _ => Unsafe.ReadUnaligned<ulong>(p),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Load64(ulong a)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->ReadTag != ((a + 7) & ~0xFFFUL))
        {
            return LoadSlow(a, 8);
        }
        return Unsafe.ReadUnaligned<ulong>((byte*)(e->Addend + (long)a));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Store(ulong a, int size, ulong v)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->WriteTag != ((a + (ulong)size - 1) & ~0xFFFUL))
        {
            StoreSlow(a, size, v);
            return;
        }
        byte* p = (byte*)(e->Addend + (long)a);
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
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->WriteTag != ((a + 7) & ~0xFFFUL))
        {
            StoreSlow(a, 8, v);
            return;
        }
        Unsafe.WriteUnaligned((byte*)(e->Addend + (long)a), v);
    }

    private Vector128<byte> Load128(ulong a, bool aligned)
    {
        if (aligned && (a & 15) != 0)
        {
            GuestFault.Misaligned(a);
        }
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->ReadTag == ((a + 15) & ~0xFFFUL))
        {
            return Unsafe.ReadUnaligned<Vector128<byte>>((byte*)(e->Addend + (long)a));
        }
        Vector128<byte> v = default;
        ReadSlow(a, new Span<byte>(&v, 16));
        return v;
    }

    private void Store128(ulong a, Vector128<byte> v, bool aligned)
    {
        if (aligned && (a & 15) != 0)
        {
            GuestFault.Misaligned(a);
        }
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->WriteTag == ((a + 15) & ~0xFFFUL))
        {
            Unsafe.WriteUnaligned((byte*)(e->Addend + (long)a), v);
            return;
        }
        WriteSlow(a, new ReadOnlySpan<byte>(&v, 16));
    }

    /// <summary>
    /// Reads a memory operand of any size up to a page (x87 m80, FLDENV/FRSTOR and FXRSTOR images): the TLB inline
    /// when it lies in one page, else a walk that translates both pages before anything is read.
    /// </summary>
    private void LoadBytes(ulong a, Span<byte> data)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->ReadTag == ((a + (ulong)data.Length - 1) & ~0xFFFUL))
        {
            new ReadOnlySpan<byte>((byte*)(e->Addend + (long)a), data.Length).CopyTo(data);
            return;
        }
        ReadSlow(a, data);
    }

    /// <summary>
    /// Writes a memory operand of any size up to a page (x87 m80, FNSTENV/FNSAVE and FXSAVE images): the TLB inline
    /// when it lies in one page that may be written without the slow path, else a walk that translates both pages
    /// (and faults) before any byte is written, so a faulting store writes nothing.
    /// </summary>
    private void StoreBytes(ulong a, ReadOnlySpan<byte> data)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->WriteTag == ((a + (ulong)data.Length - 1) & ~0xFFFUL))
        {
            data.CopyTo(new Span<byte>((byte*)(e->Addend + (long)a), data.Length));
            return;
        }
        WriteSlow(a, data);
    }

    /// <summary>
    /// Checks that [a, a+size) may be written, raising its #PF/#GP now: for instructions that change other state
    /// (the x87 stack, status word) before their store, so that a store that faults leaves that state unchanged.
    /// The store that follows cannot fault.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ProbeWrite(ulong a, int size)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        if (e->WriteTag != ((a + (ulong)size - 1) & ~0xFFFUL))
        {
            ProbeWriteSlow(a, size);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ProbeWriteSlow(ulong a, int size) => TranslateForWrite(a, size, out _, out _);

    /// <summary>
    /// Translates [a, a+size) for write through a walk, both pages (A/D set, faults raised) before anything happens;
    /// returns the host address of the first byte, <paramref name="hi"/> that of the second page (null when the
    /// access stays in one) and <paramref name="first"/> the bytes in the first page.
    /// </summary>
    private byte* TranslateForWrite(ulong a, int size, out byte* hi, out int first)
    {
        byte* lo = _mmu.Translate(a, MemoryAccess.Write, UserMode, size);
        first = (int)Math.Min((ulong)size, 0x1000 - (a & 0xFFF));
        hi = first < size ? _mmu.Translate((a | 0xFFF) + 1, MemoryAccess.Write, UserMode, size, a) : null;
        return lo;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong LoadSlow(ulong a, int size)
    {
        ulong v = 0;
        ReadSlow(a, new Span<byte>(&v, size));
        return v;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void StoreSlow(ulong a, int size, ulong v) => WriteSlow(a, new ReadOnlySpan<byte>(&v, size));

    /// <summary>Reads guest bytes at linear <paramref name="a"/> at the current privilege through a walk.</summary>
    private void ReadSlow(ulong a, Span<byte> destination) => _mmu.ReadLinear(a, destination, UserMode);

    /// <summary>Writes guest bytes at linear <paramref name="a"/> at the current privilege through a walk (decoded code there is dropped).</summary>
    private void WriteSlow(ulong a, ReadOnlySpan<byte> source) => _mmu.WriteLinear(a, source, UserMode);

    /// <summary>
    /// Host address of a run of at most <paramref name="length"/> bytes at <paramref name="a"/> that stays within one
    /// page, for bulk string operations; for writes, decoded code in that run is dropped first.
    /// </summary>
    private byte* TranslateRun(ulong a, ulong length, MemoryAccess access)
    {
        TlbEntry* e = _s->Tlb + Tlb.Index(a);
        ulong page = a & ~0xFFFUL;
        if ((access == MemoryAccess.Write ? e->WriteTag : e->ReadTag) == page)
        {
            return (byte*)(e->Addend + (long)a);
        }
        byte* p = _mmu.Translate(a, access, UserMode, 1);
        if (access == MemoryAccess.Write)
        {
            _code.OnPhysicalWrite((ulong)(p - _mem), (int)length);
        }
        return p;
    }

    /// <summary>
    /// Reads guest code for Iced through the instruction TLB: the block's first page from its host address, the next
    /// page (only for an instruction that straddles the boundary) translated for execute when first reached; a fetch
    /// that cannot be translated ends the stream and records why.
    /// </summary>
    private sealed class GuestCodeReader : CodeReader
    {
        private readonly EmulatorVcpu _cpu;
        private byte* _pageHost;
        private ulong _page;
        private ulong _pos;

        public GuestCodeReader(EmulatorVcpu cpu, ulong pos, byte* host)
        {
            _cpu = cpu;
            _pos = pos;
            _page = pos & ~0xFFFUL;
            _pageHost = host - (pos & 0xFFF);
        }

        /// <summary>One past the last byte read.</summary>
        public ulong Position => _pos;

        /// <summary>True once the stream entered the second page.</summary>
        public bool Crossed { get; private set; }

        /// <summary>Physical address of the second page, or <see cref="Block.NoPage"/>.</summary>
        public ulong SecondPhysical { get; private set; } = Block.NoPage;

        public bool FetchFailed { get; private set; }
        public ulong FailAddress { get; private set; }
        public int FailErrorCode { get; private set; }
        public int FailVector { get; private set; }
        public string? FailReason { get; private set; }

        public override int ReadByte()
        {
            if ((_pos & ~0xFFFUL) != _page)
            {
                if (Crossed || FetchFailed)
                {
                    return -1;
                }
                try
                {
                    byte* host = _cpu._mmu.Translate(_pos, MemoryAccess.Execute, _cpu.UserMode, 1);
                    _page = _pos & ~0xFFFUL;
                    _pageHost = host - (_pos & 0xFFF);
                    SecondPhysical = (ulong)(host - _cpu._mem) & ~0xFFFUL;
                    Crossed = true;
                }
                catch (GuestFault fault)
                {
                    FetchFailed = true;
                    FailAddress = _pos;
                    FailErrorCode = fault.ErrorCode;
                    FailVector = fault.Vector < 0 ? 0xFF : fault.Vector;
                    FailReason = fault.Message;
                    return -1;
                }
            }
            return _pageHost[_pos++ & 0xFFF];
        }
    }
}
