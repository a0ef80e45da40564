using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>The emulator allocates nothing per executed instruction once a guest's blocks are decoded.</summary>
public sealed class AllocationTests
{
    [Fact]
    public void Steady_state_execution_allocates_nothing_per_instruction()
    {
        // A loop of loads, stores, arithmetic, SSE, SSE and x87 floating point (every access through the software
        // TLB), then a hypercall; run twice: the first pass decodes (and translates) the blocks, the second, 2M+
        // instructions, is measured.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label again = a.CreateLabel(), loop = a.CreateLabel();
            a.Label(ref again);
            a.mov(ecx, 100_000);
            a.mov(rbx, 0x1F_0000); // data inside the harness's 2 MiB, below the stack
            a.Label(ref loop);
            a.mov(rax, __qword_ptr[rbx]);
            a.add(rax, rcx);
            a.imul(rax, rax, 3);
            a.mov(__qword_ptr[rbx + 8], rax);
            a.pxor(xmm0, xmm0);
            a.movdqu(__xmmword_ptr[rbx + 16], xmm0);
            // Floating point: SSE scalar and packed (fast and soft-float paths), x87, a string compare.
            a.cvtsi2sd(xmm1, rcx);
            a.mulsd(xmm1, xmm1);
            a.sqrtsd(xmm2, xmm1);
            a.divpd(xmm2, xmm1);
            a.cvttsd2si(rdx, xmm2);
            a.fild(__qword_ptr[rbx]);
            a.fsqrt();
            a.fsin();
            a.fstp(__qword_ptr[rbx + 32]);
            a.fld(__tword_ptr[rbx + 48]);  // m80 through LoadBytes/StoreBytes (the TLB, or a walk of both pages)
            a.fstp(__tword_ptr[rbx + 48]);
            a.pcmpistrm(xmm3, xmm2, 0x0C); // (writes xmm0; pcmpistri would clobber the loop counter)
            a.dec(ecx);
            a.jnz(loop);
            a.mov(eax, 0);
            a.mov(r11, 0x3000);
            a.call(r11);
            a.jmp(again);
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, vm, vcpu) = guest;
        memory.Write(new GuestAddress(GuestLayout.HypercallPage), HypercallStub.Bytes);
        Assert.True(HypercallTrap.IsHypercall(vcpu.Run()), $"{vcpu.Run().Kind} {vcpu.Run().Detail} at 0x{vcpu.Run().Rip:x}"); // warm-up pass
        HypercallTrap.Complete(vcpu, 0);
        ulong before = vcpu.InstructionsRetired!.Value;
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        Assert.True(HypercallTrap.IsHypercall(vcpu.Run()), $"{vcpu.Run().Kind} {vcpu.Run().Detail} at 0x{vcpu.Run().Rip:x}"); // measured pass
        long grown = GC.GetAllocatedBytesForCurrentThread() - allocated;
        ulong executed = vcpu.InstructionsRetired!.Value - before;
        Assert.True(executed > 2_000_000, $"only {executed} instructions ran");
        Assert.True(grown < 4096, $"{grown} bytes allocated for {executed} instructions");
    }
}
