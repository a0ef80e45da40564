using ChainMode = Paravirt.Hypervisor.Backends.Emulator.BlockCompiler.ChainMode;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// An indirect exit whose link slot holds another block looks its target up in the direct-mapped block cache from
/// translated code (inline IL, <c>BlockCompiler.Emitter.FindTranslated</c>): the entry it finds must start at the
/// target. Two targets that share an entry of that cache, taken in turn, fail unless the lookup checks the start.
/// </summary>
public sealed class IndirectLookupTests
{
    private const ulong Loop = EmuHarness.CodeAddress + 0x40, Back = EmuHarness.CodeAddress + 0x80;
    private const ulong A = 0x10_0100, B = 0x10_1101; // CodeCache.FastSlot: (x ^ x >> 12) & 4095 is 0 for both

    private static (VcpuRegisters Regs, ulong Count, long Links) Run(int threshold)
    {
        byte[] main = EmuHarness.Assemble(a =>
        {
            a.xor(Iced.Intel.AssemblerRegisters.esi, Iced.Intel.AssemblerRegisters.esi);
            a.xor(Iced.Intel.AssemblerRegisters.edi, Iced.Intel.AssemblerRegisters.edi);
            a.mov(Iced.Intel.AssemblerRegisters.r15d, 3000);
            a.jmp(Loop);
        });
        using EmuGuest guest = EmuHarness.Create(main, budget: 1_000_000);
        void Put(ulong at, Action<Assembler> build) => guest.Memory.Write(new GuestAddress(at), EmuHarness.Assemble(build, at));
        Put(Loop, a =>
        {
            a.mov(Iced.Intel.AssemblerRegisters.rcx, A);
            a.mov(Iced.Intel.AssemblerRegisters.rdx, B);
            a.test(Iced.Intel.AssemblerRegisters.r15d, 1);
            a.cmovz(Iced.Intel.AssemblerRegisters.rcx, Iced.Intel.AssemblerRegisters.rdx);
            a.jmp(Iced.Intel.AssemblerRegisters.rcx);
        });
        Put(Back, a =>
        {
            a.sub(Iced.Intel.AssemblerRegisters.r15d, 1);
            a.jnz(Loop);
            a.hlt();
        });
        Put(A, a => { a.add(Iced.Intel.AssemblerRegisters.rsi, Iced.Intel.AssemblerRegisters.r15); a.jmp(Back); });
        Put(B, a => { a.add(Iced.Intel.AssemblerRegisters.rdi, Iced.Intel.AssemblerRegisters.r15); a.jmp(Back); });
        var cpu = (EmulatorVcpu)guest.Vcpu;
        cpu.JitThreshold = threshold;
        cpu.Chaining = ChainMode.Translated;
        VcpuExit exit = cpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} at 0x{exit.Rip:x}: {exit.Detail}");
        return (cpu.GetRegisters(), cpu.Retired, cpu.LinksMade);
    }

    [Fact]
    public void Two_targets_sharing_a_cache_entry_each_run_their_own_block()
    {
        Assert.Equal(CodeCache.FastSlot(A), CodeCache.FastSlot(B));
        var interpreted = Run(threshold: 0);
        var translated = Run(threshold: 1);
        Assert.True(translated.Links > 0, "no link was made");
        Assert.Equal(interpreted.Regs, translated.Regs);
        Assert.Equal(interpreted.Count, translated.Count);
        Assert.Equal((2_250_000UL, 2_251_500UL), (translated.Regs.Rsi, translated.Regs.Rdi)); // odd r15 to A, even to B
    }
}
