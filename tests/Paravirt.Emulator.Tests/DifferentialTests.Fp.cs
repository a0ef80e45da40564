using OpKind = Iced.Intel.OpKind;

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

    private static bool NeedsAlignedMemory(Mnemonic m) => m is Mnemonic.Fxsave or Mnemonic.Fxsave64 or Mnemonic.Fxrstor or Mnemonic.Fxrstor64 or Mnemonic.Movntdqa
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

    private static readonly HashSet<Mnemonic> SimdInteger =
    [
        Mnemonic.Pshufb, Mnemonic.Palignr, Mnemonic.Phaddw, Mnemonic.Phaddd, Mnemonic.Phaddsw, Mnemonic.Phsubw, Mnemonic.Phsubd, Mnemonic.Phsubsw,
        Mnemonic.Pabsb, Mnemonic.Pabsw, Mnemonic.Pabsd, Mnemonic.Pmaddubsw, Mnemonic.Pmulhrsw, Mnemonic.Psignb, Mnemonic.Psignw, Mnemonic.Psignd,
        Mnemonic.Blendps, Mnemonic.Blendpd, Mnemonic.Pblendw, Mnemonic.Blendvps, Mnemonic.Blendvpd, Mnemonic.Pblendvb,
        Mnemonic.Pminsb, Mnemonic.Pminsd, Mnemonic.Pminuw, Mnemonic.Pminud, Mnemonic.Pmaxsb, Mnemonic.Pmaxsd, Mnemonic.Pmaxuw, Mnemonic.Pmaxud,
        Mnemonic.Pmovsxbw, Mnemonic.Pmovsxbd, Mnemonic.Pmovsxbq, Mnemonic.Pmovsxwd, Mnemonic.Pmovsxwq, Mnemonic.Pmovsxdq,
        Mnemonic.Pmovzxbw, Mnemonic.Pmovzxbd, Mnemonic.Pmovzxbq, Mnemonic.Pmovzxwd, Mnemonic.Pmovzxwq, Mnemonic.Pmovzxdq,
        Mnemonic.Insertps, Mnemonic.Extractps, Mnemonic.Mpsadbw, Mnemonic.Packusdw, Mnemonic.Pcmpeqq, Mnemonic.Pcmpgtq, Mnemonic.Pmuldq,
        Mnemonic.Pmulld, Mnemonic.Phminposuw, Mnemonic.Movntdqa, Mnemonic.Pextrb, Mnemonic.Pextrw, Mnemonic.Pextrd, Mnemonic.Pextrq,
        Mnemonic.Pinsrb, Mnemonic.Pinsrd, Mnemonic.Pinsrq, Mnemonic.Ptest,
        Mnemonic.Pcmpestri, Mnemonic.Pcmpestri64, Mnemonic.Pcmpestrm, Mnemonic.Pcmpestrm64, Mnemonic.Pcmpistri, Mnemonic.Pcmpistrm,
        Mnemonic.Crc32,
    ];

    /// <summary>Registers an instruction reads or writes implicitly: never used to address its memory operand.</summary>
    private static int[] ImplicitlyUsed(Mnemonic m) => m switch
    {
        Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm or Mnemonic.Pcmpestrm64 or Mnemonic.Pcmpistri or Mnemonic.Pcmpistrm => [0, 1, 2],
        Mnemonic.Mulx => [2],
        _ => [],
    };

    private static bool IsStringCompare(Mnemonic m) => ImplicitlyUsed(m).Length == 3;

    /// <summary>Strings over a small alphabet (so that comparisons match), with NULs and random explicit lengths.</summary>
    private void PrepareSimdInteger(in Instruction ins, CpuState input, Random r, Case c)
    {
        Mnemonic m = ins.Mnemonic;
        if (IsStringCompare(m))
        {
            Vector128<byte> Text()
            {
                Span<byte> t = stackalloc byte[16];
                int nul = r.Next(4) == 0 ? 16 : r.Next(0, 17);
                for (int i = 0; i < 16; i++)
                {
                    t[i] = i == nul ? (byte)0 : (byte)(r.Next(8) switch
                    {
                        0 => r.Next(256),
                        1 => 0x80,
                        2 => 0xFF,
                        3 => r.Next(0, 2),
                        _ => 'a' + r.Next(4),
                    });
                }
                return Vector128.Create((ReadOnlySpan<byte>)t);
            }
            for (int i = 0; i < 16; i++)
            {
                input.Xmm[i] = Text();
            }
            if (c.MemAddress != 0)
            {
                Text().CopyTo(_cpu.Data.Slice((int)(c.MemAddress - _cpu.DataAddress), 16));
            }
            ulong Length() => r.Next(6) switch
            {
                0 => (ulong)r.NextInt64(),
                1 => (ulong)(long)r.Next(int.MinValue, int.MaxValue),
                2 => 0x8000_0000_0000_0000UL,
                _ => (ulong)(long)r.Next(-20, 21),
            };
            input.Gpr[0] = Length();
            input.Gpr[2] = Length();
        }
        else if (m == Mnemonic.Ptest && r.Next(2) == 0 && ins.Op1Kind == OpKind.Register)
        {
            int a = ins.Op0Register - Register.XMM0, b = ins.Op1Register - Register.XMM0;
            input.Xmm[b] = r.Next(2) == 0 ? input.Xmm[a] & input.Xmm[b] : ~input.Xmm[a] & input.Xmm[b];
        }
        else if (m is Mnemonic.Pcmpeqq or Mnemonic.Pcmpgtq or Mnemonic.Psignb or Mnemonic.Psignw or Mnemonic.Psignd && r.Next(2) == 0 && ins.Op1Kind == OpKind.Register)
        {
            int b = ins.Op1Register - Register.XMM0;
            input.Xmm[b] = input.Xmm[b] & Vector128.Create((byte)r.Next(256), 0xFF, 0, 0xFF, (byte)r.Next(256), 0, 0xFF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF);
        }
    }

    private static readonly HashSet<Mnemonic> GprExtensions =
    [
        Mnemonic.Bzhi, Mnemonic.Pdep, Mnemonic.Pext, Mnemonic.Mulx, Mnemonic.Rorx, Mnemonic.Sarx, Mnemonic.Shlx, Mnemonic.Shrx,
        Mnemonic.Adcx, Mnemonic.Adox, Mnemonic.Movbe,
    ];

    [NativeX64WithFact("bmi2", "adx", "movbe")]
    public void Bmi2AdxAndMovbeForms_MatchTheRealCpu() =>
        AssertFormsMatch("BMI2/ADX/MOVBE", GprExtensions, 2013, minimumCases: 6000, casesPerForm: 300, (in Instruction ins, CpuState input, Random r, Case c) =>
        {
            if (ins.Mnemonic == Mnemonic.Bzhi && r.Next(2) == 0 && ins.Op2Kind == OpKind.Register)
            {
                int n = ins.Op2Register.GetFullRegister() - Register.RAX;
                input.Gpr[n] = (input.Gpr[n] & ~0xFFUL) | (uint)r.Next(0, 70); // indexes around the operand size
            }
        });

    [NativeX64WithFact("ssse3", "sse4_1", "sse4_2")]
    public void SimdIntegerAndStringForms_MatchTheRealCpu() =>
        AssertFormsMatch("SSSE3/SSE4.x integer and string", SimdInteger, 4711, minimumCases: 15000, casesPerForm: 300, PrepareSimdInteger);

    /// <summary>Doubles at the thresholds: products and quotients that round to (or just miss) the smallest normal, tiny sums, the overflow edge.</summary>
    private static ulong[] DoubleEdges()
    {
        var v = new List<ulong>();
        foreach (int e in new[] { 1023 - 511, 1023 - 512, 1023 - 1, 1023, 1023 + 511, 1 })
        {
            ulong b = (ulong)e << 52;
            v.AddRange([b, b + 1, b + 2, b - 1, b - 2]); // 2^k, just above, just below (the last ulps of the binade below)
        }
        v.AddRange([0x000F_FFFF_FFFF_FFFF, 0x0008_0000_0000_0000, 1, 3, 0x7FEF_FFFF_FFFF_FFFF, 0x7FE0_0000_0000_0001, 0x4008_0000_0000_0000]);
        int n = v.Count;
        for (int i = 0; i < n; i++)
        {
            v.Add(v[i] ^ (1UL << 63));
        }
        return [.. v];
    }

    private static uint[] SingleEdges()
    {
        var v = new List<uint>();
        foreach (int e in new[] { 127 - 63, 127 - 64, 127 - 1, 127, 127 + 63, 1 })
        {
            uint b = (uint)e << 23;
            v.AddRange([b, b + 1, b + 2, b - 1, b - 2]);
        }
        v.AddRange([0x007F_FFFF, 0x0040_0000, 1, 3, 0x7F7F_FFFF, 0x7F00_0001, 0x4040_0000]);
        int n = v.Count;
        for (int i = 0; i < n; i++)
        {
            v.Add(v[i] ^ 0x8000_0000u);
        }
        return [.. v];
    }

    /// <summary>
    /// Directed cases at the underflow and overflow thresholds (random operands rarely land there): every pair of
    /// edge values through mul/div/add/sub and sqrt in single and double, and conversions to single around its
    /// smallest normal and largest finite value, under each rounding mode with FTZ and DAZ off and on. This is where
    /// tininess after rounding, FTZ, denormal rounding and overflow to infinity or to the largest finite value show.
    /// </summary>
    [LinuxX64Fact]
    public void SseFloatingPointThresholds_MatchTheRealCpu()
    {
        var failures = new List<string>();
        int cases = 0;
        uint[] modes = [.. from rc in new uint[] { 0, 1, 2, 3 } from extra in new uint[] { 0, 0x8040 } select 0x1F80 | (rc << 13) | extra];
        // (FTZ with DAZ; FTZ or DAZ alone are covered by the random forms.)
        void Check(Code code, Vector128<byte> a, Vector128<byte> b, uint mxcsr)
        {
            var r = new Random(cases);
            CpuState input = RandomState(r);
            input.Xmm[0] = a;
            input.Xmm[1] = b;
            input.Mxcsr = mxcsr;
            Instruction ins = Instruction.Create(code, Register.XMM0, Register.XMM1);
            string? e = Compare(_cpu.EncodeTest([ins]), input, 0, () => $"{ins} a={a.AsUInt64()} b={b.AsUInt64()} mxcsr=0x{mxcsr:x}");
            cases++;
            if (e is not null && failures.Count < 40)
            {
                failures.Add(e);
            }
        }
        ulong[] d = DoubleEdges();
        uint[] f = SingleEdges();
        Code[] dops = [Code.Mulsd_xmm_xmmm64, Code.Divsd_xmm_xmmm64, Code.Addsd_xmm_xmmm64, Code.Subsd_xmm_xmmm64];
        Code[] fops = [Code.Mulss_xmm_xmmm32, Code.Divss_xmm_xmmm32, Code.Addss_xmm_xmmm32];
        foreach (uint mx in modes)
        {
            for (int i = 0; i < d.Length; i += 3)
            {
                for (int j = 1; j < d.Length; j += 5)
                {
                    foreach (Code c in dops)
                    {
                        Check(c, Vector128.CreateScalar(d[i]).AsByte(), Vector128.CreateScalar(d[j]).AsByte(), mx);
                    }
                }
                Check(Code.Sqrtsd_xmm_xmmm64, default, Vector128.CreateScalar(d[i]).AsByte(), mx);
                Check(Code.Cvtsd2ss_xmm_xmmm64, default, Vector128.CreateScalar(d[i] >> 0).AsByte(), mx);
            }
            for (int i = 0; i < f.Length; i += 3)
            {
                for (int j = 1; j < f.Length; j += 5)
                {
                    foreach (Code c in fops)
                    {
                        Check(c, Vector128.CreateScalar(f[i]).AsByte(), Vector128.CreateScalar(f[j]).AsByte(), mx);
                    }
                }
                // Doubles just around single's smallest normal and largest finite value.
                foreach (long k in new long[] { -3, -1, 0, 1, 3 })
                {
                    Check(Code.Cvtsd2ss_xmm_xmmm64, default, Vector128.CreateScalar((ulong)((long)(0x3810_0000_0000_0000UL) + (k << 28))).AsByte(), mx);
                    Check(Code.Cvtsd2ss_xmm_xmmm64, default, Vector128.CreateScalar((ulong)((long)(0x47EF_FFFF_E000_0000UL) + (k << 27))).AsByte(), mx);
                }
            }
        }
        _out.WriteLine($"{cases} SSE threshold cases, {failures.Count} failures");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// rcpss/rcpps/rsqrtss/rsqrtps: the approximation is implementation-specific (the SDM only bounds the relative
    /// error by 1.5 * 2^-12, and Intel and AMD tables differ), so the emulator's deterministic result (the exact value
    /// rounded to 12 bits) is compared with the CPU's within that bound; special operands (zeros, denormals,
    /// infinities, NaNs, negative square-root operands) and everything outside the destination lanes must match
    /// exactly, MXCSR included (these instructions raise no exception).
    /// </summary>
    [LinuxX64Fact]
    public void SseApproximations_AreWithinTheDocumentedErrorOfTheRealCpu()
    {
        var failures = new List<string>();
        int cases = 0, identical = 0;
        var r = new Random(1212);
        foreach (Code code in new[] { Code.Rcpps_xmm_xmmm128, Code.Rcpss_xmm_xmmm32, Code.Rsqrtps_xmm_xmmm128, Code.Rsqrtss_xmm_xmmm32 })
        {
            for (int k = 0; k < 600; k++)
            {
                CpuState input = RandomState(r);
                for (int i = 0; i < 16; i++)
                {
                    input.Xmm[i] = FpValues.Vector(r, LaneKind.Single);
                }
                input.Mxcsr = FpValues.Mxcsr(r);
                Instruction ins = Instruction.Create(code, Register.XMM0 + r.Next(16), Register.XMM0 + r.Next(16));
                _cpu.Prepare(_cpu.EncodeTest([ins]), input);
                (CpuState native, byte[] nativeMem, VcpuExit exit, CpuState emu, byte[] emuMem) = RunBoth();
                cases++;
                int dst = ins.Op0Register - Register.XMM0;
                Vector128<uint> n = native.Xmm[dst].AsUInt32(), e = emu.Xmm[dst].AsUInt32();
                bool same = true;
                for (int lane = 0; lane < 4; lane++)
                {
                    uint a = n[lane], b = e[lane];
                    if (a == b)
                    {
                        continue;
                    }
                    same = false;
                    float fa = BitConverter.UInt32BitsToSingle(a), fb = BitConverter.UInt32BitsToSingle(b);
                    bool special = !float.IsNormal(fa) || !float.IsNormal(fb);
                    if (special || Math.Abs((double)fa - fb) > Math.Abs((double)fa) * 3.0 * Math.Pow(2, -12))
                    {
                        if (failures.Count < 20)
                        {
                            failures.Add($"{ins} lane {lane}: in {input.Xmm[ins.Op1Register - Register.XMM0].AsUInt32()} native 0x{a:x8} emu 0x{b:x8}");
                        }
                    }
                }
                identical += same ? 1 : 0;
                emu.Xmm[dst] = native.Xmm[dst];
                var diff = new System.Text.StringBuilder();
                CompareFx(native.Fx, emu.Fx, diff);
                for (int i = 0; i < 16; i++)
                {
                    if (native.Xmm[i] != emu.Xmm[i] || native.Gpr[i] != emu.Gpr[i])
                    {
                        diff.Append($" register {i} differs;");
                    }
                }
                if (exit.Kind != VcpuExitKind.Halt || diff.Length != 0 || !nativeMem.AsSpan().SequenceEqual(emuMem))
                {
                    failures.Add($"{ins}: {exit.Kind} {exit.Detail}{diff}");
                }
            }
        }
        _out.WriteLine($"{cases} rcp/rsqrt cases, {identical} bit-identical, {failures.Count} failures");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>maskmovdqu (implicit [rdi] destination, so not among the generated forms): the selected bytes only.</summary>
    [LinuxX64Fact]
    public void Maskmovdqu_StoresTheSelectedBytes_AsTheRealCpu()
    {
        var tally = new Tally(_out, keep: 10);
        var r = new Random(777);
        for (int k = 0; k < 300; k++)
        {
            CpuState input = RandomState(r);
            input.Gpr[7] = _cpu.DataAddress + 0x100 + (ulong)r.Next(0, 256);
            int data = r.Next(16), mask = r.Next(16);
            string? e = CompareSequence(a =>
            {
                a.maskmovdqu(new AssemblerRegisterXMM(Register.XMM0 + data), new AssemblerRegisterXMM(Register.XMM0 + mask));
            }, input, 0, $"maskmovdqu xmm{data},xmm{mask} rdi=0x{input.Gpr[7]:x}");
            tally.Count(e);
        }
        tally.AssertNone("maskmovdqu cases");
    }

    [NativeX64WithFact("sse3", "sse4_1")]
    public void SseFloatingPointForms_MatchTheRealCpu() =>
        AssertFormsMatch("SSE floating-point", SseFp, 31337, minimumCases: 25000, FpCasesPerForm, PrepareSseFp);
}
