using Paravirt.Abi;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

public sealed class EmulatorBehaviourTests
{
    [Fact]
    public void Probe_IsAlwaysAvailable()
    {
        var backend = new EmulatorBackend();
        Assert.Equal("emulator", backend.Name);
        BackendAvailability a = backend.Probe();
        Assert.True(a.IsAvailable);
        Assert.Contains("emulator", a.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Halt_StopsWithHaltExit_AndCountsInstructions()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 40);
            a.add(eax, 2);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, vm, vcpu) = guest;
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        Assert.Equal(42UL, vcpu.GetRegisters().Rax);
        Assert.Equal(3UL, vcpu.InstructionsRetired!.Value);
    }

    [Fact]
    public void Hypercall_RoundTripThroughTheHypercallPage_ReturnsRax()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 0x101);          // code
            a.mov(edi, 7);              // a1
            a.mov(esi, 8);
            a.mov(edx, 9);
            a.mov(r10d, 10);
            a.mov(r8d, 11);
            a.mov(rbx, 0x3000);
            a.call(rbx);                // the hypercall page
            a.mov(rcx, rax);            // the result, after the stub's ret
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, vm, vcpu) = guest;
        memory.Write(new GuestAddress(GuestLayout.HypercallPage), HypercallStub.Bytes);
        VcpuExit exit = vcpu.Run();
        Assert.True(HypercallTrap.IsHypercall(exit), $"{exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
        Assert.Equal((ulong)HypercallPage.IoPort, exit.Address);
        Assert.Equal(GuestLayout.HypercallPage + HypercallPage.EntryOffset, exit.Rip); // the out, completed by the next run
        Assert.Equal(exit.Rip, vcpu.GetRegisters().Rip);
        Assert.Equal(new HypercallArgs(0x101, 7, 8, 9, 10, 11), HypercallTrap.ReadArguments(vcpu.GetRegisters()));
        HypercallTrap.Complete(vcpu, -22);
        exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        Assert.Equal(unchecked((ulong)-22L), vcpu.GetRegisters().Rcx);
    }

    [Fact]
    public void UnimplementedInstruction_IsAnEmulatorGapNamingItAndItsAddress_NotAGuestFault()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.nop();
            a.paddb(mm0, mm1); // MMX: part of x86-64, not emulated (and not advertised)
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, vm, vcpu) = guest;
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Unimplemented, exit.Kind);
        Assert.Equal("the emulator does not implement 'paddb mm0,mm1' at 0x100001", exit.Detail);
        Assert.Equal(0x100001UL, exit.Rip);
        Assert.Equal(1UL, vcpu.InstructionsRetired!.Value);
    }

    [Fact]
    public void Ud2_IsAnInvalidOpcodeFault()
    {
        byte[] code = EmuHarness.Assemble(a => a.ud2());
        Assert.Equal("invalid opcode (#UD): 'ud2' at 0x100000", EmuHarness.RunToFault(code));
    }

    [Fact]
    public void State_TakenAtAPortExit_ResumesAfterTheOut_OnAnotherVcpu()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 5);
            a.movq(xmm3, rax);
            a.@out(0x80, al);
            a.add(eax, 1);          // runs once, on whichever vCPU continues
            a.movq(rcx, xmm3);
            a.hlt();
        });
        using EmuGuest first = EmuHarness.Create(code);
        VcpuExit exit = first.Vcpu.Run();
        Assert.Equal(VcpuExitKind.IoOut, exit.Kind);
        Assert.Equal(5UL, exit.Data);
        VcpuState state = first.Vcpu.GetState();
        Assert.Equal(exit.Rip + 2, state.Registers.Rip); // the out is complete in a state
        Assert.Equal(5, state.Xmm(3)[0]);

        using EmuGuest second = EmuHarness.Create(code);
        second.Vcpu.SetState(state);
        Assert.Equal(VcpuExitKind.Halt, second.Vcpu.Run().Kind);
        Assert.Equal((6UL, 5UL), (second.Vcpu.GetRegisters().Rax, second.Vcpu.GetRegisters().Rcx));
    }

    [Fact]
    public void AccessOutsideGuestMemory_IsAFaultExit_NotAnException()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rbx, 0x1FFFFC);
            a.mov(rax, __qword_ptr[rbx]); // 8 bytes at 2 MiB - 4: crosses the end
            a.hlt();
        });
        Assert.Equal("page fault: read of 8 bytes at 0x1ffffc outside guest memory", EmuHarness.RunToFault(code));
    }

    [Fact]
    public void StoreToANonCanonicalAddress_IsAGeneralProtectionFault()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rbx, unchecked((long)0x8000_0000_0000_0000UL));
            a.mov(__dword_ptr[rbx + 8], eax);
            a.hlt();
        });
        Assert.Equal("general protection fault (#GP): write of 4 bytes at non-canonical address 0x8000000000000008", EmuHarness.RunToFault(code));
    }

    [Theory]
    [InlineData(0xFFFF_FFFF_FFFF_FFF0UL)]
    [InlineData(0x20_0000UL)]
    public void StoreOutsideGuestMemory_IsAFaultExit(ulong address)
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rbx, (long)address);
            a.mov(__dword_ptr[rbx + 8], eax);
            a.hlt();
        });
        Assert.StartsWith("page fault: write of 4 bytes at 0x", EmuHarness.RunToFault(code), StringComparison.Ordinal);
    }

    [Fact]
    public void JumpOutsideGuestMemory_IsAFaultExit()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rax, 0x7000_0000_0000L);
            a.jmp(rax);
        });
        Assert.Contains("instruction fetch at 0x700000000000 outside guest memory", EmuHarness.RunToFault(code), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DivideByZero_IsADivideErrorFault(bool signed)
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 5);
            a.xor(ecx, ecx);
            if (signed)
            {
                a.idiv(ecx);
            }
            else
            {
                a.div(ecx);
            }
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, vm, vcpu) = guest;
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Contains("divide error", exit.Detail, StringComparison.Ordinal);
        Assert.Equal(EmuHarness.CodeAddress + 7, exit.Rip);
    }

    private static byte[] CountingLoop(int iterations) => EmuHarness.Assemble(a =>
    {
        Label top = a.CreateLabel();
        a.mov(ecx, iterations);
        a.xor(eax, eax);
        a.Label(ref top);
        a.add(rax, rcx);
        a.dec(ecx);
        a.jnz(top);
        a.hlt();
    });

    [Fact]
    public void InstructionBudget_IsHonouredExactly()
    {
        // 2 + 3 * 1000 + 1 instructions in all; stop after exactly 1234.
        using EmuGuest guest = EmuHarness.Create(CountingLoop(1000), budget: 1234);
        var (memory, vm, vcpu) = guest;
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.BudgetExhausted, exit.Kind);
        Assert.Equal(1234UL, vcpu.InstructionsRetired!.Value);
        // 1234 = 2 + 3 * 410 + 2: the next instruction is the jnz (the third of the loop body).
        Assert.Equal(EmuHarness.CodeAddress + 7 + 3 + 2, vcpu.GetRegisters().Rip);
    }

    [Fact]
    public void BudgetLargeEnough_RunsToHalt_WithTheSameCountEveryRun()
    {
        ulong? first = null;
        for (int run = 0; run < 2; run++)
        {
            using EmuGuest guest = EmuHarness.Create(CountingLoop(1000), budget: 3003);
            var (memory, vm, vcpu) = guest;
            Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
            ulong count = vcpu.InstructionsRetired!.Value;
            Assert.Equal(3003UL, count);
            Assert.Equal(500500UL, vcpu.GetRegisters().Rax);
            first ??= count;
            Assert.Equal(first, count);
        }
    }

    [Fact]
    public void Interrupt_BeforeRun_ReturnsInterrupted_ThenResumes()
    {
        using EmuGuest guest = EmuHarness.Create(CountingLoop(10));
        var (memory, vm, vcpu) = guest;
        vcpu.Interrupt();
        Assert.Equal(VcpuExitKind.Interrupted, vcpu.Run().Kind);
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
    }

    [Fact]
    public void Interrupt_FromAnotherThread_StopsAnInfiniteLoop()
    {
        using EmuGuest guest = EmuHarness.Create(EmuHarness.CountingSpin());
        var (memory, vm, vcpu) = guest;
        using var timer = new Timer(_ => vcpu.Interrupt(), null, 50, Timeout.Infinite);
        Assert.Equal(VcpuExitKind.Interrupted, vcpu.Run().Kind);
        Assert.True(vcpu.GetRegisters().Rax > 0);
    }

    /// <summary>Emits <c>mov eax, imm32</c> with <paramref name="imm"/> bound to its immediate, for code that patches it.</summary>
    private static void MovEaxWithLabelledImmediate(Assembler a, ref Label imm, uint value)
    {
        a.db(0xB8);
        a.Label(ref imm);
        a.dd(value);
    }

    [Fact]
    public void SelfModifyingCode_IsSeenAfterTheStore()
    {
        // Runs a function that returns 1, patches its immediate to 2 (a store to a code page), calls it again.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label func = a.CreateLabel();
            Label imm = a.CreateLabel();
            a.call(func);
            a.mov(rbx, rax);
            a.lea(rdx, __[imm]);
            a.mov(__dword_ptr[rdx], 2);
            a.call(func);
            a.hlt();
            a.Label(ref func);
            MovEaxWithLabelledImmediate(a, ref imm, 1);
            a.ret();
        });
        using EmuGuest guest = EmuHarness.RunToHalt(code);
        IVcpu vcpu = guest.Vcpu;
        VcpuRegisters r = vcpu.GetRegisters();
        Assert.Equal(1UL, r.Rbx);
        Assert.Equal(2UL, r.Rax);
    }

    [Fact]
    public void SelfModifyingCode_InTheRunningBlock_TakesEffectOnTheNextInstruction()
    {
        // The store patches the very next instruction of the same straight-line block.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label imm = a.CreateLabel();
            a.lea(rdx, __[imm]);
            a.mov(__dword_ptr[rdx], 7);
            MovEaxWithLabelledImmediate(a, ref imm, 1);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.RunToHalt(code);
        IVcpu vcpu = guest.Vcpu;
        Assert.Equal(7UL, vcpu.GetRegisters().Rax);
    }

    [Fact]
    public void Out_ToAnotherPort_IsACompletedIoOutExitWithItsData()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(dx, 0x3F8);
            a.@out(dx, al);
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, vm, vcpu) = guest;
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.IoOut, exit.Kind);
        Assert.Equal(0x3F8UL, exit.Address);
        Assert.Equal(1, exit.Size);
        Assert.Equal(vcpu.GetRegisters().Rax & 0xFF, exit.Data);
    }

    [Fact]
    public void Cpuid_And_Rdtsc_AreDeterministic()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            EmuHarness.Cpuid(a, 1, (rdx, r8), (rcx, r9));
            a.rdtsc();
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.RunToHalt(code);
        IVcpu vcpu = guest.Vcpu;
        VcpuRegisters r = vcpu.GetRegisters();
        Assert.NotEqual(0UL, r.R8 & (1UL << 26)); // SSE2
        Assert.NotEqual(0UL, r.R9 & (1UL << 23)); // POPCNT
        Assert.Equal(4UL, r.Rax); // four instructions retired before rdtsc
    }

    [Fact]
    public void ManyDistinctBlocks_KeepTheCacheBounded()
    {
        // 70000 one-instruction blocks (a ret at every byte of a sled), each called once.
        const int count = 70_000;
        const ulong sled = 0x10_0000;
        byte[] loop = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel();
            a.xor(ecx, ecx);
            a.Label(ref top);
            a.mov(rax, (long)sled);
            a.add(rax, rcx);
            a.call(rax);
            a.inc(ecx);
            a.cmp(ecx, count);
            a.jb(top);
            a.hlt();
        }, 0x18_0000);
        using EmuGuest guest = EmuHarness.Create(loop, codeAddress: 0x18_0000);
        var (memory, vm, vcpu) = guest;
        memory.GetSpan(new GuestAddress(sled), count).Fill(0xC3);
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.True(((EmulatorVcpu)vcpu).Code.Bytes <= CodeCache.DefaultByteLimit);
        Assert.Equal((ulong)count, vcpu.GetRegisters().Rcx);
    }

    [Fact]
    public void DataStoresIntoACodePage_DoNotDropItsBlocks()
    {
        // A counter that lives in the same 4 KiB page as the loop that increments it.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel(), counter = a.CreateLabel();
            a.mov(ecx, 10_000);
            a.Label(ref top);
            a.inc(__qword_ptr[counter]);
            a.dec(ecx);
            a.jnz(top);
            a.mov(rax, __qword_ptr[counter]);
            a.hlt();
            a.Label(ref counter);
            a.dq(0);
        });
        using EmuGuest guest = EmuHarness.RunToHalt(code);
        IVcpu vcpu = guest.Vcpu;
        Assert.Equal(10_000UL, vcpu.GetRegisters().Rax);
        Assert.True(((EmulatorVcpu)vcpu).BlocksDecoded <= 4, $"{((EmulatorVcpu)vcpu).BlocksDecoded} blocks decoded");
    }

    [Fact]
    public void IdivOfTheMostNegative128BitDividendByMinusOne_IsADivideError()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rdx, unchecked((long)0x8000_0000_0000_0000UL));
            a.xor(eax, eax);
            a.mov(rcx, -1);
            a.idiv(rcx);
            a.hlt();
        });
        Assert.Contains("divide error", EmuHarness.RunToFault(code), StringComparison.Ordinal);
    }

    [Fact]
    public void HugeRepStos_RunsOffTheEndOfMemory_AsAFault()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rdi, 0x1F_0000);
            a.mov(rcx, 0x1_0000_0000L); // 4 GiB of bytes from near the end of a 2 MiB guest
            a.rep.stosb();
            a.hlt();
        });
        Assert.Equal("page fault: write of 1 bytes at 0x200000 outside guest memory", EmuHarness.RunToFault(code));
    }

    [Fact]
    public void KernelStyleEntryCode_CliLidtAndControlRegisters_AreAccepted()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label idtr = a.CreateLabel();
            a.cli();
            a.lidt(__[idtr]);
            a.mov(rax, cr0);
            a.mov(rbx, cr4);
            a.mov(rdx, cr3);
            a.mov(cr3, rdx);    // the same tables again: flushes the TLB, changes no mapping
            a.mov(rcx, cr3);
            a.sti();
            a.hlt();
            a.Label(ref idtr);
            a.dw(0xFFF);
            a.dq(0x7000);
        });
        using EmuGuest guest = EmuHarness.RunToHalt(code);
        IVcpu vcpu = guest.Vcpu;
        VcpuRegisters r = vcpu.GetRegisters();
        Assert.Equal(LongModeSetup.Cr0, r.Rax);
        Assert.Equal(LongModeSetup.Cr4, r.Rbx);
        Assert.Equal(GuestLayout.Pml4, r.Rcx);
        Assert.Equal((0x7000UL, 0xFFFUL), ((EmulatorVcpu)vcpu).Idtr);
        Assert.NotEqual(0UL, r.Rflags & 0x200);
    }

    [Fact]
    public void Cr3PointingAtEmptyTables_WithAnEmptyIdt_IsATripleFault()
    {
        // As on hardware: the next fetch page-faults, the IDT's gates are not present (#NP, contributory after #PF:
        // a double fault), and the #DF gate is not present either: the CPU shuts down.
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label idtr = a.CreateLabel();
            a.lidt(__[idtr]);
            a.mov(rdx, 0x5000);
            a.mov(cr3, rdx);
            a.nop();
            a.Label(ref idtr);
            a.dw(0xFFF);
            a.dq(0x7000);
        });
        using EmuGuest guest = EmuHarness.Create(code);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Shutdown, exit.Kind);
        Assert.Contains("triple fault", exit.Detail, StringComparison.Ordinal);
    }
}
