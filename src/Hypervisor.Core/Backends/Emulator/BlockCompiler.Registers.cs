using System.Reflection.Emit;

namespace Paravirt.Hypervisor.Backends.Emulator;

internal static unsafe partial class BlockCompiler
{
    /// <summary>Every general-purpose register (a mask of bits 0-15).</summary>
    private const int AllRegisters = 0xFFFF;

    /// <summary>
    /// The guest's general-purpose registers inside one translated block: each register the block uses lives in an IL
    /// local (which RyuJIT keeps in a host register where it can), read from <see cref="CpuState"/> once and written
    /// back only where something else can see it: every exit (chained or not), a bail-out to the interpreter (which
    /// also covers every fault of a native op: it re-runs the faulting op from the vCPU's state) and every helper that
    /// reads or writes registers in <see cref="CpuState"/> (the interpreter's block loop, the SSE and vector helpers).
    /// The emitter knows at each point which locals hold a register (<see cref="_loaded"/>) and which are newer than
    /// <see cref="CpuState"/> (<see cref="_dirty"/>): only those are stored. The helpers that read neither (the shift,
    /// imul, condition and carry helpers, the segment base) are called with the registers in the locals. A TLB miss
    /// is a bail-out, not a call: a call on the translated path that the path rejoins makes RyuJIT keep every local
    /// live across it in a stack slot instead of a host register.
    /// </summary>
    /// <remarks>
    /// The state is the emitter's, decided at emit time, so it must be the same on every IL path through a point: the
    /// code of one op is straight-line but for its branches to a bail-out (which stores the registers dirty at the
    /// branch, <see cref="Bail"/>) and cmov's two arms (whose destination is loaded before the branch); an op never
    /// loads a register inside a branch of its own.
    /// </remarks>
    private sealed partial class Emitter
    {
        private readonly LocalBuilder?[] _regs = new LocalBuilder?[16];
        /// <summary>Registers whose IL local holds the register's current value (a mask of bits 0-15).</summary>
        private int _loaded;
        /// <summary>Registers whose IL local is newer than the vCPU's register file: stored at the next exit, bail-out or helper.</summary>
        private int _dirty;

        private LocalBuilder RegLocal(int reg) => _regs[reg] ??= _il.DeclareLocal(typeof(ulong));

        private void EmitLoad(int reg)
        {
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, reg * 8);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldind_I8);
            _il.Emit(OpCodes.Stloc, RegLocal(reg));
        }

        /// <summary>Makes register <paramref name="reg"/>'s local hold its value: loads it here unless it already does.</summary>
        /// <remarks>Loading every register the block reads at its entry instead was measured: no difference (bench/emulator-suite-notes.md, fifth round).</remarks>
        private void EnsureLoaded(int reg)
        {
            if ((_loaded & (1 << reg)) == 0)
            {
                EmitLoad(reg);
                _loaded |= 1 << reg;
            }
        }

        private void LoadReg(int reg, bool narrow)
        {
            EnsureLoaded(reg);
            _il.Emit(OpCodes.Ldloc, RegLocal(reg));
            if (narrow)
            {
                _il.Emit(OpCodes.Conv_U4);
                _il.Emit(OpCodes.Conv_U8);
            }
        }

        /// <summary>Stores the value pushed by <paramref name="value"/> into register <paramref name="reg"/> (zero-extending 32-bit results); the local is now the register, dirty.</summary>
        private void StoreReg(int reg, bool narrow, Action value)
        {
            value();
            if (narrow)
            {
                _il.Emit(OpCodes.Conv_U4);
                _il.Emit(OpCodes.Conv_U8);
            }
            _il.Emit(OpCodes.Stloc, RegLocal(reg));
            _loaded |= 1 << reg;
            _dirty |= 1 << reg;
        }

        /// <summary>Stores the locals of the registers in <paramref name="mask"/> into the vCPU's register file.</summary>
        private void WriteBack(int mask)
        {
            for (int reg = 0; reg < 16; reg++)
            {
                if ((mask & (1 << reg)) != 0)
                {
                    _il.Emit(OpCodes.Ldarg_1);
                    _il.Emit(OpCodes.Ldc_I4, reg * 8);
                    _il.Emit(OpCodes.Add);
                    _il.Emit(OpCodes.Ldloc, _regs[reg]!);
                    _il.Emit(OpCodes.Stind_I8);
                }
            }
        }

        /// <summary>Stores the dirty registers of <paramref name="mask"/> (before an exit or a helper that reads them, or may fault and so deliver from the vCPU's state); they are clean afterwards.</summary>
        private void Spill(int mask = AllRegisters)
        {
            WriteBack(_dirty & mask);
            _dirty &= ~mask;
        }

        /// <summary>After a helper that may have written the registers of <paramref name="mask"/> in the vCPU: their locals are stale (reloaded where next read).</summary>
        private void Forget(int mask = AllRegisters)
        {
            _loaded &= ~mask;
            _dirty &= ~mask;
        }

        /// <summary>
        /// The general-purpose registers a register-only SSE op run by <c>EmulatorVcpu.ExecuteSse</c> reads and writes
        /// (movd/movq to and from a GPR, pmovmskb/movmskps/movmskpd, pextrw, pinsrw); the others touch only XMM registers.
        /// </summary>
        private static (int Reads, int Writes) SseRegisters(in MicroOp op) => op.Kind switch
        {
            OpKind.MovdToX or OpKind.Pinsrw when op.B == Loc.Reg => (1 << (op.RegB & 15), 0),
            OpKind.MovdFromX or OpKind.Pmovmskb or OpKind.Movmskps or OpKind.Movmskpd or OpKind.Pextrw when op.A == Loc.Reg => (0, 1 << (op.RegA & 15)),
            _ => (0, 0),
        };
    }
}
