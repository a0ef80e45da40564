using System.Text;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Differential tests of the x87 FPU: every instruction form from random register stacks (random TOP, tags,
/// contents including NaNs, denormals, pseudo-denormals and unsupported encodings), precision and rounding control
/// and sticky flags; the whole x87 state (control, status, tag words, all eight 80-bit registers, through the FXSAVE
/// image) and memory must match the real CPU bit for bit. The transcendental instructions are checked separately
/// (<see cref="X87TranscendentalForms_AreWithinOneUlpOfTheRealCpu"/>).
/// </summary>
public sealed partial class DifferentialTests
{
    private const int X87CasesPerForm = 300;

    private static readonly HashSet<Mnemonic> X87Exact =
    [
        Mnemonic.Fadd, Mnemonic.Faddp, Mnemonic.Fiadd, Mnemonic.Fmul, Mnemonic.Fmulp, Mnemonic.Fimul,
        Mnemonic.Fsub, Mnemonic.Fsubp, Mnemonic.Fisub, Mnemonic.Fsubr, Mnemonic.Fsubrp, Mnemonic.Fisubr,
        Mnemonic.Fdiv, Mnemonic.Fdivp, Mnemonic.Fidiv, Mnemonic.Fdivr, Mnemonic.Fdivrp, Mnemonic.Fidivr,
        Mnemonic.Fcom, Mnemonic.Fcomp, Mnemonic.Fcompp, Mnemonic.Fucom, Mnemonic.Fucomp, Mnemonic.Fucompp, Mnemonic.Ficom, Mnemonic.Ficomp,
        Mnemonic.Fcomi, Mnemonic.Fcomip, Mnemonic.Fucomi, Mnemonic.Fucomip,
        Mnemonic.Fld, Mnemonic.Fild, Mnemonic.Fld1, Mnemonic.Fldl2t, Mnemonic.Fldl2e, Mnemonic.Fldpi, Mnemonic.Fldlg2, Mnemonic.Fldln2, Mnemonic.Fldz,
        Mnemonic.Fst, Mnemonic.Fstp, Mnemonic.Fstpnce, Mnemonic.Fist, Mnemonic.Fistp, Mnemonic.Fisttp,
        Mnemonic.Fchs, Mnemonic.Fabs, Mnemonic.Ftst, Mnemonic.Fxam, Mnemonic.Fxtract, Mnemonic.Fprem, Mnemonic.Fprem1,
        Mnemonic.Fdecstp, Mnemonic.Fincstp, Mnemonic.Fsqrt, Mnemonic.Frndint, Mnemonic.Fscale,
        Mnemonic.Fcmovb, Mnemonic.Fcmove, Mnemonic.Fcmovbe, Mnemonic.Fcmovu, Mnemonic.Fcmovnb, Mnemonic.Fcmovne, Mnemonic.Fcmovnbe, Mnemonic.Fcmovnu,
        Mnemonic.Fxch, Mnemonic.Ffree, Mnemonic.Ffreep, Mnemonic.Fnop, Mnemonic.Wait,
        Mnemonic.Fldcw, Mnemonic.Fnstcw, Mnemonic.Fstcw, Mnemonic.Fnstsw, Mnemonic.Fstsw, Mnemonic.Fnclex, Mnemonic.Fclex,
        Mnemonic.Fninit, Mnemonic.Finit, Mnemonic.Fnstenv, Mnemonic.Fstenv, Mnemonic.Fldenv, Mnemonic.Fnsave, Mnemonic.Fsave, Mnemonic.Frstor,
        Mnemonic.Fxsave, Mnemonic.Fxsave64, Mnemonic.Fxrstor, Mnemonic.Fxrstor64,
    ];

    private static readonly HashSet<Mnemonic> X87Transcendental =
    [
        Mnemonic.F2xm1, Mnemonic.Fyl2x, Mnemonic.Fyl2xp1, Mnemonic.Fpatan, Mnemonic.Fsin, Mnemonic.Fcos, Mnemonic.Fsincos, Mnemonic.Fptan,
    ];

    /// <summary>A random x87 state with every exception masked: random precision and rounding control, sticky flags, C0-C3, TOP, tags and registers.</summary>
    private static void RandomX87(CpuState input, Random r)
    {
        byte[] fx = input.Fx;
        int pc = r.Next(5) switch { 0 => 0, 1 => 2, 2 => 1, _ => 3 };
        ushort fcw = (ushort)(0x3F | (pc << 8) | (r.Next(4) << 10) | (r.Next(8) == 0 ? r.Next(0x10000) & 0xE0C0 : 0x40));
        int top = r.Next(8);
        ushort fsw = (ushort)((r.Next(4) == 0 ? r.Next(0x80) : 0) | (r.Next(16) switch { var k => ((k & 1) << 8) | ((k & 2) << 8) | ((k & 4) << 8) | ((k & 8) << 11) }) | (top << 11));
        BitConverter.TryWriteBytes(fx.AsSpan(0), fcw);
        BitConverter.TryWriteBytes(fx.AsSpan(2), fsw);
        int full = r.Next(6);
        fx[4] = (byte)(full == 0 ? 0xFF : full == 1 ? 0 : r.Next(256));
        for (int i = 0; i < 8; i++)
        {
            (ulong m, ushort se) = FpValues.Extended(r);
            BitConverter.TryWriteBytes(fx.AsSpan(32 + (16 * i)), m);
            BitConverter.TryWriteBytes(fx.AsSpan(40 + (16 * i)), se);
        }
    }

    private static void SetSt(CpuState input, int i, ulong mant, ushort signExp)
    {
        BitConverter.TryWriteBytes(input.Fx.AsSpan(32 + (16 * i)), mant);
        BitConverter.TryWriteBytes(input.Fx.AsSpan(40 + (16 * i)), signExp);
        int top = (BitConverter.ToUInt16(input.Fx, 2) >> 11) & 7;
        input.Fx[4] |= (byte)(1 << ((top + i) & 7)); // tagged valid
    }

    /// <summary>A random x87 state, and the memory operand filled according to its format.</summary>
    private void PrepareX87(in Instruction ins, CpuState input, Random r, Case c)
    {
        RandomX87(input, r);
        input.Mxcsr = FpValues.Mxcsr(r);
        if (c.MemAddress == 0)
        {
            return;
        }
        Span<byte> mem = _cpu.Data[(int)(c.MemAddress - _cpu.DataAddress)..];
        switch (ins.MemorySize)
        {
            case MemorySize.Float32: BitConverter.TryWriteBytes(mem, FpValues.Single(r)); break;
            case MemorySize.Float64: BitConverter.TryWriteBytes(mem, FpValues.Double(r)); break;
            case MemorySize.Float80:
            {
                (ulong m, ushort se) = FpValues.Extended(r);
                BitConverter.TryWriteBytes(mem, m);
                BitConverter.TryWriteBytes(mem[8..], se);
                break;
            }
            case MemorySize.Int16: BitConverter.TryWriteBytes(mem, (short)(r.Next(3) == 0 ? r.Next(-40000, 40000) : r.Next(-100, 100))); break;
            case MemorySize.Int32: BitConverter.TryWriteBytes(mem, FpValues.Int32(r)); break;
            case MemorySize.Int64: BitConverter.TryWriteBytes(mem, r.Next(2) == 0 ? r.NextInt64() * (r.Next(2) * 2 - 1) : r.Next(-1000, 1000)); break;
            case MemorySize.UInt16:
                if (ins.Mnemonic == Mnemonic.Fldcw)
                {
                    BitConverter.TryWriteBytes(mem, (ushort)(r.Next(0x10000) | 0x3F)); // every exception stays masked
                }
                break;
            case MemorySize.FpuEnv14:
            case MemorySize.FpuEnv28:
            case MemorySize.FpuState94:
            case MemorySize.FpuState108:
            {
                bool small = ins.MemorySize is MemorySize.FpuEnv14 or MemorySize.FpuState94;
                int step = small ? 2 : 4;
                var state = new CpuState();
                RandomX87(state, r);
                BitConverter.TryWriteBytes(mem, BitConverter.ToUInt16(state.Fx, 0));
                BitConverter.TryWriteBytes(mem[step..], (ushort)(BitConverter.ToUInt16(state.Fx, 2) & 0x7F7F)); // no ES/B
                BitConverter.TryWriteBytes(mem[(2 * step)..], (ushort)r.Next(0x10000));
                if (ins.MemorySize is MemorySize.FpuState94 or MemorySize.FpuState108)
                {
                    int env = small ? 14 : 28;
                    for (int i = 0; i < 8; i++)
                    {
                        (ulong m, ushort se) = FpValues.Extended(r);
                        BitConverter.TryWriteBytes(mem[(env + (10 * i))..], m);
                        BitConverter.TryWriteBytes(mem[(env + (10 * i) + 8)..], se);
                    }
                }
                break;
            }
            case MemorySize.Fxsave_512Byte:
            case MemorySize.Fxsave64_512Byte:
                if (ins.Mnemonic is Mnemonic.Fxrstor or Mnemonic.Fxrstor64)
                {
                    var state = new CpuState();
                    RandomX87(state, r);
                    state.Mxcsr = FpValues.Mxcsr(r);
                    state.Fx.AsSpan(0, 160).CopyTo(mem);
                }
                break;
            default:
                break;
        }
    }

    /// <summary>Bytes a CPU fills in model-specific ways: the x87 instruction/data pointers of FNSTENV/FNSAVE/FXSAVE and FXSAVE's MXCSR_MASK.</summary>
    private static IReadOnlyList<(ulong Address, int Length)>? IgnoredMemory(in Instruction ins, Case c)
    {
        ulong a = c.MemAddress;
        return ins.MemorySize switch
        {
            MemorySize.FpuEnv28 or MemorySize.FpuState108 => [(a + 12, 12)],
            MemorySize.FpuEnv14 or MemorySize.FpuState94 => [(a + 6, 8)],
            MemorySize.Fxsave_512Byte or MemorySize.Fxsave64_512Byte when ins.Mnemonic is Mnemonic.Fxsave or Mnemonic.Fxsave64 => [(a + 6, 18), (a + 28, 4)],
            _ => null,
        };
    }

    private static string DescribeX87(byte[] fx)
    {
        var sb = new StringBuilder();
        int top = (BitConverter.ToUInt16(fx, 2) >> 11) & 7;
        for (int i = 0; i < 8; i++)
        {
            bool valid = (fx[4] & (1 << ((top + i) & 7))) != 0;
            sb.Append($" st{i}={(valid ? "" : "(empty)")}{BitConverter.ToUInt16(fx, 40 + (16 * i)):x4}:{BitConverter.ToUInt64(fx, 32 + (16 * i)):x16}");
        }
        return sb.ToString();
    }

    /// <summary>An operand in the domain where the instruction is defined (and where libm calls it), sometimes a special value.</summary>
    private static void PrepareTranscendental(in Instruction ins, CpuState input, Random r)
    {
        RandomX87(input, r);
        const ulong J = 0x8000_0000_0000_0000;
        ulong frac = (ulong)r.NextInt64() & 0x7FFF_FFFF_FFFF_FFFF;
        ushort sign = (ushort)(r.Next(2) << 15);
        (ulong, ushort) x;
        switch (ins.Mnemonic)
        {
            case Mnemonic.F2xm1:
                x = r.Next(10) == 0 ? (J, (ushort)(sign | 16383)) : (J | frac, (ushort)(sign | r.Next(16383 - 70, 16383))); // |x| <= 1
                break;
            case Mnemonic.Fyl2xp1:
                x = (J | frac, (ushort)(sign | r.Next(16383 - 70, 16383 - 2))); // |x| < 1/4
                break;
            case Mnemonic.Fyl2x:
                x = r.Next(4) == 0 ? (J | frac, (ushort)r.Next(1, 0x7FFE)) : (J | (r.Next(2) == 0 ? frac >> r.Next(40, 64) : frac), (ushort)r.Next(16383 - 3, 16383 + 3));
                break;
            case Mnemonic.Fpatan:
                x = (J | frac, (ushort)(sign | r.Next(16383 - 40, 16383 + 40)));
                break;
            default: // fsin, fcos, fsincos, fptan
                x = r.Next(8) switch
                {
                    0 => (J | frac, (ushort)(sign | r.Next(16383 + 20, 16383 + 64))), // large, some beyond 2^63
                    1 => (J | frac, (ushort)(sign | r.Next(16383 - 70, 16383 - 20))), // tiny
                    _ => (J | frac, (ushort)(sign | r.Next(16383 - 8, 16383 + 8))),
                };
                break;
        }
        if (r.Next(12) != 0)
        {
            SetSt(input, 0, x.Item1, x.Item2);
            if (ins.Mnemonic is Mnemonic.Fyl2x or Mnemonic.Fyl2xp1 or Mnemonic.Fpatan)
            {
                SetSt(input, 1, J | ((ulong)r.NextInt64() & 0x7FFF_FFFF_FFFF_FFFF), (ushort)(r.Next(2) << 15 | r.Next(16383 - 30, 16383 + 30)));
            }
            if (ins.Mnemonic is Mnemonic.Fptan or Mnemonic.Fsincos && r.Next(4) != 0)
            {
                int top = (BitConverter.ToUInt16(input.Fx, 2) >> 11) & 7;
                input.Fx[4] &= (byte)~(1 << ((top + 7) & 7)); // room for the pushed result
            }
        }
    }

    /// <summary>False for an ST(0) where the SDM leaves the result undefined: f2xm1 outside [-1, 1], fyl2xp1 outside |x| &lt; 1 - sqrt(2)/2.</summary>
    private static bool InDomain(Mnemonic m, byte[] fx)
    {
        int top = (BitConverter.ToUInt16(fx, 2) >> 11) & 7;
        if ((fx[4] & (1 << top)) == 0 || m is not (Mnemonic.F2xm1 or Mnemonic.Fyl2xp1))
        {
            return true;
        }
        ushort se = BitConverter.ToUInt16(fx, 40);
        ulong mant = BitConverter.ToUInt64(fx, 32);
        int exp = se & 0x7FFF;
        if (exp == 0x7FFF || (exp != 0 && (mant >> 63) == 0))
        {
            return true; // NaN, infinity, unsupported: defined
        }
        double v = exp == 0 ? 0 : mant / 9223372036854775808.0 * Math.Pow(2, exp - 16383);
        return m == Mnemonic.F2xm1 ? v <= 1.0 : v < 0.29;
    }

    /// <summary>Position of an 80-bit value on the number line (consecutive representable values differ by one).</summary>
    private static System.Numerics.BigInteger Ordinal(ushort signExp, ulong mant)
    {
        int exp = signExp & 0x7FFF;
        System.Numerics.BigInteger v = exp == 0 ? mant : ((System.Numerics.BigInteger)(exp - 1) << 63) + mant;
        return (signExp & 0x8000) != 0 ? -v : v;
    }

    /// <summary>
    /// The x87 transcendental instructions: the emulator returns the correctly rounded value of the function (of the
    /// argument reduced with the hardware's 66-bit pi); the CPU's microcode is accurate to within one unit in the last
    /// place but not always correctly rounded (and Intel and AMD differ). Everything except the result registers'
    /// last bit (and C1, the round-up indicator) must match exactly; the result must be within one ulp; the share of
    /// bit-identical results is reported (and must stay high).
    /// </summary>
    [NativeX64WithFact("fpu")]
    public void X87TranscendentalForms_AreWithinOneUlpOfTheRealCpu()
    {
        var failures = new List<string>();
        int exact = 0, oneUlp = 0, cases = 0;
        var perForm = new Dictionary<Mnemonic, (int Exact, int OneUlp)>();
        foreach (Code code in Forms(X87Transcendental))
        {
            var r = new Random(80387 ^ (int)code);
            Instruction ins = Instruction.Create(code);
            byte[] bytes = _cpu.EncodeTest([ins]);
            for (int k = 0; k < 2000; k++)
            {
                CpuState input = RandomState(r);
                PrepareTranscendental(in ins, input, r);
                if (!InDomain(ins.Mnemonic, input.Fx))
                {
                    continue; // the result is undefined there (and differs between CPUs)
                }
                _cpu.Prepare(bytes, input);
                (CpuState native, byte[] nativeMem, VcpuExit exit, CpuState emu, byte[] emuMem) = RunBoth();
                cases++;
                if (exit.Kind != VcpuExitKind.Halt)
                {
                    failures.Add($"{ins}: emulator stopped with {exit.Kind} {exit.Detail}");
                    continue;
                }
                var diff = new StringBuilder();
                byte[] n = native.Fx, e = (byte[])emu.Fx.Clone();
                bool ulp = false;
                for (int i = 0; i < 8; i++)
                {
                    ushort nse = BitConverter.ToUInt16(n, 40 + (16 * i)), ese = BitConverter.ToUInt16(e, 40 + (16 * i));
                    ulong nm = BitConverter.ToUInt64(n, 32 + (16 * i)), em = BitConverter.ToUInt64(e, 32 + (16 * i));
                    if ((nse != ese || nm != em) && (nse & 0x7FFF) != 0x7FFF && (ese & 0x7FFF) != 0x7FFF
                        && System.Numerics.BigInteger.Abs(Ordinal(nse, nm) - Ordinal(ese, em)) == 1)
                    {
                        // One ulp apart: count it, and take the native value (and its C1) for the rest of the comparison.
                        ulp = true;
                        n.AsSpan(32 + (16 * i), 16).CopyTo(e.AsSpan(32 + (16 * i), 16));
                    }
                }
                // C1 reports the rounding direction: where the microcode's approximation and the exact value lie on
                // different sides of the (same) result, it differs even for an identical result.
                bool c1 = ((n[3] ^ e[3]) & 0x02) != 0;
                e[3] = (byte)((e[3] & ~0x02) | (n[3] & 0x02));
                CompareFx(n, e, diff);
                if (!nativeMem.AsSpan().SequenceEqual(emuMem) || ((native.Rflags ^ emu.Rflags) & Compared) != 0)
                {
                    diff.Append(" memory or flags differ;");
                }
                (int ex, int u) = perForm.GetValueOrDefault(ins.Mnemonic);
                ulp |= c1;
                if (diff.Length != 0)
                {
                    if (failures.Count < 40)
                    {
                        failures.Add($"{ins}: fcw=0x{BitConverter.ToUInt16(input.Fx, 0):x} fsw=0x{BitConverter.ToUInt16(input.Fx, 2):x} ftw=0x{input.Fx[4]:x2}{DescribeX87(input.Fx)}:{diff}");
                    }
                }
                else if (ulp)
                {
                    oneUlp++;
                    perForm[ins.Mnemonic] = (ex, u + 1);
                }
                else
                {
                    exact++;
                    perForm[ins.Mnemonic] = (ex + 1, u);
                }
            }
        }
        foreach ((Mnemonic m, (int ex, int u)) in perForm.OrderBy(p => p.Key.ToString(), StringComparer.Ordinal))
        {
            _out.WriteLine($"{m}: {ex} bit-identical, {u} one ulp apart or rounded from the other side (C1)");
        }
        _out.WriteLine($"{cases} x87 transcendental cases: {exact} bit-identical, {oneUlp} one ulp apart or with C1 differing, {cases - exact - oneUlp} failures");
        Assert.True(cases == exact + oneUlp, string.Join("\n", failures));
        Assert.True(exact >= cases * 9 / 10, $"only {exact} of {cases} results are bit-identical");
    }

    [NativeX64WithFact("fpu")]
    public void X87InstructionForms_MatchTheRealCpu() =>
        AssertFormsMatch("x87", X87Exact, 8087, minimumCases: 40000, X87CasesPerForm, PrepareX87);
}
