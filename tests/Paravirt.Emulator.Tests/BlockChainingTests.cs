using Paravirt.Hypervisor.Backends.Emulator;
using static Iced.Intel.AssemblerRegisters;
using ChainMode = Paravirt.Hypervisor.Backends.Emulator.BlockCompiler.ChainMode;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Block chaining (README "Block chaining"): a translated block continues into its linked successor without returning
/// to the dispatcher. These tests fail if a link outlives what it stands for (overwritten code, a changed mapping),
/// or if a chain runs past the instruction budget, a kick (timeout, cancellation) or an interrupt request.
/// </summary>
public sealed class BlockChainingTests
{
    private const ulong P = 1, RW = 2;

    /// <summary>
    /// A chain limit that would keep control in translated code for many seconds: the tests that wait for a kick, an
    /// interrupt request or a host write set it, so they fail unless every link checks the attention word itself.
    /// </summary>
    private const int PromptnessChainLimit = 1 << 30;

    /// <summary>
    /// The guest's vCPU set to translate a block from its <paramref name="threshold"/>th run (0: interpret only) and
    /// link blocks as <paramref name="mode"/> says, at most <paramref name="chainLimit"/> in a row (null: the default).
    /// </summary>
    private static EmulatorVcpu Chained(EmuGuest guest, ChainMode mode, int? chainLimit = null, int threshold = 1)
    {
        var cpu = (EmulatorVcpu)guest.Vcpu;
        cpu.JitThreshold = threshold;
        cpu.Chaining = mode;
        if (chainLimit is int limit)
        {
            cpu.ChainLimit = limit;
        }
        return cpu;
    }

    /// <summary>Runs <paramref name="code"/> translated after one run with <paramref name="mode"/> (threshold 0: interpreted only).</summary>
    private static (VcpuExit Exit, VcpuRegisters Regs, ulong Count, long Dispatches, long Links) Run(byte[] code, ChainMode mode, int threshold = 1, ulong? budget = null)
    {
        using EmuGuest guest = EmuHarness.Create(code, budget: budget);
        EmulatorVcpu cpu = Chained(guest, mode, threshold: threshold);
        VcpuExit exit = cpu.Run();
        return (exit, cpu.GetRegisters(), cpu.Retired, cpu.TranslatedBlocksCompleted, cpu.LinksMade);
    }

    /// <summary>A loop over four blocks: a jmp, a direct call, a ret and a jcc back edge (every kind of link slot).</summary>
    private static byte[] FourBlockLoop(int iterations) => EmuHarness.Assemble(a =>
    {
        Label top = a.CreateLabel(), mid = a.CreateLabel(), f = a.CreateLabel();
        a.mov(ecx, iterations);
        a.Label(ref top);
        a.add(rax, rcx);
        a.jmp(mid);
        a.Label(ref f);
        a.add(rbx, 3);
        a.ret();
        a.Label(ref mid);
        a.xor(rdx, rax);
        a.call(f);
        a.dec(ecx);
        a.jnz(top);
        a.hlt();
    });

    [Fact]
    public void A_chained_loop_matches_the_interpreter_and_skips_the_dispatcher()
    {
        byte[] code = FourBlockLoop(20_000);
        var interpreted = Run(code, ChainMode.Off, threshold: 0);
        var off = Run(code, ChainMode.Off);
        var dispatcher = Run(code, ChainMode.Dispatcher);
        var chained = Run(code, ChainMode.Translated);
        foreach (var run in new[] { off, dispatcher, chained })
        {
            Assert.Equal(VcpuExitKind.Halt, run.Exit.Kind);
            Assert.Equal(interpreted.Regs, run.Regs);
            Assert.Equal(interpreted.Count, run.Count);
        }
        Assert.Equal(0, off.Links);
        Assert.True(chained.Links > 0 && dispatcher.Links > 0, "no link was made");
        // Off: every block returns to the dispatcher (80,000 of them); chained: once per ChainLimit blocks.
        Assert.True(off.Dispatches >= 79_000, $"{off.Dispatches} translated runs without chaining");
        Assert.True(chained.Dispatches * 20 < off.Dispatches, $"chaining returned to the dispatcher {chained.Dispatches} times");
    }

