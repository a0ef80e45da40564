using System.Runtime.Intrinsics;
using Iced.Intel;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Emulator;
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
    public void Ud2_IsAnInvalidOpcodeFault_NotAnUnsupportedInstruction()
    {
        (VcpuExit exit, _, EmuGuest guest) = Run(a =>
        {
            a.nop();
            a.ud2();
        });
        using (guest)
        {
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.Equal("invalid opcode (#UD): 'ud2' at 0x100001", exit.Detail);
            Assert.Equal(0x100001UL, exit.Rip);
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
            var (memory, _, _) = guest;
            Assert.Equal(VcpuExitKind.Halt, exit.Kind);
            byte[] image = memory.GetSpan(new Paravirt.Hypervisor.Memory.GuestAddress(0x9000), 512).ToArray();
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
}
