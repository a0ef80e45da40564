using System.Runtime.InteropServices;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The inline SSE floating-point ops of translated code against the interpreter, where the real CPU cannot be asked
/// in-process: MXCSR with exceptions unmasked (#XM in the middle of a translated block: the destination unchanged,
/// MXCSR's flags, rip, the instruction count and the exit must be the interpreter's), next to DAZ/FTZ and every
/// rounding mode. The loops are those of <see cref="DifferentialTests.TranslatedFpArithmetic_MatchesTheHostCpu"/>.
/// </summary>
public sealed class TranslatedFpTests
{
    private const ulong DataAddress = EmuHarness.CodeAddress + 0x2000;

    private static (VcpuExit Exit, VcpuRegisters Regs, Vector128<byte>[] Xmm, uint Mxcsr, ulong Count, byte[] Data, long Translated) Run(
        byte[] code, byte[] data, int threshold, ulong dataAddress = DataAddress, int iterations = DifferentialTests.TranslatedIterations)
    {
        using EmuGuest guest = EmuHarness.Create(code, budget: 1_000_000);
        var cpu = (EmulatorVcpu)guest.Vcpu;
        cpu.JitThreshold = threshold;
        guest.Memory.Write(new GuestAddress(dataAddress), data);
        cpu.SetRegister(3, dataAddress);
        cpu.SetRegister(6, 0);
        cpu.SetRegister(7, 0);
        cpu.SetRegister(15, (ulong)iterations);
        VcpuExit exit = guest.Vcpu.Run();
        var xmm = new Vector128<byte>[16];
        for (int i = 0; i < 16; i++)
        {
            xmm[i] = cpu.GetXmm(i);
        }
        return (exit, guest.Vcpu.GetRegisters(), xmm, cpu.Mxcsr, cpu.Retired, guest.Memory.GetSpan(new GuestAddress(dataAddress), (ulong)data.Length).ToArray(),
            cpu.TranslatedBlocksCompleted);
    }

    [Fact]
    public void UnmaskedExceptionsDazFtzAndRoundingModes_InTranslatedCode_MatchTheInterpreter()
    {
        var r = new Random(0x11E);
        int faults = 0, faultsAfterTranslation = 0, runs = 0;
        foreach (DifferentialTests.FpForm form in DifferentialTests.InlineFpForms())
        {
            byte[] code = EmuHarness.Assemble(a =>
            {
                DifferentialTests.EmitFpLoop(a, form);
                a.hlt();
            });
            for (int batch = 0; batch < 12; batch++)
            {
                byte[] data = new byte[0x1000];
                // Ordinary operands first, so the loop is translated before a corner case comes.
                DifferentialTests.FillFpOperands(data, r, form.Lanes, DifferentialTests.TranslatedIterations, ordinary: r.Next(4, 24));
                uint mxcsr = FpValues.Mxcsr(r);
                if (batch % 3 != 2)
                {
                    // Unmask some exceptions (PE rarely: nearly every op is inexact).
                    uint unmask = (uint)r.Next(1, 32) | (r.Next(6) == 0 ? 0x20u : 0);
                    mxcsr &= ~(unmask << 7);
                }
                MemoryMarshal.Write(data.AsSpan(DifferentialTests.MxcsrInOff), mxcsr);
                var interpreted = Run(code, data, threshold: 0);
                var translated = Run(code, data, threshold: 1);
                runs++;
                string describe = $"{form.Name}, MXCSR 0x{mxcsr:x4}, batch {batch}";
                Assert.True(interpreted.Exit.Kind == translated.Exit.Kind && interpreted.Exit.Detail == translated.Exit.Detail && interpreted.Exit.Rip == translated.Exit.Rip,
                    $"{describe}: exit {interpreted.Exit.Kind} '{interpreted.Exit.Detail}' at 0x{interpreted.Exit.Rip:x} vs {translated.Exit.Kind} '{translated.Exit.Detail}' at 0x{translated.Exit.Rip:x}");
                Assert.True(interpreted.Regs == translated.Regs, $"{describe}: registers\n{interpreted.Regs}\n{translated.Regs}");
                Assert.True(interpreted.Xmm.AsSpan().SequenceEqual(translated.Xmm), $"{describe}: XMM registers differ");
                Assert.True(interpreted.Mxcsr == translated.Mxcsr, $"{describe}: MXCSR 0x{interpreted.Mxcsr:x4} vs 0x{translated.Mxcsr:x4}");
                Assert.True(interpreted.Count == translated.Count, $"{describe}: count {interpreted.Count} vs {translated.Count}");
                Assert.True(interpreted.Data.AsSpan().SequenceEqual(translated.Data), $"{describe}: memory differs");
                Assert.Equal(0, interpreted.Translated);
                if (interpreted.Exit.Kind == VcpuExitKind.Fault)
                {
                    faults++;
                    faultsAfterTranslation += translated.Translated > 0 ? 1 : 0;
                }
            }
        }
        // The comparison must have seen #XM raised from translated code, not only clean runs.
        Assert.True(faultsAfterTranslation >= runs / 4, $"{faults} of {runs} runs raised an exception, {faultsAfterTranslation} after translated iterations");
    }

