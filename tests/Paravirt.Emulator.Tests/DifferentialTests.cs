using System.Text;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>Owns the one native test region; the differential tests share it and run one at a time (one class).</summary>
public sealed class NativeCpuFixture : IDisposable
{
    private readonly Lazy<NativeCpu> _cpu = new(() => new NativeCpu());
    internal NativeCpu Cpu => _cpu.Value;
    public void Dispose()
    {
        if (_cpu.IsValueCreated)
        {
            _cpu.Value.Dispose();
        }
    }
}

/// <summary>
/// Differential tests: every supported instruction form (generated from Iced's opcode tables: each operand size,
/// register/memory/immediate operand) runs natively in this process and in the emulator from the same registers,
/// flags, XMM registers and memory; all 16 GPRs, the arithmetic flags and DF (minus the flags the SDM documents as
/// undefined for that instruction, as Iced reports them), the XMM registers and the touched memory must match.
/// Seeded: the same cases every run.
/// </summary>
public sealed partial class DifferentialTests : IClassFixture<NativeCpuFixture>
{
    private const ulong CF = 1, PF = 4, AF = 0x10, ZF = 0x40, SF = 0x80, DF = 0x400, OF = 0x800;
    private const ulong Compared = CF | PF | AF | ZF | SF | OF | DF;
    private const int CasesPerForm = 48;

    private readonly NativeCpuFixture _fixture;
    private NativeCpu _cpu => _fixture.Cpu;
    private readonly ITestOutputHelper _out;

    public DifferentialTests(NativeCpuFixture fixture, ITestOutputHelper output)
    {
        ArgumentNullException.ThrowIfNull(fixture);
        _fixture = fixture;
        _out = output;
    }

    private static readonly HashSet<Mnemonic> Integer =
    [
        Mnemonic.Mov, Mnemonic.Movzx, Mnemonic.Movsx, Mnemonic.Movsxd, Mnemonic.Lea, Mnemonic.Push, Mnemonic.Pop,
        Mnemonic.Add, Mnemonic.Or, Mnemonic.Adc, Mnemonic.Sbb, Mnemonic.And, Mnemonic.Sub, Mnemonic.Xor, Mnemonic.Cmp, Mnemonic.Test,
        Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg, Mnemonic.Not, Mnemonic.Mul, Mnemonic.Imul, Mnemonic.Div, Mnemonic.Idiv,
        Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr,
        Mnemonic.Shld, Mnemonic.Shrd, Mnemonic.Bt, Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc, Mnemonic.Bsf, Mnemonic.Bsr,
        Mnemonic.Tzcnt, Mnemonic.Lzcnt, Mnemonic.Popcnt, Mnemonic.Andn, Mnemonic.Bextr, Mnemonic.Blsi, Mnemonic.Blsr, Mnemonic.Blsmsk,
        Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne, Mnemonic.Cmovbe, Mnemonic.Cmova,
        Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp, Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg,
        Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe, Mnemonic.Seta,
        Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg,
        Mnemonic.Xchg, Mnemonic.Cmpxchg, Mnemonic.Xadd, Mnemonic.Cmpxchg8b, Mnemonic.Cmpxchg16b, Mnemonic.Bswap,
        Mnemonic.Cbw, Mnemonic.Cwde, Mnemonic.Cdqe, Mnemonic.Cwd, Mnemonic.Cdq, Mnemonic.Cqo, Mnemonic.Leave,
        Mnemonic.Clc, Mnemonic.Stc, Mnemonic.Cmc, Mnemonic.Cld, Mnemonic.Std, Mnemonic.Lahf, Mnemonic.Sahf,
        Mnemonic.Nop, Mnemonic.Pause, Mnemonic.Lfence, Mnemonic.Sfence, Mnemonic.Mfence, Mnemonic.Endbr64,
    ];

    private static readonly HashSet<Mnemonic> Sse =
    [
        Mnemonic.Movd, Mnemonic.Movq, Mnemonic.Movdqa, Mnemonic.Movdqu, Mnemonic.Movaps, Mnemonic.Movups, Mnemonic.Movapd, Mnemonic.Movupd,
        Mnemonic.Movss, Mnemonic.Movsd, Mnemonic.Movlps, Mnemonic.Movlpd, Mnemonic.Movhps, Mnemonic.Movhpd, Mnemonic.Movhlps, Mnemonic.Movlhps,
        Mnemonic.Pxor, Mnemonic.Pand, Mnemonic.Por, Mnemonic.Pandn, Mnemonic.Xorps, Mnemonic.Xorpd, Mnemonic.Andps, Mnemonic.Andpd,
        Mnemonic.Orps, Mnemonic.Orpd, Mnemonic.Andnps, Mnemonic.Andnpd,
        Mnemonic.Pcmpeqb, Mnemonic.Pcmpeqw, Mnemonic.Pcmpeqd, Mnemonic.Pcmpgtb, Mnemonic.Pcmpgtw, Mnemonic.Pcmpgtd,
        Mnemonic.Pmovmskb, Mnemonic.Movmskps, Mnemonic.Movmskpd,
        Mnemonic.Punpcklbw, Mnemonic.Punpcklwd, Mnemonic.Punpckldq, Mnemonic.Punpcklqdq, Mnemonic.Punpckhbw, Mnemonic.Punpckhwd,
        Mnemonic.Punpckhdq, Mnemonic.Punpckhqdq, Mnemonic.Unpcklps, Mnemonic.Unpcklpd, Mnemonic.Unpckhps, Mnemonic.Unpckhpd,
        Mnemonic.Pshufd, Mnemonic.Pshuflw, Mnemonic.Pshufhw, Mnemonic.Shufps,
        Mnemonic.Paddb, Mnemonic.Paddw, Mnemonic.Paddd, Mnemonic.Paddq, Mnemonic.Psubb, Mnemonic.Psubw, Mnemonic.Psubd, Mnemonic.Psubq,
        Mnemonic.Psllw, Mnemonic.Pslld, Mnemonic.Psllq, Mnemonic.Psrlw, Mnemonic.Psrld, Mnemonic.Psrlq, Mnemonic.Psraw, Mnemonic.Psrad,
        Mnemonic.Pslldq, Mnemonic.Psrldq, Mnemonic.Pmuludq, Mnemonic.Pmullw, Mnemonic.Pminub, Mnemonic.Pmaxub, Mnemonic.Pminsw, Mnemonic.Pmaxsw,
        Mnemonic.Packuswb, Mnemonic.Packsswb, Mnemonic.Packssdw, Mnemonic.Paddusb, Mnemonic.Paddusw, Mnemonic.Psubusb, Mnemonic.Psubusw,
        Mnemonic.Paddsb, Mnemonic.Paddsw, Mnemonic.Psubsb, Mnemonic.Psubsw, Mnemonic.Pavgb, Mnemonic.Pavgw, Mnemonic.Pmulhw, Mnemonic.Pmulhuw,
        Mnemonic.Pmaddwd, Mnemonic.Psadbw, Mnemonic.Pextrw, Mnemonic.Pinsrw, Mnemonic.Movntdq, Mnemonic.Movntps, Mnemonic.Movntpd, Mnemonic.Movnti,
    ];

