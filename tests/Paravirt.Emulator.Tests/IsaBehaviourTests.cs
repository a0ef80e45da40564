using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Behaviour of the ISA extensions that the differential tests cannot run natively (an unmasked floating-point
/// exception would trap in the test process) or that concern the emulator's own exits (#UD, #GP, unsupported).
/// </summary>
public sealed class IsaBehaviourTests
{
    private static (VcpuExit Exit, EmulatorVcpu Vcpu, EmuGuest Guest) Run(Action<Assembler> build)
    {
        byte[] code = EmuHarness.Assemble(build);
        EmuGuest guest = EmuHarness.Create(code, budget: 1_000_000);
        var (_, _, vcpu) = guest;
        VcpuExit exit = vcpu.Run();
        return (exit, (EmulatorVcpu)vcpu, guest);
    }

    /// <summary>Asserts that the guest halted and returns <paramref name="length"/> bytes of its memory at <paramref name="address"/>.</summary>
    private static byte[] ReadAfterHalt(VcpuExit exit, EmuGuest guest, ulong address, ulong length)
    {
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        return guest.Memory.GetSpan(new GuestAddress(address), length).ToArray();
    }

    [Fact]
    public void UnmaskedSseException_IsASimdFault_AndLeavesTheDestination()
    {
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            a.mov(__dword_ptr[0x8000], 0x1F80 & ~0x200); // unmask divide-by-zero
            a.ldmxcsr(__dword_ptr[0x8000]);
            a.mov(rax, 0x3FF0_0000_0000_0000); // 1.0
            a.movq(xmm0, rax);
            a.xorpd(xmm1, xmm1);
            a.divsd(xmm0, xmm1);
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.Equal("SIMD floating-point exception (#XM): unmasked divide by zero", exit.Detail);
            Assert.Equal(0x3FF0_0000_0000_0000UL, vcpu.GetXmm(0).AsUInt64()[0]); // not written
            Assert.Equal(0x1F80u & ~0x200u | 0x4u, vcpu.Mxcsr); // ZE recorded
        }
    }

    [Fact]
    public void UnmaskedPrecision_FaultsOnlyWhenTheResultIsInexact()
    {
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            a.mov(__dword_ptr[0x8000], 0x1F80 & ~0x1000); // unmask precision
            a.ldmxcsr(__dword_ptr[0x8000]);
            a.mov(eax, 3);
            a.cvtsi2sd(xmm0, eax);
            a.addsd(xmm0, xmm0); // 6.0: exact
            a.mov(eax, 10);
            a.cvtsi2sd(xmm1, eax);
            a.divsd(xmm0, xmm1); // 0.6: inexact
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.Contains("unmasked precision", exit.Detail, StringComparison.Ordinal);
            Assert.Equal(6.0, BitConverter.UInt64BitsToDouble(vcpu.GetXmm(0).AsUInt64()[0]));
        }
    }

    [Fact]
    public void LdmxcsrWithAReservedBit_IsAGeneralProtectionFault()
    {
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            a.mov(__dword_ptr[0x8000], 0x1F80 | 0x10000);
            a.ldmxcsr(__dword_ptr[0x8000]);
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.StartsWith("general protection fault (#GP)", exit.Detail, StringComparison.Ordinal);
            Assert.Equal(0x1F80u, vcpu.Mxcsr);
        }
    }

    [Fact]
    public void FxsaveImage_HasTheArchitecturalLayout()
    {
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            a.mov(__dword_ptr[0x8000], 0x3FC0); // RC=up, DAZ, all masked
            a.ldmxcsr(__dword_ptr[0x8000]);
            a.mov(rax, 0x1122_3344_5566_7788);
            a.movq(xmm5, rax);
            a.fxsave64(__[0x9000]);
            a.hlt();
        });
        using (guest)
        {
            byte[] image = ReadAfterHalt(exit, guest, 0x9000, 512);
            Assert.Equal((ushort)0x037F, BitConverter.ToUInt16(image, 0));
            Assert.Equal(0x3FC0u, BitConverter.ToUInt32(image, 24));
            Assert.Equal(0xFFFFu, BitConverter.ToUInt32(image, 28)); // MXCSR_MASK: DAZ supported, nothing above bit 15
            Assert.Equal(0x1122_3344_5566_7788UL, BitConverter.ToUInt64(image, 160 + (5 * 16)));
            _ = vcpu;
        }
    }

    [Fact]
    public void FxsaveToAMisalignedAddress_IsAGeneralProtectionFault()
    {
        (VcpuExit exit, _, EmuGuest guest) = Run(a =>
        {
            a.fxsave64(__[0x9008]);
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.StartsWith("general protection fault (#GP)", exit.Detail, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Rdtscp_ReturnsTheInstructionCountAndTscAux()
    {
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            a.nop();
            a.nop();
            a.rdtscp();
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Halt, exit.Kind);
            VcpuRegisters r = vcpu.GetRegisters();
            Assert.Equal(2UL, r.Rax);
            Assert.Equal(0UL, r.Rdx);
            Assert.Equal(0UL, r.Rcx); // TSC_AUX
        }
    }

    [Fact]
    public void Cpuid_AdvertisesExactlyTheImplementedFeatures()
    {
        // One table for the whole machine: the user-level ISA and the system side, nothing more.
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            EmuHarness.Cpuid(a, 1, (rcx, r8), (rdx, r9));
            EmuHarness.Cpuid(a, 7, subleaf: 0, (rbx, r10));
            EmuHarness.Cpuid(a, 0x8000_0001, (rcx, r11), (rdx, r12));
            EmuHarness.Cpuid(a, 0x8000_0008, (rax, r13));
            EmuHarness.Cpuid(a, 0x8000_0000, (rax, r14));
            EmuHarness.Cpuid(a, 0);                  // the vendor string and highest leaf stay in rax, rbx, rdx, rcx
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Halt, exit.Kind);
            VcpuRegisters r = vcpu.GetRegisters();
            // ECX: SSE3, SSSE3, CX16, SSE4.1, SSE4.2, MOVBE, POPCNT; no XSAVE/OSXSAVE/AVX/RDRAND/AES/PCLMULQDQ.
            Assert.Equal((1UL << 0) | (1UL << 9) | (1UL << 13) | (1UL << 19) | (1UL << 20) | (1UL << 22) | (1UL << 23), r.R8);
            // EDX: FPU, TSC, CX8, CMOV, FXSR, SSE, SSE2 (no MMX: not emulated), and the system side's DE, PSE, MSR, PAE,
            // PGE; no APIC, SEP, MTRR, PAT.
            Assert.Equal((1UL << 0) | (1UL << 4) | (1UL << 8) | (1UL << 15) | (1UL << 24) | (1UL << 25) | (1UL << 26)
                | (1UL << 2) | (1UL << 3) | (1UL << 5) | (1UL << 6) | (1UL << 13), r.R9);
            Assert.Equal((1UL << 3) | (1UL << 8) | (1UL << 19) | (1UL << 0), r.R10); // BMI1, BMI2, ADX; FSGSBASE
            Assert.Equal((1UL << 0) | (1UL << 5), r.R11); // LAHF/SAHF, LZCNT
            Assert.Equal((1UL << 27) | (1UL << 29) | (1UL << 11) | (1UL << 20) | (1UL << 26), r.R12); // RDTSCP, LM; SYSCALL, NX, 1 GiB pages
            Assert.Equal(0x3028UL, r.R13);                // 48 linear, 40 physical address bits
            Assert.Equal(0x8000_0008UL, r.R14);           // highest extended leaf
            Assert.Equal((7UL, 0x61726150UL, 0x74726976UL, 0x21756D45UL), (r.Rax, r.Rbx, r.Rdx, r.Rcx)); // "ParavirtEmu!"
        }
    }

    [Theory]
    [InlineData("xgetbv")]
    [InlineData("rdrand")]
    [InlineData("vaddps")]
    [InlineData("aesenc")]
    public void InstructionsOfAbsentFeatures_AreInvalidOpcodes(string which)
    {
        (VcpuExit exit, _, EmuGuest guest) = Run(a =>
        {
            switch (which)
            {
                case "xgetbv": a.xgetbv(); break;
                case "rdrand": a.rdrand(rax); break;
                case "vaddps": a.vaddps(ymm0, ymm1, ymm2); break;
                default: a.aesenc(xmm0, xmm1); break;
            }
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.StartsWith("invalid opcode (#UD): '" + which, exit.Detail, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void MmxInstruction_IsUnimplemented_NotAGuestError()
    {
        (VcpuExit exit, _, EmuGuest guest) = Run(a =>
        {
            a.paddb(mm0, mm1);
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Unimplemented, exit.Kind);
            Assert.Equal("the emulator does not implement 'paddb mm0,mm1' at 0x100000", exit.Detail);
        }
    }

    [Fact]
    public void UnmaskedX87Exception_IsPending_UntilTheNextWaitingInstruction()
    {
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            a.mov(__word_ptr[0x8000], 0x037F & ~0x04); // unmask divide-by-zero
            a.fldcw(__word_ptr[0x8000]);
            a.fld1();
            a.fldz();
            a.fdivp(st1, st0);   // 1/0: ZE set, ES pending, destination unchanged
            a.fnstsw(ax);        // no-wait: runs
            a.mov(rbx, rax);
            a.fnclex();          // clears it
            a.fld1();            // waiting: fine now
            a.fldz();
            a.fdivp(st1, st0);
            a.wait();            // #MF here
            a.hlt();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.Equal("x87 floating-point exception (#MF): unmasked divide by zero pending", exit.Detail);
            VcpuRegisters r = vcpu.GetRegisters();
            Assert.Equal(0x8084UL, r.Rbx & 0x80FF); // B, ES, ZE
        }
    }

    [Fact]
    public void FpuState_TravelsThroughVcpuState_ToAnotherVcpu()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(__dword_ptr[0x8000], 0x3F80);  // MXCSR: round down
            a.ldmxcsr(__dword_ptr[0x8000]);
            a.mov(__word_ptr[0x8004], 0x0B7F);   // FCW: round up, 64-bit precision
            a.fldcw(__word_ptr[0x8004]);
            a.fldpi();
            a.fld1();
            a.fdiv(st0, st1);                     // st0 = 1/pi rounded up, st1 = pi
            a.mov(eax, 1);
            a.cvtsi2sd(xmm1, eax);
            a.mov(eax, 3);
            a.cvtsi2sd(xmm2, eax);
            a.@out(0x80, al);
            a.divsd(xmm1, xmm2);                  // 1/3 rounded down (MXCSR from the state)
            a.fmul(st0, st1);                     // (1/pi) * pi rounded up (FCW and both registers from the state)
            a.fstp(__tword_ptr[0x8010]);
            a.movq(__qword_ptr[0x8020], xmm1);
            a.fnstsw(__word_ptr[0x8028]);
            a.hlt();
        });
        using EmuGuest first = EmuHarness.Create(code);
        Assert.Equal(VcpuExitKind.IoOut, first.Vcpu.Run().Kind);
        VcpuState state = first.Vcpu.GetState();
        Assert.Equal(0x3F80u, state.Mxcsr);
        Assert.Equal((ushort)0x0B7F, state.FpuControlWord);
        Assert.Equal(3UL, BitConverter.ToUInt64(state.ExtendedState, 512)); // XSTATE_BV: x87 and SSE
        Assert.Equal(6, (state.FpuStatusWord >> 11) & 7);                    // two values pushed

        using EmuGuest second = EmuHarness.Create(code);
        second.Vcpu.SetState(state);
        Assert.Equal(VcpuExitKind.Halt, second.Vcpu.Run().Kind);
        Assert.Equal(VcpuExitKind.Halt, first.Vcpu.Run().Kind);
        var (m1, _, _) = first;
        var (m2, _, _) = second;
        byte[] r1 = m1.GetSpan(new Paravirt.Hypervisor.Memory.GuestAddress(0x8010), 32).ToArray();
        byte[] r2 = m2.GetSpan(new Paravirt.Hypervisor.Memory.GuestAddress(0x8010), 32).ToArray();
        Assert.Equal(r1, r2);
        Assert.Equal(0x3FD5_5555_5555_5555UL, BitConverter.ToUInt64(r2, 16)); // 1/3 rounded down
    }

    [Fact]
    public void SetState_WithAReservedMxcsrBit_IsRejected()
    {
        using EmuGuest guest = EmuHarness.Create(EmuHarness.Assemble(a => a.hlt()));
        VcpuState state = guest.Vcpu.GetState();
        state.Mxcsr = 0x1F80 | 0x10000;
        Assert.Throws<ArgumentException>(() => guest.Vcpu.SetState(state));
    }

    [Fact]
    public void F2xm1_FarOutsideItsDomain_OverflowsOrGivesMinusOne()
    {
        // The hardware leaves |x| > 1 undefined; a hostile guest must still get a bounded, deterministic answer.
        (VcpuExit exit, EmulatorVcpu vcpu, EmuGuest guest) = Run(a =>
        {
            a.mov(rax, 0x8000_0000_0000_0000);
            a.mov(__qword_ptr[0x8000], rax);
            a.mov(__word_ptr[0x8008], 16383 + 16000);           // 2^16000
            a.mov(__qword_ptr[0x8010], rax);
            a.mov(__word_ptr[0x8018], 0x8000 | (16383 + 16000)); // -2^16000
            a.fld(__tword_ptr[0x8000]);
            a.f2xm1();
            a.fstp(__tword_ptr[0x8020]);
            a.fld(__tword_ptr[0x8010]);
            a.f2xm1();
            a.fstp(__tword_ptr[0x8030]);
            a.hlt();
        });
        using (guest)
        {
            byte[] r = ReadAfterHalt(exit, guest, 0x8020, 32);
            Assert.Equal((0x8000_0000_0000_0000UL, (ushort)0x7FFF), (BitConverter.ToUInt64(r, 0), BitConverter.ToUInt16(r, 8)));   // +infinity
            Assert.Equal((0x8000_0000_0000_0000UL, (ushort)0xBFFF), (BitConverter.ToUInt64(r, 16), BitConverter.ToUInt16(r, 24))); // -1
            _ = vcpu;
        }
    }
}