    [Theory]
    [InlineData(1_000UL)]
    [InlineData(1_001UL)]
    [InlineData(12_345UL)]
    [InlineData(100_002UL)]
    [InlineData(100_003UL)]
    public void A_chain_stops_exactly_at_the_instruction_budget(ulong budget)
    {
        // An endless self-linked block next to a longer loop: the budget falls in every position of a block.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel(), spin = a.CreateLabel();
            a.mov(ecx, 5_000);
            a.Label(ref top);
            a.inc(rax);
            a.add(rbx, rax);
            a.dec(ecx);
            a.jnz(top);
            a.Label(ref spin);
            a.inc(rdx);
            a.jmp(spin);
        });
        var interpreted = Run(code, ChainMode.Off, threshold: 0, budget: budget);
        var chained = Run(code, ChainMode.Translated, budget: budget);
        Assert.Equal(VcpuExitKind.BudgetExhausted, chained.Exit.Kind);
        Assert.Equal(budget, chained.Count);
        Assert.Equal(interpreted.Count, chained.Count);
        Assert.Equal(interpreted.Regs, chained.Regs);
        Assert.Equal(interpreted.Exit.Rip, chained.Exit.Rip);
    }

    [Fact]
    public void A_kick_stops_an_endless_chained_loop_and_the_loop_resumes()
    {
        // The timeout and cancellation path (IVcpu.Interrupt) against `jmp $`-style code that never leaves translated code.
        using EmuGuest guest = EmuHarness.Create(EmuHarness.CountingSpin());
        EmulatorVcpu cpu = Chained(guest, ChainMode.Translated, PromptnessChainLimit);
        for (int round = 0; round < 2; round++)
        {
            ulong before = cpu.GetRegisters().Rax;
            VcpuExit exit = RunAndPoke(cpu, cpu.Interrupt, "the kick was not seen inside the chain");
            Assert.Equal(VcpuExitKind.Interrupted, exit.Kind);
            VcpuRegisters r = cpu.GetRegisters();
            Assert.True(r.Rax > before, "the loop did not run");
            Assert.Equal(cpu.Retired, r.Rax * 2); // exact count: two instructions per iteration, none lost
        }
        Assert.True(cpu.LinksMade > 0);
    }

    [Fact]
    public void An_interrupt_requested_during_a_chained_loop_is_delivered()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label idtr = a.CreateLabel(), handler = a.CreateLabel(), spin = a.CreateLabel();
            a.lidt(__[idtr]);
            a.sti();
            a.nop();
            a.Label(ref spin);                                // until the handler runs: inc, test, jz
            a.inc(rax);
            a.test(rbx, rbx);
            a.jz(spin);
            a.hlt();
            a.Label(ref handler);
            a.inc(rbx);
            a.iretq();
            EmuHarness.Idtr(a, ref idtr);
        });
        using EmuGuest guest = EmuHarness.Create(code);
        EmulatorVcpu cpu = Chained(guest, ChainMode.Translated, PromptnessChainLimit);
        EmuHarness.WriteInterruptGate(guest.Memory, 0x40, EmuHarness.AddressOf(code, [0x48, 0xFF, 0xC3])); // inc rbx
        VcpuExit exit = RunAndPoke(cpu, () => cpu.RequestInterrupt(0x40), "the interrupt request was not seen inside the chain");
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} {exit.Detail}");
        Assert.Equal(1UL, cpu.GetRegisters().Rbx);
        Assert.True(cpu.LinksMade > 0);
    }

    [Fact]
    public void Code_a_chained_loop_overwrites_is_run_new_across_the_link()
    {
        // The loop calls f (another page) through a direct, linked call; between rounds it patches f's immediate with a
        // guest store. A link that outlived f's old code would keep returning the old value.
        const ulong f = EmuHarness.CodeAddress + 0x1000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label outer = a.CreateLabel(), loop = a.CreateLabel();
            a.mov(ebx, 3);
            a.Label(ref outer);
            a.mov(ecx, 2_000);
            a.Label(ref loop);
            a.call((ulong)f);
            a.add(r12, rax);
            a.dec(ecx);
            a.jnz(loop);
            a.inc(__dword_ptr[(long)f + 1]);                 // mov eax, imm32: the immediate
            a.dec(ebx);
            a.jnz(outer);
            a.hlt();
        });
        byte[] function = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 1);
            a.ret();
        }, f);
        foreach (ChainMode mode in new[] { ChainMode.Translated, ChainMode.Dispatcher })
        {
            using EmuGuest guest = EmuHarness.Create(code);
            guest.Memory.Write(new GuestAddress(f), function);
            EmulatorVcpu cpu = Chained(guest, mode);
            VcpuExit exit = cpu.Run();
            Assert.True(exit.Kind == VcpuExitKind.Halt, $"{mode}: {exit.Kind} {exit.Detail}");
            Assert.Equal(2_000UL * (1 + 2 + 3), cpu.GetRegisters().R12);
            Assert.True(cpu.LinksMade > 0);
        }
    }

    [Fact]
    public void A_host_write_into_a_chained_blocks_page_while_it_runs_is_seen()
    {
        // The guest spins calling f until f returns something else; the host rewrites f from another thread (as a
        // block device or a debugger writes guest memory) while the chain runs.
        const ulong f = EmuHarness.CodeAddress + 0x1000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label loop = a.CreateLabel();
            a.Label(ref loop);
            a.call((ulong)f);
            a.inc(r12);
            a.cmp(eax, 1);
            a.je(loop);
            a.hlt();
        });
        byte[] Function(int value) => EmuHarness.Assemble(a =>
        {
            a.mov(eax, value);
            a.ret();
        }, f);
        using EmuGuest guest = EmuHarness.Create(code);
        guest.Memory.Write(new GuestAddress(f), Function(1));
        EmulatorVcpu cpu = Chained(guest, ChainMode.Translated, PromptnessChainLimit);
        VcpuExit exit = RunAndPoke(cpu, () => guest.Memory.Write(new GuestAddress(f), Function(2)), "the chained loop kept running the old code");
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} {exit.Detail}");
        Assert.Equal(2UL, cpu.GetRegisters().Rax);
        Assert.True(cpu.LinksMade > 0);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_chained_call_into_a_remapped_page_runs_the_new_frame(bool reloadCr3)
    {
        // A linked direct call to a linear page whose mapping changes (a PTE rewrite, then INVLPG or a CR3 reload):
        // the link must not take the old frame's block.
        const ulong pt = 0x30_0000, frame1 = 0x30_1000, frame2 = 0x30_2000, virt = 0x40_0000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label outer = a.CreateLabel(), loop = a.CreateLabel(), remapped = a.CreateLabel();
            a.mov(rax, (long)(pt | P | RW));
            a.mov(rbx, (long)(GuestLayout.FirstPd + (2 * 8)));
            a.mov(__qword_ptr[rbx], rax);                   // 4-6 MiB: a page table instead of a 2 MiB page
            a.mov(rax, cr3);
            a.mov(cr3, rax);
            a.mov(esi, 2);
            a.Label(ref outer);
            a.mov(ecx, 2_000);
            a.Label(ref loop);
            a.call(virt);
            a.add(r12, rax);
            a.dec(ecx);
            a.jnz(loop);
            a.mov(rax, (long)(frame2 | P | RW));
            a.mov(__qword_ptr[(long)pt], rax);              // the same linear page, another frame
            if (reloadCr3)
            {
                a.mov(rax, cr3);
                a.mov(cr3, rax);
            }
            else
            {
                a.mov(rbx, (long)virt);
                a.invlpg(__[rbx]);
            }
            a.dec(esi);
            a.jnz(outer);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code, memorySize: 8UL << 20);
        guest.Memory.WriteUInt64(new GuestAddress(pt), frame1 | P | RW);
        guest.Memory.Write(new GuestAddress(frame1), new byte[] { 0xB8, 1, 0, 0, 0, 0xC3 }); // mov eax, 1; ret
        guest.Memory.Write(new GuestAddress(frame2), new byte[] { 0xB8, 2, 0, 0, 0, 0xC3 });
        var cpu = (EmulatorVcpu)guest.Vcpu;
        cpu.JitThreshold = 1;
        cpu.Chaining = ChainMode.Translated;
        cpu.ChainLimit = PromptnessChainLimit;
        VcpuExit exit = cpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} {exit.Detail}");
        Assert.Equal(2_000UL * (1 + 2), cpu.GetRegisters().R12);
        Assert.True(cpu.LinksMade > 0);
    }

    /// <summary>
    /// Runs <paramref name="cpu"/> on a thread, does <paramref name="poke"/> from this one once the chain is running,
    /// and fails with <paramref name="missed"/> unless the run ends within 10 s (then it is kicked, and always joined:
    /// the guest's memory must outlive the run).
    /// </summary>
    private static VcpuExit RunAndPoke(EmulatorVcpu cpu, Action poke, string missed)
    {
        VcpuExit exit = default;
        var runner = new Thread(() => exit = cpu.Run()) { IsBackground = true };
        runner.Start();
        Thread.Sleep(30);
        poke();
        if (!runner.Join(TimeSpan.FromSeconds(10)))
        {
            cpu.Interrupt();
            runner.Join();
            Assert.Fail(missed);
        }
        return exit;
    }
}