    [Fact]
    public void Each_inline_op_in_a_translated_block_raises_NM_once_CR0_TS_is_set()
    {
        foreach (DifferentialTests.FpForm form in DifferentialTests.InlineFpForms())
        {
            byte[] code = EmuHarness.Assemble(a =>
            {
                Label loop = a.CreateLabel(), block = a.CreateLabel();
                a.movapd(xmm0, __xmmword_ptr[rbx]);
                a.movapd(xmm1, __xmmword_ptr[rbx + 16]);
                a.mov(r15d, 100);
                a.Label(ref loop);
                a.call(block);                 // hot: translated before CR0.TS is set
                a.dec(r15d);
                a.jnz(loop);
                a.mov(rax, cr0);
                a.or(rax, 8);                  // CR0.TS: every SSE instruction raises #NM now
                a.mov(cr0, rax);
                a.mov(rax, 12345);
                a.call(block);
                a.hlt();
                a.Label(ref block);
                form.Emit(a);                  // the block's first op: the #NM must come from it, nothing written
                a.ret();
            });
            byte[] data = new byte[0x1000];
            DifferentialTests.FillFpOperands(data, new Random(7), form.Lanes, 1, ordinary: 1);
            var interpreted = Run(code, data, threshold: 0);
            var translated = Run(code, data, threshold: 1);
            string describe = form.Name;
            Assert.True(translated.Translated > 0, $"{describe}: no translated block ran");
            Assert.True(interpreted.Exit.Kind == VcpuExitKind.Fault && interpreted.Exit.Detail!.Contains("#NM", StringComparison.Ordinal),
                $"{describe}: the interpreter gave {interpreted.Exit.Kind} '{interpreted.Exit.Detail}'");
            Assert.True(interpreted.Exit.Kind == translated.Exit.Kind && interpreted.Exit.Detail == translated.Exit.Detail && interpreted.Exit.Rip == translated.Exit.Rip,
                $"{describe}: exit {interpreted.Exit.Kind} '{interpreted.Exit.Detail}' at 0x{interpreted.Exit.Rip:x} vs {translated.Exit.Kind} '{translated.Exit.Detail}' at 0x{translated.Exit.Rip:x}");
            Assert.True(interpreted.Regs == translated.Regs, $"{describe}: registers\n{interpreted.Regs}\n{translated.Regs}");
            Assert.True(interpreted.Xmm.AsSpan().SequenceEqual(translated.Xmm), $"{describe}: XMM registers differ");
            Assert.True(interpreted.Mxcsr == translated.Mxcsr && interpreted.Count == translated.Count, $"{describe}: MXCSR or count differ");
        }
    }

    [Fact]
    public void A_memory_source_that_faults_or_is_misaligned_in_a_translated_loop_stops_where_the_interpreter_does()
    {
        const int Span = 0x300;
        ulong dataAddress = EmuHarness.MemorySize - 16 - Span; // the 48th iteration reads past guest memory: #PF
        byte[] data = new byte[16 + Span];
        for (int i = 0; i + 8 <= data.Length; i += 8)
        {
            MemoryMarshal.Write(data.AsSpan(i), 1.5 + i);
        }
        int runs = 0;
        foreach (DifferentialTests.FpForm form in DifferentialTests.InlineFpForms())
        {
            if (!form.Name.Contains("[mem]", StringComparison.Ordinal))
            {
                continue;
            }
            // Misaligned: from the tenth iteration on, the operand is 8 bytes off (#GP for the aligned packed forms).
            foreach (bool misalign in new[] { false, true })
            {
                byte[] code = EmuHarness.Assemble(a =>
                {
                    Label top = a.CreateLabel(), aligned = a.CreateLabel();
                    a.mov(__dword_ptr[rsp - 8], 0x1FA0);     // PE set: exact and inexact results alike take the fast path
                    a.ldmxcsr(__dword_ptr[rsp - 8]);
                    a.Label(ref top);
                    a.movapd(xmm0, xmm2);
                    form.Emit(a);
                    a.add(rsi, 16);
                    if (misalign)
                    {
                        a.cmp(r15, 91);
                        a.jne(aligned);
                        a.add(rsi, 8);
                    }
                    a.Label(ref aligned);
                    a.sub(r15, 1);
                    a.jnz(top);
                    a.hlt();
                });
                var interpreted = Run(code, data, threshold: 0, dataAddress, iterations: 100);
                var translated = Run(code, data, threshold: 1, dataAddress, iterations: 100);
                runs++;
                string describe = $"{form.Name}{(misalign ? ", misaligned" : "")}";
                Assert.True(interpreted.Exit.Kind == VcpuExitKind.Fault, $"{describe}: the interpreter gave {interpreted.Exit.Kind} '{interpreted.Exit.Detail}'");
                Assert.True(translated.Translated > 0, $"{describe}: no translated block ran");
                Assert.True(interpreted.Exit.Kind == translated.Exit.Kind && interpreted.Exit.Detail == translated.Exit.Detail && interpreted.Exit.Rip == translated.Exit.Rip,
                    $"{describe}: exit {interpreted.Exit.Kind} '{interpreted.Exit.Detail}' at 0x{interpreted.Exit.Rip:x} vs {translated.Exit.Kind} '{translated.Exit.Detail}' at 0x{translated.Exit.Rip:x}");
                Assert.True(interpreted.Regs == translated.Regs, $"{describe}: registers\n{interpreted.Regs}\n{translated.Regs}");
                Assert.True(interpreted.Xmm.AsSpan().SequenceEqual(translated.Xmm), $"{describe}: XMM registers differ");
                Assert.True(interpreted.Mxcsr == translated.Mxcsr && interpreted.Count == translated.Count, $"{describe}: MXCSR or count differ");
            }
        }
        Assert.True(runs >= 40, $"only {runs} memory forms");
    }
}