    private static readonly HashSet<Mnemonic> Lockable =
    [
        Mnemonic.Add, Mnemonic.Adc, Mnemonic.And, Mnemonic.Btc, Mnemonic.Btr, Mnemonic.Bts, Mnemonic.Cmpxchg, Mnemonic.Cmpxchg8b,
        Mnemonic.Cmpxchg16b, Mnemonic.Dec, Mnemonic.Inc, Mnemonic.Neg, Mnemonic.Not, Mnemonic.Or, Mnemonic.Sbb, Mnemonic.Sub,
        Mnemonic.Xor, Mnemonic.Xadd, Mnemonic.Xchg,
    ];

    private static readonly ulong[] Edges =
    [
        0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, ulong.MaxValue, ulong.MaxValue - 1, 0xFFFF_FFFF_FFFF_FF80,
        0xFFFF_FFFF_FFFF_8000, 0xFFFF_FFFF_8000_0000, 0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210,
    ];

    private static ulong Value(Random r) => r.Next(5) switch
    {
        0 => Edges[r.Next(Edges.Length)],
        1 => (ulong)r.NextInt64() ^ ((ulong)r.Next(2) << 63),
        2 => (ulong)(long)r.Next(-300, 300),
        3 => ((ulong)r.NextInt64() & ~0xFFFFUL) | (Edges[r.Next(Edges.Length)] & 0xFFFF),
        _ => Edges[r.Next(Edges.Length)] ^ (1UL << r.Next(64)),
    };

    private static readonly Register[] Gpr64 = [Register.RAX, Register.RCX, Register.RDX, Register.RBX, Register.RSP, Register.RBP, Register.RSI, Register.RDI, Register.R8, Register.R9, Register.R10, Register.R11, Register.R12, Register.R13, Register.R14, Register.R15];
    private static readonly Register[] Gpr32 = [Register.EAX, Register.ECX, Register.EDX, Register.EBX, Register.ESP, Register.EBP, Register.ESI, Register.EDI, Register.R8D, Register.R9D, Register.R10D, Register.R11D, Register.R12D, Register.R13D, Register.R14D, Register.R15D];
    private static readonly Register[] Gpr16 = [Register.AX, Register.CX, Register.DX, Register.BX, Register.SP, Register.BP, Register.SI, Register.DI, Register.R8W, Register.R9W, Register.R10W, Register.R11W, Register.R12W, Register.R13W, Register.R14W, Register.R15W];
    private static readonly Register[] Gpr8 = [Register.AL, Register.CL, Register.DL, Register.BL, Register.SPL, Register.BPL, Register.SIL, Register.DIL, Register.R8L, Register.R9L, Register.R10L, Register.R11L, Register.R12L, Register.R13L, Register.R14L, Register.R15L];
    private static readonly Register[] Gpr8High = [Register.AH, Register.CH, Register.DH, Register.BH];

    private static int Num(Register r) => r >= Register.AH && r <= Register.BH ? r - Register.AH : r.GetFullRegister() - Register.RAX;

    private sealed class Case
    {
        public List<object> Operands { get; } = [];
        public HashSet<int> Used { get; } = [];
        public int MemBase = -1, MemIndex = -1;
        public ulong MemAddress;
    }

    /// <summary>Picks a GPR of <paramref name="size"/> bytes, never rsp and never one already used.</summary>
    private static Register PickGpr(Random r, int size, Case c)
    {
        while (true)
        {
            int n = r.Next(16);
            if (size == 1 && r.Next(5) == 0)
            {
                n = r.Next(4);
                if (c.Used.Contains(n))
                {
                    continue;
                }
                c.Used.Add(n);
                return Gpr8High[n];
            }
            if (n == 4 || c.Used.Contains(n))
            {
                continue;
            }
            c.Used.Add(n);
            return size switch { 1 => Gpr8[n], 2 => Gpr16[n], 4 => Gpr32[n], _ => Gpr64[n] };
        }
    }

    private MemoryOperand PickMemory(Random r, Case c, bool aligned16)
    {
        ulong target = _cpu.DataAddress + 0x400 + (ulong)(16 * r.Next(0, 48));
        if (!aligned16)
        {
            target += (ulong)r.Next(0, 16);
        }
        c.MemAddress = target;
        if (r.Next(6) == 0)
        {
            return new MemoryOperand(Register.RIP, (long)target);
        }
        Register b = PickGpr(r, 8, c);
        c.MemBase = Num(b);
        long disp = aligned16 ? 16 * r.Next(-8, 8) : r.Next(-128, 128);
        if (r.Next(3) == 0)
        {
            Register x = PickGpr(r, 8, c);
            c.MemIndex = Num(x);
            int scale = 1 << r.Next(4);
            return new MemoryOperand(b, x, scale, disp, 1);
        }
        return new MemoryOperand(b, disp, disp is >= -128 and < 128 ? 1 : 4);
    }

    private static bool IsBmi(Mnemonic m) => m is Mnemonic.Andn or Mnemonic.Bextr or Mnemonic.Blsi or Mnemonic.Blsr or Mnemonic.Blsmsk
        or Mnemonic.Bzhi or Mnemonic.Pdep or Mnemonic.Pext or Mnemonic.Mulx or Mnemonic.Rorx or Mnemonic.Sarx or Mnemonic.Shlx or Mnemonic.Shrx;

