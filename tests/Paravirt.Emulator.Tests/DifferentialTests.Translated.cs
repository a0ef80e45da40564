using System.Runtime.InteropServices;
using System.Text;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The SSE floating-point ops that translated code does inline (BlockCompiler.Sse.cs: the host's result under the
/// interpreter's fast-path conditions, the soft-float helper otherwise), run in a loop hot enough to be translated,
/// against the real CPU: per iteration the result and MXCSR (reloaded before the op, stored after it) must match bit
/// for bit, for operands from <see cref="FpValues"/> (NaN payloads in either operand, signed zeros, denormals, values
/// near the overflow and underflow thresholds) and ordinary numbers, under MXCSR values with every rounding mode,
/// DAZ, FTZ and PE set or clear (all exceptions masked: an unmasked one would trap in this process; those are
/// <see cref="TranslatedFpTests"/>'s).
/// </summary>
public sealed partial class DifferentialTests
{
    /// <summary>Loop iterations per run (one operand pair each; the loop's block is translated after its first run).</summary>
    internal const int TranslatedIterations = 48;
    private const int TranslatedBatches = 10;
    /// <summary>MXCSR after reset: every exception masked, PE clear (so the first inexact result takes the slow path).</summary>
    private const uint MxcsrReset = 0x1F80;

    /// <summary>Data page layout of the translated loops: operand pairs (32 bytes each), results (16 each), MXCSR after each op, MXCSR loaded before it.</summary>
    internal const int OperandsOff = 0, ResultsOff = 0x600, MxcsrOutOff = 0x900, MxcsrInOff = 0xF00;

    /// <summary>An inline op: its name, what its lanes hold and how it is emitted (destination xmm0; source xmm1, [rbx+rsi+16] or rax).</summary>
    internal sealed record FpForm(string Name, LaneKind Lanes, Action<Assembler> Emit);

    internal static IEnumerable<FpForm> InlineFpForms()
    {
        foreach ((string name, Action<Assembler> reg, Action<Assembler> mem) in new (string, Action<Assembler>, Action<Assembler>)[]
        {
            ("addsd", a => a.addsd(xmm0, xmm1), a => a.addsd(xmm0, __qword_ptr[rbx + rsi + 16])),
            ("subsd", a => a.subsd(xmm0, xmm1), a => a.subsd(xmm0, __qword_ptr[rbx + rsi + 16])),
            ("mulsd", a => a.mulsd(xmm0, xmm1), a => a.mulsd(xmm0, __qword_ptr[rbx + rsi + 16])),
            ("divsd", a => a.divsd(xmm0, xmm1), a => a.divsd(xmm0, __qword_ptr[rbx + rsi + 16])),
            ("sqrtsd", a => a.sqrtsd(xmm0, xmm1), a => a.sqrtsd(xmm0, __qword_ptr[rbx + rsi + 16])),
            ("addpd", a => a.addpd(xmm0, xmm1), a => a.addpd(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("subpd", a => a.subpd(xmm0, xmm1), a => a.subpd(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("mulpd", a => a.mulpd(xmm0, xmm1), a => a.mulpd(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("divpd", a => a.divpd(xmm0, xmm1), a => a.divpd(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("sqrtpd", a => a.sqrtpd(xmm0, xmm1), a => a.sqrtpd(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("addsubpd", a => a.addsubpd(xmm0, xmm1), a => a.addsubpd(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("addss", a => a.addss(xmm0, xmm1), a => a.addss(xmm0, __dword_ptr[rbx + rsi + 16])),
            ("subss", a => a.subss(xmm0, xmm1), a => a.subss(xmm0, __dword_ptr[rbx + rsi + 16])),
            ("mulss", a => a.mulss(xmm0, xmm1), a => a.mulss(xmm0, __dword_ptr[rbx + rsi + 16])),
            ("divss", a => a.divss(xmm0, xmm1), a => a.divss(xmm0, __dword_ptr[rbx + rsi + 16])),
            ("addps", a => a.addps(xmm0, xmm1), a => a.addps(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("subps", a => a.subps(xmm0, xmm1), a => a.subps(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("mulps", a => a.mulps(xmm0, xmm1), a => a.mulps(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("divps", a => a.divps(xmm0, xmm1), a => a.divps(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("addsubps", a => a.addsubps(xmm0, xmm1), a => a.addsubps(xmm0, __xmmword_ptr[rbx + rsi + 16])),
            ("movddup", a => a.movddup(xmm0, xmm1), a => a.movddup(xmm0, __qword_ptr[rbx + rsi + 16])),
        })
        {
            LaneKind lanes = name.EndsWith("ss", StringComparison.Ordinal) || name.EndsWith("ps", StringComparison.Ordinal) ? LaneKind.Single : LaneKind.Double;
            yield return new FpForm(name + " xmm0, xmm1", lanes, reg);
            yield return new FpForm(name + " xmm0, [mem]", lanes, mem);
        }
        yield return new FpForm("cvtsi2sd xmm0, rax", LaneKind.Double, a => a.cvtsi2sd(xmm0, rax));
        yield return new FpForm("cvtsi2sd xmm0, eax", LaneKind.Double, a => a.cvtsi2sd(xmm0, eax));
        yield return new FpForm("cvtsi2sd xmm0, qword [mem]", LaneKind.Double, a => a.cvtsi2sd(xmm0, __qword_ptr[rbx + rsi + 16]));
        yield return new FpForm("movapd xmm0, xmm1", LaneKind.Double, a => a.movapd(xmm0, xmm1));
        yield return new FpForm("xorpd xmm0, xmm1", LaneKind.Double, a => a.xorpd(xmm0, xmm1));
        yield return new FpForm("xorpd xmm1, xmm1 (zeroing)", LaneKind.Double, a => { a.xorpd(xmm1, xmm1); a.addpd(xmm0, xmm1); });
        yield return new FpForm("andpd xmm0, xmm1", LaneKind.Double, a => a.andpd(xmm0, xmm1));
        yield return new FpForm("orpd xmm0, xmm1", LaneKind.Double, a => a.orpd(xmm0, xmm1));
        yield return new FpForm("andnpd xmm0, xmm1", LaneKind.Double, a => a.andnpd(xmm0, xmm1));
        yield return new FpForm("unpcklpd xmm0, xmm1", LaneKind.Double, a => a.unpcklpd(xmm0, xmm1));
        yield return new FpForm("unpckhpd xmm0, xmm1", LaneKind.Double, a => a.unpckhpd(xmm0, xmm1));
        yield return new FpForm("unpckhpd xmm0, xmm0", LaneKind.Double, a => a.unpckhpd(xmm0, xmm0));
        yield return new FpForm("mulsd xmm0, xmm0", LaneKind.Double, a => a.mulsd(xmm0, xmm0));
    }

    /// <summary>
    /// The loop: MXCSR from [rbx+0xF00], xmm0 and xmm1 (and rax) from operand pair rsi, the op, then the result and
    /// MXCSR stored; r15 iterations.
    /// </summary>
    internal static void EmitFpLoop(Assembler a, FpForm form)
    {
        Label top = a.CreateLabel();
        a.Label(ref top);
        a.ldmxcsr(__dword_ptr[rbx + MxcsrInOff]);
        a.movapd(xmm0, __xmmword_ptr[rbx + rsi + OperandsOff]);
        a.movapd(xmm1, __xmmword_ptr[rbx + rsi + OperandsOff + 16]);
        a.mov(rax, __qword_ptr[rbx + rsi + OperandsOff + 16]);
        form.Emit(a);
        a.movapd(__xmmword_ptr[rbx + (rdi * 4) + ResultsOff], xmm0);
        a.stmxcsr(__dword_ptr[rbx + rdi + MxcsrOutOff]);
        a.add(rsi, 32);
        a.add(rdi, 4);
        a.sub(r15, 1);
        a.jnz(top);
    }

    /// <summary>Operand pairs for <paramref name="iterations"/> iterations into <paramref name="data"/> (the first <paramref name="ordinary"/> ones ordinary numbers only).</summary>
    internal static void FillFpOperands(Span<byte> data, Random r, LaneKind lanes, int iterations, int ordinary = 0)
    {
        for (int i = 0; i < iterations; i++)
        {
            Span<byte> pair = data.Slice(OperandsOff + (i * 32), 32);
            bool plain = i < ordinary;
            for (int lane = 0; lane < (lanes == LaneKind.Double ? 2 : 4); lane++)
            {
                if (lanes == LaneKind.Double)
                {
                    ulong x = FpOperand64(r, plain), y = r.Next(8) == 0 ? x ^ ((ulong)r.Next(2) << 63) : FpOperand64(r, plain);
                    MemoryMarshal.Write(pair[(lane * 8)..], x);
                    MemoryMarshal.Write(pair[(16 + (lane * 8))..], y);
                }
                else
                {
                    uint x = FpOperand32(r, plain), y = r.Next(8) == 0 ? x ^ ((uint)r.Next(2) << 31) : FpOperand32(r, plain);
                    MemoryMarshal.Write(pair[(lane * 4)..], x);
                    MemoryMarshal.Write(pair[(16 + (lane * 4))..], y);
                }
            }
            if (!plain && r.Next(3) == 0)
            {
                // An integer source for cvtsi2sd: exact in a double, near 2^53, or any 64-bit value.
                long v = r.Next(3) switch
                {
                    0 => FpValues.Int32(r),
                    1 => ((1L << 53) + r.Next(-2, 3)) * (r.Next(2) == 0 ? 1 : -1),
                    _ => r.NextInt64() >> r.Next(64),
                };
                MemoryMarshal.Write(pair[16..], v);
            }
        }
    }

    /// <summary>Mostly ordinary numbers (the fast path), the rest <see cref="FpValues"/> corners or any exponent (overflow and underflow of products).</summary>
    private static ulong FpOperand64(Random r, bool plain)
    {
        ulong sign = (ulong)r.Next(2) << 63, frac = (ulong)r.NextInt64() & 0x000F_FFFF_FFFF_FFFF;
        return (plain ? 9 : r.Next(10)) switch
        {
            < 3 => FpValues.Double(r),
            3 => sign | ((ulong)r.Next(1, 0x7FF) << 52) | frac,
            _ => sign | ((ulong)r.Next(1023 - 60, 1023 + 60) << 52) | frac,
        };
    }

    private static uint FpOperand32(Random r, bool plain)
    {
        uint sign = (uint)r.Next(2) << 31, frac = (uint)r.Next() & 0x7F_FFFF;
        return (plain ? 9 : r.Next(10)) switch
        {
            < 3 => FpValues.Single(r),
            3 => sign | ((uint)r.Next(1, 0xFF) << 23) | frac,
            _ => sign | ((uint)r.Next(127 - 20, 127 + 20) << 23) | frac,
        };
    }

    [Fact]
    public void TranslatedFpArithmetic_MatchesTheHostCpu()
    {
        EmulatorVcpu emulator = _cpu.Emulator;
        int threshold = emulator.JitThreshold;
        var r = new Random(0x55E);
        var failures = new List<string>();
        long translatedBefore = emulator.TranslatedBlocksCompleted;
        int runs = 0;
        BlockCompiler.ChainMode chaining = emulator.Chaining;
        emulator.JitThreshold = 1;
        emulator.Chaining = BlockCompiler.ChainMode.Off; // every translated run returns to the dispatcher: counted below
        try
        {
            foreach (FpForm form in InlineFpForms())
            {
                byte[] code = EmuHarness.Assemble(a => EmitFpLoop(a, form), _cpu.CodeAddress);
                for (int batch = 0; batch < TranslatedBatches && failures.Count < 10; batch++)
                {
                    var input = new CpuState();
                    input.Gpr[3] = _cpu.DataAddress; // rbx
                    input.Gpr[15] = TranslatedIterations;
                    input.Rflags = 2;
                    Span<byte> data = _cpu.Data;
                    data.Clear();
                    FillFpOperands(data, r, form.Lanes, TranslatedIterations);
                    uint mxcsr = r.Next(3) switch { 0 => 0x1FA0, 1 => MxcsrReset, _ => FpValues.Mxcsr(r) };
                    MemoryMarshal.Write(data[MxcsrInOff..], mxcsr);
                    _cpu.Prepare(code, input);
                    (CpuState native, byte[] nativeMem, VcpuExit exit, CpuState emu, byte[] emuMem) = RunBoth();
                    runs++;
                    string describe = $"{form.Name}, MXCSR 0x{mxcsr:x4}, batch {batch}";
                    if (exit.Kind != VcpuExitKind.Halt)
                    {
                        failures.Add($"{describe}: emulator stopped with {exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
                        continue;
                    }
                    var diff = new StringBuilder();
                    for (int i = 0; i < TranslatedIterations; i++)
                    {
                        var n = MemoryMarshal.Read<Vector128<ulong>>(nativeMem.AsSpan(ResultsOff + (i * 16)));
                        var e = MemoryMarshal.Read<Vector128<ulong>>(emuMem.AsSpan(ResultsOff + (i * 16)));
                        uint nmx = MemoryMarshal.Read<uint>(nativeMem.AsSpan(MxcsrOutOff + (i * 4)));
                        uint emx = MemoryMarshal.Read<uint>(emuMem.AsSpan(MxcsrOutOff + (i * 4)));
                        if (n != e || nmx != emx)
                        {
                            Span<byte> pair = _cpu.Data.Slice(OperandsOff + (i * 32), 32);
                            diff.Append($" iteration {i}: a {MemoryMarshal.Read<Vector128<ulong>>(pair)} b {MemoryMarshal.Read<Vector128<ulong>>(pair[16..])}:"
                                + $" native {n} MXCSR 0x{nmx:x4}, emulator {e} MXCSR 0x{emx:x4};");
                        }
                    }
                    if (!nativeMem.AsSpan().SequenceEqual(emuMem))
                    {
                        diff.Append(" memory differs;");
                    }
                    for (int i = 0; i < 16; i++)
                    {
                        if (native.Gpr[i] != emu.Gpr[i] || native.Xmm[i] != emu.Xmm[i])
                        {
                            diff.Append($" register {i} differs;");
                        }
                    }
                    CompareFx(native.Fx, emu.Fx, diff);
                    if (diff.Length > 0)
                    {
                        failures.Add($"{describe}:{diff}");
                    }
                }
            }
        }
        finally
        {
            emulator.JitThreshold = threshold;
            emulator.Chaining = chaining;
        }
        long translated = emulator.TranslatedBlocksCompleted - translatedBefore;
        Assert.True(failures.Count == 0, string.Join('\n', failures));
        // Each run's loop block is translated after its first iteration: nearly all iterations run translated.
        Assert.True(translated >= runs * (TranslatedIterations - 2), $"only {translated} translated block runs in {runs} runs");
    }
}
