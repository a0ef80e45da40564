using System.Runtime.Intrinsics;
using Iced.Intel;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Differential tests of the SSE floating-point instructions: every form (register and memory source) with operands
/// from <see cref="FpValues"/> (NaN payloads, signed zeros, denormals, overflow and underflow candidates) under
/// random MXCSR values (all four rounding modes, DAZ, FTZ, sticky flags set or clear); results, RFLAGS and the
/// whole x87/MXCSR state must match the real CPU bit for bit.
/// </summary>
public sealed partial class DifferentialTests
{
    private const int FpCasesPerForm = 400;

    private static readonly HashSet<Mnemonic> SseFp =
    [
        Mnemonic.Addss, Mnemonic.Addsd, Mnemonic.Addps, Mnemonic.Addpd, Mnemonic.Subss, Mnemonic.Subsd, Mnemonic.Subps, Mnemonic.Subpd,
        Mnemonic.Mulss, Mnemonic.Mulsd, Mnemonic.Mulps, Mnemonic.Mulpd, Mnemonic.Divss, Mnemonic.Divsd, Mnemonic.Divps, Mnemonic.Divpd,
        Mnemonic.Minss, Mnemonic.Minsd, Mnemonic.Minps, Mnemonic.Minpd, Mnemonic.Maxss, Mnemonic.Maxsd, Mnemonic.Maxps, Mnemonic.Maxpd,
        Mnemonic.Sqrtss, Mnemonic.Sqrtsd, Mnemonic.Sqrtps, Mnemonic.Sqrtpd,
        Mnemonic.Cmpss, Mnemonic.Cmpsd, Mnemonic.Cmpps, Mnemonic.Cmppd, Mnemonic.Comiss, Mnemonic.Comisd, Mnemonic.Ucomiss, Mnemonic.Ucomisd,
        Mnemonic.Cvtsi2ss, Mnemonic.Cvtsi2sd, Mnemonic.Cvtss2si, Mnemonic.Cvtsd2si, Mnemonic.Cvttss2si, Mnemonic.Cvttsd2si,
        Mnemonic.Cvtss2sd, Mnemonic.Cvtsd2ss, Mnemonic.Cvtps2pd, Mnemonic.Cvtpd2ps, Mnemonic.Cvtdq2ps, Mnemonic.Cvtdq2pd,
        Mnemonic.Cvtps2dq, Mnemonic.Cvttps2dq, Mnemonic.Cvtpd2dq, Mnemonic.Cvttpd2dq,
        Mnemonic.Addsubps, Mnemonic.Addsubpd, Mnemonic.Haddps, Mnemonic.Haddpd, Mnemonic.Hsubps, Mnemonic.Hsubpd,
        Mnemonic.Roundss, Mnemonic.Roundsd, Mnemonic.Roundps, Mnemonic.Roundpd, Mnemonic.Dpps, Mnemonic.Dppd,
        Mnemonic.Shufpd, Mnemonic.Movddup, Mnemonic.Movshdup, Mnemonic.Movsldup, Mnemonic.Lddqu,
        Mnemonic.Ldmxcsr, Mnemonic.Stmxcsr,
    ];

    private static bool NeedsAlignedMemory(Mnemonic m) => m is Mnemonic.Fxsave or Mnemonic.Fxsave64 or Mnemonic.Fxrstor or Mnemonic.Fxrstor64
        || SseFp.Contains(m);

    /// <summary>What the lanes of <paramref name="m"/>'s vector operands hold.</summary>
    private static LaneKind Lanes(Mnemonic m)
    {
        if (m is Mnemonic.Cvtdq2ps or Mnemonic.Cvtdq2pd)
        {
            return LaneKind.Int32;
        }
        string name = m.ToString();
        return name.Contains("pd", StringComparison.Ordinal) || name.Contains("sd", StringComparison.Ordinal) || m == Mnemonic.Movddup
            ? LaneKind.Double : LaneKind.Single;
    }

    /// <summary>FP operands in every XMM register and in the memory operand, a random (all-masked) MXCSR.</summary>
    private void PrepareSseFp(in Instruction ins, CpuState input, Random r, Case c)
    {
        LaneKind lanes = Lanes(ins.Mnemonic);
        for (int i = 0; i < 16; i++)
        {
            input.Xmm[i] = FpValues.Vector(r, lanes);
        }
        if (ins.Op0Kind == OpKind.Register && ins.Op1Kind == OpKind.Register && ins.Op0Register.IsXMM() && ins.Op1Register.IsXMM() && r.Next(8) == 0)
        {
            // Related operands: x op x, x op -x.
            Vector128<byte> v = input.Xmm[ins.Op0Register - Register.XMM0];
            input.Xmm[ins.Op1Register - Register.XMM0] = r.Next(2) == 0 ? v : v ^ Vector128.Create(lanes == LaneKind.Double ? 1UL << 63 : 0x8000_0000_8000_0000UL).AsByte();
        }
        input.Mxcsr = FpValues.Mxcsr(r);
        if (c.MemAddress != 0)
        {
            int off = (int)(c.MemAddress - _cpu.DataAddress);
            Span<byte> mem = _cpu.Data.Slice(off, 16);
            if (ins.Mnemonic == Mnemonic.Ldmxcsr)
            {
                BitConverter.TryWriteBytes(mem, r.Next(4) == 0 ? (uint)r.Next(0, 0x10000) : FpValues.Mxcsr(r));
            }
            else
            {
                FpValues.Vector(r, lanes).CopyTo(mem);
            }
        }
        if (ins.Mnemonic is Mnemonic.Cvtsi2ss or Mnemonic.Cvtsi2sd && ins.Op1Kind == OpKind.Register && r.Next(2) == 0)
        {
            int n = ins.Op1Register.GetFullRegister() - Register.RAX;
            input.Gpr[n] = r.Next(3) switch
            {
                0 => (ulong)(long)FpValues.Int32(r),
                1 => (1UL << r.Next(64)) + (ulong)r.Next(-3, 3),
                _ => (ulong)r.NextInt64() >> r.Next(64),
            };
        }
    }

    [NativeX64Fact]
    public void SseFloatingPointForms_MatchTheRealCpu()
    {
        var failures = new List<string>();
        int emulatorOnly = 0;
        int cases = RunForms(SseFp, 31337, failures, ref emulatorOnly, FpCasesPerForm, PrepareSseFp);
        _out.WriteLine($"{cases} SSE floating-point cases, {failures.Count} failures");
        Assert.True(cases > 25000, $"only {cases} cases");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