    /// <summary>All Iced codes the differential suite covers: legacy (or VEX for BMI1) 64-bit forms of the supported mnemonics with operand kinds the harness can generate.</summary>
    private static IEnumerable<Code> Forms(HashSet<Mnemonic> set)
    {
        foreach (Code code in Enum.GetValues<Code>())
        {
            OpCodeInfo info = code.ToOpCode();
            if (!info.IsInstruction || !info.Mode64 || !set.Contains(info.Mnemonic))
            {
                continue;
            }
            if (info.Encoding != EncodingKind.Legacy && !(info.Encoding == EncodingKind.VEX && IsBmi(info.Mnemonic)))
            {
                continue;
            }
            if (code is Code.Bswap_r16 or Code.Pextrw_r32m16_xmm_imm8 or Code.Pextrw_r64m16_xmm_imm8 || info.Mnemonic is Mnemonic.Movsd && code == Code.Movsd_m32_m32)
            {
                continue; // bswap r16 is undefined; pextrw to memory is SSE4.1 (not advertised); movsd m32,m32 is the string instruction (tested separately)
            }
            if (info.Mnemonic is Mnemonic.Push or Mnemonic.Pop && (info.OperandSize == 16 || code.ToString().Contains("16", StringComparison.Ordinal)))
            {
                continue; // 16-bit push/pop is not supported by the emulator
            }
            if (info.Mnemonic == Mnemonic.Leave && code != Code.Leaveq)
            {
                continue;
            }
            bool ok = true;
            for (int i = 0; i < info.OpCount && ok; i++)
            {
                ok = info.GetOpKind(i) switch
                {
                    OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem
                    or OpCodeOperandKind.r8_reg or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r64_reg
                    or OpCodeOperandKind.r16_rm or OpCodeOperandKind.r32_rm or OpCodeOperandKind.r64_rm
                    or OpCodeOperandKind.r8_opcode or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r32_opcode or OpCodeOperandKind.r64_opcode
                    or OpCodeOperandKind.r32_vvvv or OpCodeOperandKind.r64_vvvv or OpCodeOperandKind.mem
                    or OpCodeOperandKind.imm8 or OpCodeOperandKind.imm8_const_1 or OpCodeOperandKind.imm8sex16 or OpCodeOperandKind.imm8sex32
                    or OpCodeOperandKind.imm8sex64 or OpCodeOperandKind.imm16 or OpCodeOperandKind.imm32 or OpCodeOperandKind.imm32sex64
                    or OpCodeOperandKind.imm64 or OpCodeOperandKind.al or OpCodeOperandKind.cl or OpCodeOperandKind.ax
                    or OpCodeOperandKind.eax or OpCodeOperandKind.rax
                    or OpCodeOperandKind.xmm_reg or OpCodeOperandKind.xmm_rm or OpCodeOperandKind.xmm_or_mem
                    or OpCodeOperandKind.st0 or OpCodeOperandKind.sti_opcode => true,
                    _ => false,
                };
            }
            if (ok)
            {
                yield return code;
            }
        }
    }

    private static int RegSize(OpCodeOperandKind k) => k switch
    {
        OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode => 1,
        OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_rm or OpCodeOperandKind.r16_opcode => 2,
        OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_rm or OpCodeOperandKind.r32_opcode or OpCodeOperandKind.r32_vvvv => 4,
        _ => 8,
    };

    /// <summary>Builds one random instance of <paramref name="code"/>; null when the encoder rejects the pick (e.g. AH with REX).</summary>
    private Instruction? Build(Code code, Random r, Case c)
    {
        OpCodeInfo info = code.ToOpCode();
        Mnemonic m = info.Mnemonic;
        // Registers the instruction uses implicitly (or that the harness adjusts) never serve as address registers.
        if (m is Mnemonic.Mul or Mnemonic.Imul or Mnemonic.Div or Mnemonic.Idiv or Mnemonic.Cmpxchg or Mnemonic.Cwd or Mnemonic.Cdq or Mnemonic.Cqo or Mnemonic.Cbw or Mnemonic.Cwde or Mnemonic.Cdqe or Mnemonic.Lahf or Mnemonic.Sahf)
        {
            c.Used.Add(0);
            c.Used.Add(2);
        }
        if (m is Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b)
        {
            c.Used.UnionWith([0, 1, 2, 3]);
        }
        if (m == Mnemonic.Leave)
        {
            c.Used.Add(5);
        }
        c.Used.UnionWith(ImplicitlyUsed(m));
        for (int i = 0; i < info.OpCount; i++)
        {
            switch (info.GetOpKind(i))
            {
                case OpCodeOperandKind.al: case OpCodeOperandKind.ax: case OpCodeOperandKind.eax: case OpCodeOperandKind.rax: c.Used.Add(0); break;
                case OpCodeOperandKind.cl: c.Used.Add(1); break;
                default: break;
            }
        }
        if (m is Mnemonic.Shld or Mnemonic.Shrd)
        {
            c.Used.Add(1);
        }
        bool shiftLike16 = m is Mnemonic.Shld or Mnemonic.Shrd && code.ToString().Contains("16", StringComparison.Ordinal);
        for (int i = 0; i < info.OpCount; i++)
        {
            OpCodeOperandKind k = info.GetOpKind(i);
            switch (k)
            {
                case OpCodeOperandKind.r8_or_mem: case OpCodeOperandKind.r16_or_mem: case OpCodeOperandKind.r32_or_mem: case OpCodeOperandKind.r64_or_mem:
                    if (r.Next(2) == 0)
                    {
                        c.Operands.Add(PickGpr(r, RegSize(k), c));
                    }
                    else
                    {
                        c.Operands.Add(PickMemory(r, c, false));
                    }
                    break;
                case OpCodeOperandKind.mem:
                    c.Operands.Add(PickMemory(r, c, m is Mnemonic.Cmpxchg16b || Sse.Contains(m) || NeedsAlignedMemory(m)));
                    break;
                case OpCodeOperandKind.xmm_or_mem:
                    if (r.Next(2) == 0)
                    {
                        c.Operands.Add(Register.XMM0 + r.Next(16));
                    }
                    else
                    {
                        c.Operands.Add(PickMemory(r, c, true));
                    }
                    break;
                case OpCodeOperandKind.xmm_reg: case OpCodeOperandKind.xmm_rm:
                    c.Operands.Add(Register.XMM0 + r.Next(16));
                    break;
                case OpCodeOperandKind.st0:
                    c.Operands.Add(Register.ST0);
                    break;
                case OpCodeOperandKind.sti_opcode:
                    c.Operands.Add(Register.ST0 + r.Next(8));
                    break;
                case OpCodeOperandKind.al: c.Operands.Add(Register.AL); c.Used.Add(0); break;
                case OpCodeOperandKind.ax: c.Operands.Add(Register.AX); c.Used.Add(0); break;
                case OpCodeOperandKind.eax: c.Operands.Add(Register.EAX); c.Used.Add(0); break;
                case OpCodeOperandKind.rax: c.Operands.Add(Register.RAX); c.Used.Add(0); break;
                case OpCodeOperandKind.cl: c.Operands.Add(Register.CL); c.Used.Add(1); break;
                case OpCodeOperandKind.imm8_const_1: c.Operands.Add(1L); break;
                case OpCodeOperandKind.imm8:
                    c.Operands.Add(shiftLike16 ? r.Next(0, 17) : m is Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shld or Mnemonic.Shrd or Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc && r.Next(2) == 0 ? r.Next(0, 70) : r.Next(0, 256));
                    break;
                case OpCodeOperandKind.imm8sex16: case OpCodeOperandKind.imm8sex32: case OpCodeOperandKind.imm8sex64:
                    c.Operands.Add((long)(sbyte)Value(r));
                    break;
                case OpCodeOperandKind.imm16: c.Operands.Add((long)(ushort)Value(r)); break;
                case OpCodeOperandKind.imm32: c.Operands.Add((long)(uint)Value(r)); break;
                case OpCodeOperandKind.imm32sex64: c.Operands.Add((long)(int)Value(r)); break;
                case OpCodeOperandKind.imm64: c.Operands.Add((long)Value(r)); break;
                default:
                    c.Operands.Add(PickGpr(r, RegSize(k), c));
                    break;
            }
        }
        try
        {
            Instruction ins = Create(code, c.Operands, info);
            if (ins.Op0Kind == Iced.Intel.OpKind.Memory && Lockable.Contains(m) && r.Next(3) == 0)
            {
                ins.HasLockPrefix = true;
            }
            return ins;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static Instruction Create(Code code, List<object> o, OpCodeInfo info)
    {
        static int I32(object v) => unchecked((int)(long)v);
        Instruction ins;
        switch (o.Count)
        {
            case 0:
                ins = Instruction.Create(code);
                break;
            case 1:
                ins = o[0] switch
                {
                    Register a => Instruction.Create(code, a),
                    MemoryOperand a => Instruction.Create(code, in a),
                    _ => Instruction.Create(code, I32(o[0])),
                };
                break;
            case 2:
                ins = (o[0], o[1]) switch
                {
                    (Register a, Register b) => Instruction.Create(code, a, b),
                    (Register a, MemoryOperand b) => Instruction.Create(code, a, in b),
                    (MemoryOperand a, Register b) => Instruction.Create(code, in a, b),
                    (Register a, long b) when info.GetOpKind(1) == OpCodeOperandKind.imm64 => Instruction.Create(code, a, b),
                    (Register a, long b) => Instruction.Create(code, a, I32(b)),
                    (MemoryOperand a, long b) => Instruction.Create(code, in a, I32(b)),
                    (Register a, int b) => Instruction.Create(code, a, b),
                    (MemoryOperand a, int b) => Instruction.Create(code, in a, b),
                    _ => throw new ArgumentException("operand pattern"),
                };
                break;
            default:
                ins = (o[0], o[1], o[2]) switch
                {
                    (Register a, Register b, Register d) => Instruction.Create(code, a, b, d),
                    (Register a, Register b, MemoryOperand d) => Instruction.Create(code, a, b, in d),
                    (Register a, MemoryOperand b, Register d) => Instruction.Create(code, a, in b, d),
                    (MemoryOperand a, Register b, Register d) => Instruction.Create(code, in a, b, d),
                    (Register a, Register b, int d) => Instruction.Create(code, a, b, d),
                    (Register a, Register b, long d) => Instruction.Create(code, a, b, I32(d)),
                    (Register a, MemoryOperand b, int d) => Instruction.Create(code, a, in b, d),
                    (Register a, MemoryOperand b, long d) => Instruction.Create(code, a, in b, I32(d)),
                    (MemoryOperand a, Register b, int d) => Instruction.Create(code, in a, b, d),
                    (MemoryOperand a, Register b, long d) => Instruction.Create(code, in a, b, I32(d)),
                    _ => throw new ArgumentException("operand pattern"),
                };
                break;
        }
        return ins;
    }

    private CpuState RandomState(Random r, bool randomDf = false)
    {
        var s = new CpuState();
        for (int i = 0; i < 16; i++)
        {
            s.Gpr[i] = Value(r);
            s.Xmm[i] = Vector128.Create(Value(r), Value(r)).AsByte();
        }
        s.Gpr[4] = _cpu.StackTop;
        ulong flags = 0x2;
        foreach (ulong f in new[] { CF, PF, AF, ZF, SF, OF })
        {
            if (r.Next(2) == 0)
            {
                flags |= f;
            }
        }
        if (randomDf && r.Next(2) == 0)
        {
            flags |= DF;
        }
        s.Rflags = flags;
        r.NextBytes(_cpu.Data);
        r.NextBytes(_cpu.Stack);
        return s;
    }

    private static ulong RflagsBitsToX86(RflagsBits b)
    {
        ulong f = 0;
        if ((b & RflagsBits.OF) != 0) f |= OF;
        if ((b & RflagsBits.SF) != 0) f |= SF;
        if ((b & RflagsBits.ZF) != 0) f |= ZF;
        if ((b & RflagsBits.AF) != 0) f |= AF;
        if ((b & RflagsBits.CF) != 0) f |= CF;
        if ((b & RflagsBits.PF) != 0) f |= PF;
        return f;
    }

    /// <summary>The shift count: the last operand (CL or an immediate).</summary>
    private static int Count(in Instruction ins, CpuState s)
    {
        int last = ins.OpCount - 1;
        return ins.GetOpKind(last) == Iced.Intel.OpKind.Register ? (int)(s.Gpr[1] & 0xFF) : (int)ins.GetImmediate(last);
    }

    /// <summary>Flags the SDM leaves undefined for this instance (Iced's table, refined by the actual shift count).</summary>
    private static ulong Undefined(in Instruction ins, CpuState s)
    {
        ulong u = RflagsBitsToX86(ins.RflagsUndefined);
        Mnemonic m = ins.Mnemonic;
        if (m is Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shld or Mnemonic.Shrd)
        {
            int size = ins.Op0Kind == Iced.Intel.OpKind.Register ? ins.Op0Register.GetSize() : ins.MemorySize.GetSize();
            int count = Count(in ins, s) & (size == 8 ? 63 : 31);
            if (count == 0)
            {
                return 0; // no flag changes at all
            }
            u = count == 1 ? u & ~OF : u | OF;
            if (m is Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Shld or Mnemonic.Shrd)
            {
                u |= AF;
                if (count >= size * 8)
                {
                    u |= CF; // CF undefined when the count is at least the operand width
                }
            }
        }
        return u;
    }

    private static string Describe(in Instruction ins, CpuState input, byte[]? memory = null)
    {
        var sb = new StringBuilder();
        sb.Append(ins.ToString()).Append(" [").Append(ins.Code).Append("] in:");
        for (int i = 0; i < 16; i++)
        {
            sb.Append(' ').Append(Gpr64[i]).Append("=0x").Append(input.Gpr[i].ToString("x"));
        }
        sb.Append(" rflags=0x").Append(input.Rflags.ToString("x"));
        for (int k = 0; k < ins.OpCount; k++)
        {
            if (ins.GetOpKind(k) == Iced.Intel.OpKind.Register && ins.GetOpRegister(k).IsXMM())
            {
                int x = ins.GetOpRegister(k) - Register.XMM0;
                sb.Append($" xmm{x}={input.Xmm[x].AsUInt64().GetElement(1):x16}_{input.Xmm[x].AsUInt64().GetElement(0):x16}");
            }
        }
        if (memory is not null)
        {
            sb.Append($" mem={BitConverter.ToUInt64(memory, 8):x16}_{BitConverter.ToUInt64(memory, 0):x16}");
        }
        sb.Append($" mxcsr=0x{input.Mxcsr:x} fcw=0x{BitConverter.ToUInt16(input.Fx, 0):x} fsw=0x{BitConverter.ToUInt16(input.Fx, 2):x} ftw=0x{input.Fx[4]:x2}");
        if (ins.Code.ToString().StartsWith('F') || ins.Mnemonic == Mnemonic.Wait)
        {
            sb.Append(DescribeX87(input.Fx));
        }
        return sb.ToString();
    }

    /// <summary>Runs <paramref name="code"/> from <paramref name="input"/> natively and on the emulator; returns an error description or null.</summary>
    private string? Compare(byte[] code, CpuState input, ulong undefinedFlags, Func<string> describe, bool expectDivideError = false,
        IReadOnlyList<(ulong Address, int Length)>? ignoredMemory = null)
    {
        _cpu.Prepare(code, input);
        if (expectDivideError)
        {
            (VcpuExit fexit, _, _) = _cpu.RunEmulator();
            return fexit.Kind == VcpuExitKind.Fault && fexit.Detail!.Contains("divide error", StringComparison.Ordinal)
                ? null
                : $"{describe()}: expected a divide error fault, got {fexit.Kind} {fexit.Detail}";
        }
        (CpuState native, byte[] nativeMem, VcpuExit exit, CpuState emu, byte[] emuMem) = RunBoth();
        if (exit.Kind != VcpuExitKind.Halt)
        {
            return $"{describe()}: emulator stopped with {exit.Kind} {exit.Detail} at 0x{exit.Rip:x}";
        }
        var diff = new StringBuilder();
        for (int i = 0; i < 16; i++)
        {
            if (native.Gpr[i] != emu.Gpr[i])
            {
                diff.Append($" {Gpr64[i]}: native 0x{native.Gpr[i]:x} emu 0x{emu.Gpr[i]:x};");
            }
            if (native.Xmm[i] != emu.Xmm[i])
            {
                diff.Append($" xmm{i}: native {native.Xmm[i].AsUInt64()} emu {emu.Xmm[i].AsUInt64()};");
            }
        }
        ulong mask = Compared & ~undefinedFlags;
        if (((native.Rflags ^ emu.Rflags) & mask) != 0)
        {
            diff.Append($" rflags: native 0x{native.Rflags & Compared:x} emu 0x{emu.Rflags & Compared:x} (compared 0x{mask:x});");
        }
        CompareFx(native.Fx, emu.Fx, diff);
        foreach ((ulong address, int length) in ignoredMemory ?? [])
        {
            // Fields a CPU fills in model-specific ways (x87 instruction/data pointers): take the native bytes.
            int at = (int)(address - _cpu.DataAddress);
            nativeMem.AsSpan(at, length).CopyTo(emuMem.AsSpan(at, length));
        }
        if (!nativeMem.AsSpan().SequenceEqual(emuMem))
        {
            int i = nativeMem.AsSpan().CommonPrefixLength(emuMem);
            diff.Append($" memory +0x{i + NativeCpu.DataOff:x}: native 0x{nativeMem[i]:x2} emu 0x{emuMem[i]:x2};");
        }
        return diff.Length == 0 ? null : $"{describe()}:{diff}";
    }

    /// <summary>Runs the prepared code natively, then on the emulator.</summary>
    private (CpuState Native, byte[] NativeMemory, VcpuExit Exit, CpuState Emu, byte[] EmuMemory) RunBoth()
    {
        CpuState native = _cpu.RunNative();
        byte[] nativeMem = _cpu.NativeMemory();
        (VcpuExit exit, CpuState emu, byte[] emuMem) = _cpu.RunEmulator();
        return (native, nativeMem, exit, emu, emuMem);
    }

    /// <summary>
    /// Compares the x87/MXCSR part of two FXSAVE images: FCW, FSW, abridged tags, MXCSR and the eight registers.
    /// Not compared: FOP/FIP/FDP (bytes 6-23: whether and what a CPU records there is model-specific; the emulator
    /// stores zero) and MXCSR_MASK (the host's; the emulator reports 0xFFFF, checked separately); the XMM part is
    /// compared register by register.
    /// </summary>
    internal static void CompareFx(byte[] native, byte[] emu, StringBuilder diff)
    {
        ushort nfcw = BitConverter.ToUInt16(native, 0), efcw = BitConverter.ToUInt16(emu, 0);
        ushort nfsw = BitConverter.ToUInt16(native, 2), efsw = BitConverter.ToUInt16(emu, 2);
        uint nmx = BitConverter.ToUInt32(native, 24), emx = BitConverter.ToUInt32(emu, 24);
        if (nfcw != efcw)
        {
            diff.Append($" fcw: native 0x{nfcw:x4} emu 0x{efcw:x4};");
        }
        if (nfsw != efsw)
        {
            diff.Append($" fsw: native 0x{nfsw:x4} emu 0x{efsw:x4};");
        }
        if (native[4] != emu[4] || native[5] != emu[5])
        {
            diff.Append($" ftw: native 0x{native[4]:x2} emu 0x{emu[4]:x2};");
        }
        if (nmx != emx)
        {
            diff.Append($" mxcsr: native 0x{nmx:x} emu 0x{emx:x};");
        }
        for (int i = 0; i < 8; i++)
        {
            ReadOnlySpan<byte> n = native.AsSpan(32 + (16 * i), 16), e = emu.AsSpan(32 + (16 * i), 16);
            if (!n.SequenceEqual(e))
            {
                diff.Append($" st{i}: native {BitConverter.ToUInt16(native, 40 + (16 * i)):x4}:{BitConverter.ToUInt64(native, 32 + (16 * i)):x16} emu {BitConverter.ToUInt16(emu, 40 + (16 * i)):x4}:{BitConverter.ToUInt64(emu, 32 + (16 * i)):x16};");
            }
        }
    }

    private static bool WouldDivideFault(Mnemonic m, int size, CpuState s, ulong divisor)
    {
        ulong mask = size == 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;
        divisor &= mask;
        if (divisor == 0)
        {
            return true;
        }
        System.Numerics.BigInteger hi = size == 1 ? (s.Gpr[0] >> 8) & 0xFF : s.Gpr[2] & mask;
        System.Numerics.BigInteger lo = s.Gpr[0] & (size == 1 ? 0xFF : mask);
        int bits = size * 8;
        System.Numerics.BigInteger n = (hi << bits) | lo;
        if (m == Mnemonic.Div)
        {
            return n / divisor > mask;
        }
        System.Numerics.BigInteger full = System.Numerics.BigInteger.One << (2 * bits);
        if (n >= full / 2)
        {
            n -= full;
        }
        System.Numerics.BigInteger d = divisor >= (1UL << (bits - 1)) && bits < 64 ? (System.Numerics.BigInteger)divisor - (System.Numerics.BigInteger.One << bits)
            : bits == 64 ? (System.Numerics.BigInteger)(long)divisor : divisor;
        System.Numerics.BigInteger q = System.Numerics.BigInteger.Divide(n, d);
        System.Numerics.BigInteger max = (System.Numerics.BigInteger.One << (bits - 1)) - 1;
        return q > max || q < -max - 1;
    }

    /// <summary>Adjusts a generated case's input before it runs (FP operands, MXCSR, x87 state).</summary>
    private delegate void PrepareCase(in Instruction ins, CpuState input, Random r, Case c);

    private int RunForms(HashSet<Mnemonic> set, int seed, List<string> failures, ref int emulatorOnly, int casesPerForm = CasesPerForm, PrepareCase? prepare = null)
    {
        int cases = 0;
        var covered = Forms(set).Select(c => c.ToOpCode().Mnemonic).ToHashSet();
        foreach (Mnemonic missing in set.Except(covered))
        {
            failures.Add($"{missing}: no instruction form generated");
        }
        foreach (Code code in Forms(set))
        {
            var r = new Random(seed ^ (int)code * 7919);
            int built = 0;
            int failuresOfForm = 0;
            for (int attempt = 0; built < casesPerForm && attempt < casesPerForm * 4; attempt++)
            {
                var c = new Case();
                Instruction? maybe = Build(code, r, c);
                if (maybe is not Instruction ins)
                {
                    continue;
                }
                byte[] bytes;
                try
                {
                    bytes = _cpu.EncodeTest([ins]);
                }
                catch (InvalidOperationException)
                {
                    continue;
                }
                built++;
                CpuState input = RandomState(r);
                if (c.MemBase >= 0)
                {
                    input.Gpr[c.MemBase] = c.MemAddress - ins.MemoryDisplacement64;
                    if (c.MemIndex >= 0)
                    {
                        ulong idx = (ulong)r.Next(0, 8);
                        input.Gpr[c.MemIndex] = idx;
                        input.Gpr[c.MemBase] -= idx * (ulong)ins.MemoryIndexScale;
                    }
                }
                Mnemonic m = ins.Mnemonic;
                if (m is Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc && ins.Op0Kind == Iced.Intel.OpKind.Memory && ins.Op1Kind == Iced.Intel.OpKind.Register)
                {
                    input.Gpr[Num(ins.Op1Register)] = (ulong)(long)r.Next(-200, 700);
                }
                if (m == Mnemonic.Leave)
                {
                    input.Gpr[5] = _cpu.DataAddress + 0x800 + (ulong)(8 * r.Next(16));
                }
                if (m is Mnemonic.Shld or Mnemonic.Shrd && ins.Op2Kind == Iced.Intel.OpKind.Register && (ins.Op0Kind == Iced.Intel.OpKind.Register ? ins.Op0Register.GetSize() : ins.MemorySize.GetSize()) == 2)
                {
                    input.Gpr[1] = (input.Gpr[1] & ~0xFFUL) | (uint)r.Next(0, 17);
                }
                bool divFault = false;
                if (m is Mnemonic.Div or Mnemonic.Idiv)
                {
                    int size = ins.Op0Kind == Iced.Intel.OpKind.Register ? ins.Op0Register.GetSize() : ins.MemorySize.GetSize();
                    if (r.Next(3) != 0)
                    {
                        // Make most cases divide without overflow: a small high half.
                        if (size == 1)
                        {
                            input.Gpr[0] &= ~0xFF00UL | (ulong)r.Next(0, 2) << 8;
                        }
                        else
                        {
                            input.Gpr[2] = m == Mnemonic.Idiv && r.Next(2) == 0 ? ((input.Gpr[0] >> (size * 8 - 1) & 1) != 0 ? ulong.MaxValue : 0) : (ulong)r.Next(0, 2);
                        }
                    }
                    ulong divisor;
                    if (ins.Op0Kind == Iced.Intel.OpKind.Register)
                    {
                        Register reg = ins.Op0Register;
                        divisor = reg >= Register.AH && reg <= Register.BH ? input.Gpr[Num(reg)] >> 8 : input.Gpr[Num(reg)];
                    }
                    else
                    {
                        ulong addr = input.Gpr[c.MemBase >= 0 ? c.MemBase : 0];
                        addr = c.MemBase >= 0 ? c.MemAddress : c.MemAddress;
                        int off = (int)(addr - _cpu.DataAddress);
                        divisor = BitConverter.ToUInt64(_cpu.Data[off..(off + 8)]);
                    }
                    divFault = WouldDivideFault(m, size, input, divisor);
                    if (divFault)
                    {
                        emulatorOnly++;
                    }
                }
                prepare?.Invoke(in ins, input, r, c);
                ulong undefined = Undefined(in ins, input);
                Instruction captured = ins;
                byte[]? memIn = c.MemAddress != 0 ? _cpu.Data.Slice((int)(c.MemAddress - _cpu.DataAddress), 16).ToArray() : null;
                string? error = Compare(bytes, input, undefined, () => Describe(in captured, input, memIn), divFault, IgnoredMemory(in ins, c));
                cases++;
                if (error is not null && failures.Count < 60 && ++failuresOfForm <= 3)
                {
                    failures.Add(error);
                }
            }
            if (built == 0)
            {
                failures.Add($"{code}: no encodable instance generated");
            }
        }
        return cases;
    }

    /// <summary>
    /// Runs <see cref="RunForms"/> over <paramref name="set"/>: more than <paramref name="minimumCases"/> cases must run
    /// and none fail. Logs the counts (emulator-only: cases the real CPU could not run in the harness, a divide error).
    /// </summary>
    private void AssertFormsMatch(string what, HashSet<Mnemonic> set, int seed, int minimumCases, int casesPerForm = CasesPerForm, PrepareCase? prepare = null)
    {
        var failures = new List<string>();
        int emulatorOnly = 0;
        int cases = RunForms(set, seed, failures, ref emulatorOnly, casesPerForm, prepare);
        _out.WriteLine($"{cases} {what} cases ({emulatorOnly} emulator-only), {failures.Count} failures");
        Assert.True(cases > minimumCases, $"only {cases} cases");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// A hand-written differential test's count of cases and its first failures (at most <paramref name="keep"/>, so
    /// that one broken instruction does not bury the report).
    /// </summary>
    private sealed class Tally(ITestOutputHelper output, int keep = 20)
    {
        private readonly List<string> _failures = [];

        public int Cases { get; private set; }

        /// <summary>Counts one case; <paramref name="failure"/> is its mismatch, null when the emulator agreed.</summary>
        public void Count(string? failure)
        {
            Cases++;
            if (failure is not null && _failures.Count < keep)
            {
                _failures.Add(failure);
            }
        }

        /// <summary>Logs how many <paramref name="what"/> ran and fails with the kept failures, if any.</summary>
        public void AssertNone(string what)
        {
            output.WriteLine($"{Cases} {what}, {_failures.Count} failures");
            Assert.True(_failures.Count == 0, string.Join("\n", _failures));
        }
    }

    [LinuxX64Fact]
    public void IntegerInstructionForms_MatchTheRealCpu() => AssertFormsMatch("integer", Integer, 12345, minimumCases: 15000);

    [LinuxX64Fact]
    public void SseInstructionForms_MatchTheRealCpu() => AssertFormsMatch("SSE", Sse, 777, minimumCases: 3000);

    // ---- sequences: control flow, stack, string instructions ----

    private string? CompareSequence(Action<Assembler> build, CpuState input, ulong undefinedFlags, string what)
    {
        var a = new Assembler(64);
        build(a);
        a.nop(); // a label may close the sequence
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), _cpu.CodeAddress);
        return Compare(ms.ToArray(), input, undefinedFlags, () => $"{what} rflags=0x{input.Rflags:x} rcx=0x{input.Gpr[1]:x}");
    }

    private static readonly Code[] Jccs =
    [
        Code.Jo_rel32_64, Code.Jno_rel32_64, Code.Jb_rel32_64, Code.Jae_rel32_64, Code.Je_rel32_64, Code.Jne_rel32_64, Code.Jbe_rel32_64, Code.Ja_rel32_64,
        Code.Js_rel32_64, Code.Jns_rel32_64, Code.Jp_rel32_64, Code.Jnp_rel32_64, Code.Jl_rel32_64, Code.Jge_rel32_64, Code.Jle_rel32_64, Code.Jg_rel32_64,
        Code.Jo_rel8_64, Code.Jno_rel8_64, Code.Jb_rel8_64, Code.Jae_rel8_64, Code.Je_rel8_64, Code.Jne_rel8_64, Code.Jbe_rel8_64, Code.Ja_rel8_64,
        Code.Js_rel8_64, Code.Jns_rel8_64, Code.Jp_rel8_64, Code.Jnp_rel8_64, Code.Jl_rel8_64, Code.Jge_rel8_64, Code.Jle_rel8_64, Code.Jg_rel8_64,
    ];

    [LinuxX64Fact]
    public void ConditionalBranches_MatchTheRealCpu()
    {
        var tally = new Tally(_out);
        var r = new Random(4242);
        foreach (Code jcc in Jccs)
        {
            for (int k = 0; k < 64; k++)
            {
                CpuState input = RandomState(r);
                input.Rflags = 0x2 | ((ulong)k & 1) | (((ulong)k >> 1 & 1) << 2) | (((ulong)k >> 2 & 1) << 6) | (((ulong)k >> 3 & 1) << 7) | (((ulong)k >> 4 & 1) << 11) | (((ulong)k >> 5 & 1) << 4);
                int len = jcc.ToString().Contains("rel8", StringComparison.Ordinal) ? 2 : 6;
                Instruction[] seq =
                [
                    Instruction.CreateBranch(jcc, _cpu.CodeAddress + (ulong)len + 7),
                    Instruction.Create(Code.Mov_rm64_imm32, Register.R8, 1),
                    Instruction.Create(Code.Mov_rm64_imm32, Register.R9, 2),
                ];
                tally.Count(Compare(_cpu.EncodeTest(seq), input, 0, () => $"{jcc} rflags=0x{input.Rflags:x}"));
            }
        }
        tally.AssertNone("jcc cases");
    }

    [LinuxX64Fact]
    public void LoopsCallsReturnsAndStack_MatchTheRealCpu()
    {
        var tally = new Tally(_out);
        var r = new Random(99);
        void Check(string what, Action<Assembler> build, CpuState input, ulong undefined = 0) => tally.Count(CompareSequence(build, input, undefined, what));
        for (int k = 0; k < 200; k++)
        {
            CpuState input = RandomState(r);
            input.Gpr[1] = (ulong)r.Next(1, 20);
            ulong data = _cpu.DataAddress;
            // Each loop form around a counted body whose last instruction sets (or not) the flags loope/loopne read.
            foreach ((string what, Action<Assembler> body, Action<Assembler, Label> loop) in new (string, Action<Assembler>, Action<Assembler, Label>)[]
            {
                ("loop", a => a.add(r9, rcx), (a, top) => a.loop(top)),
                ("loope", a => a.cmp(r9b, cl), (a, top) => a.loope(top)),
                ("loopne", a => a.test(r9b, cl), (a, top) => a.loopne(top)),
            })
            {
                Check(what, a =>
                {
                    Label top = a.CreateLabel();
                    a.Label(ref top);
                    a.inc(r8);
                    body(a);
                    loop(a, top);
                }, input);
            }
            CpuState zero = RandomState(r);
            zero.Gpr[1] = (ulong)r.Next(0, 2);
            Check("jrcxz", a =>
            {
                Label skip = a.CreateLabel();
                a.jrcxz(skip);
                a.mov(r8, 1);
                a.Label(ref skip);
                a.mov(r9, 2);
            }, zero);
            Check("call/ret", a =>
            {
                Label f = a.CreateLabel(), end = a.CreateLabel();
                a.call(f);
                a.mov(r8, rax);
                a.jmp(end);
                a.Label(ref f);
                a.lea(rax, __[f]);
                a.add(rax, rdx);
                a.ret();
                a.Label(ref end);
            }, input);
            Check("ret imm16", a =>
            {
                Label f = a.CreateLabel(), end = a.CreateLabel();
                a.push(rbx);
                a.push(rcx);
                a.call(f);
                a.jmp(end);
                a.Label(ref f);
                a.mov(rax, __qword_ptr[rsp + 8]);
                a.ret(16);
                a.Label(ref end);
            }, input);
            Check("indirect call/jmp", a =>
            {
                Label f = a.CreateLabel(), g = a.CreateLabel(), end = a.CreateLabel();
                a.lea(rax, __[f]);
                a.mov(rbx, (long)data + 0x100);
                a.mov(__qword_ptr[rbx + 8], rax);
                a.call(__qword_ptr[rbx + 8]);
                a.lea(rsi, __[g]);
                a.call(rax);
                a.jmp(rsi);
                a.Label(ref f);
                a.inc(r10);
                a.ret();
                a.Label(ref g);
                a.lea(rdi, __[end]);
                a.mov(__qword_ptr[rbx], rdi);
                a.jmp(__qword_ptr[rbx]);
                a.Label(ref end);
            }, input);
            Check("push/pop/enter-leave frame", a =>
            {
                a.push(rbp);
                a.mov(rbp, rsp);
                a.push(rax);
                a.push(-5);
                a.push(0x12345678);
                a.push(__qword_ptr[rsp + 8]);
                a.pop(rcx);
                a.pop(__qword_ptr[rsp + 8]);
                a.pop(rdx);
                a.leave();
            }, input);
            ulong popf = (Value(r) & 0xCD5) | 0x2;
            Check("pushfq/popfq", a =>
            {
                a.pushfq();
                a.pop(rax);
                a.and(rax, 0xCD5);
                a.mov(rbx, (long)popf);
                a.push(rbx);
                a.popfq();
                a.lahf();
                a.setc(dl);
            }, input);
        }
        tally.AssertNone("control-flow and stack cases");
    }

    [LinuxX64Fact]
    public void StringInstructions_MatchTheRealCpu()
    {
        var tally = new Tally(_out);
        var r = new Random(2024);
        string[] ops = ["movs", "stos", "lods", "cmps", "scas"];
        for (int k = 0; k < 1500; k++)
        {
            string op = ops[r.Next(ops.Length)];
            int size = 1 << r.Next(4);
            int prefix = r.Next(op is "cmps" or "scas" ? 3 : 2); // 0 none, 1 rep/repe, 2 repne
            CpuState input = RandomState(r, randomDf: true);
            bool down = (input.Rflags & DF) != 0;
            int src = (down ? 0x700 : 0x200) + r.Next(0, 64);
            int dst = op == "movs" && r.Next(3) == 0 ? src + (down ? -1 : 1) * r.Next(1, 9) : (down ? 0xC00 : 0x800) + r.Next(0, 64);
            input.Gpr[6] = _cpu.DataAddress + (ulong)src;
            input.Gpr[7] = _cpu.DataAddress + (ulong)dst;
            input.Gpr[1] = (ulong)r.Next(0, 40);
            if (op is "cmps" or "scas")
            {
                // Equal runs so that repe/repne stop somewhere inside.
                int equal = r.Next(0, 300);
                Span<byte> d = _cpu.Data;
                for (int i = 0; i < equal; i++)
                {
                    int si = down ? src + 7 - i : src + i;
                    int di = down ? dst + 7 - i : dst + i;
                    if (si is >= 0 and < 0x1000 && di is >= 0 and < 0x1000)
                    {
                        d[di] = d[si];
                    }
                }
                if (r.Next(2) == 0)
                {
                    input.Gpr[0] = BitConverter.ToUInt64(d[dst..(dst + 8)]);
                }
            }
            string what = $"{(prefix == 1 ? "rep " : prefix == 2 ? "repne " : "")}{op}{"bwdq"[System.Numerics.BitOperations.Log2((uint)size)]}";
            string? e = CompareSequence(a =>
            {
                Assembler p = prefix switch { 1 => op is "cmps" or "scas" ? a.repe : a.rep, 2 => a.repne, _ => a };
                switch (op, size)
                {
                    case ("movs", 1): p.movsb(); break;
                    case ("movs", 2): p.movsw(); break;
                    case ("movs", 4): p.movsd(); break;
                    case ("movs", 8): p.movsq(); break;
                    case ("stos", 1): p.stosb(); break;
                    case ("stos", 2): p.stosw(); break;
                    case ("stos", 4): p.stosd(); break;
                    case ("stos", 8): p.stosq(); break;
                    case ("lods", 1): p.lodsb(); break;
                    case ("lods", 2): p.lodsw(); break;
                    case ("lods", 4): p.lodsd(); break;
                    case ("lods", 8): p.lodsq(); break;
                    case ("cmps", 1): p.cmpsb(); break;
                    case ("cmps", 2): p.cmpsw(); break;
                    case ("cmps", 4): p.cmpsd(); break;
                    case ("cmps", 8): p.cmpsq(); break;
                    case ("scas", 1): p.scasb(); break;
                    case ("scas", 2): p.scasw(); break;
                    case ("scas", 4): p.scasd(); break;
                    default: p.scasq(); break;
                }
            }, input, 0, what);
            tally.Count(e);
        }
        tally.AssertNone("string cases");
    }
}
