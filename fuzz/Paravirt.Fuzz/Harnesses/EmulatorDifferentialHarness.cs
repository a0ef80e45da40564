using System.Runtime.InteropServices;
using Iced.Intel;
using Paravirt.Emulator.Tests;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The emulator's decoder and executor against the real CPU (the differential tests' <see cref="NativeCpu"/>): the
/// input chooses up to 24 instructions from a constrained generator (integer ALU, moves, shifts by one, bswap,
/// cmov/set on every condition; register operands except rsp and r15, memory operands only in the data page through
/// r15) and the initial registers and flags; the same bytes run natively and in the emulator, and registers, the
/// flags the instructions define, and the data and stack pages must match. The generator never emits a branch, a
/// stack or system instruction, or an access outside the data page, so running it natively is safe.
/// </summary>
internal sealed class EmulatorDifferentialHarness : Harness
{
    private const ulong ArithmeticFlags = 0x8D5; // CF PF AF ZF SF OF
    private const ulong AuxiliaryFlag = 0x10;

    private static readonly string[] BinaryOps = ["Add", "Or", "Adc", "Sbb", "And", "Sub", "Xor", "Cmp"];
    private static readonly string[] LogicOps = ["Or", "And", "Xor", "Test"];
    private static readonly string[] UnaryOps = ["Inc", "Dec", "Neg", "Not"];
    private static readonly string[] ShiftOps = ["Shl", "Shr", "Sar", "Rol", "Ror"];
    private static readonly string[] Conditions = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];
    private static readonly int[] Sizes = [8, 16, 32, 64];

    private static readonly Register[][] Gprs =
    [
        [Register.AL, Register.CL, Register.DL, Register.BL, Register.BPL, Register.SIL, Register.DIL, Register.R8L, Register.R9L, Register.R10L, Register.R11L, Register.R12L, Register.R13L, Register.R14L],
        [Register.AX, Register.CX, Register.DX, Register.BX, Register.BP, Register.SI, Register.DI, Register.R8W, Register.R9W, Register.R10W, Register.R11W, Register.R12W, Register.R13W, Register.R14W],
        [Register.EAX, Register.ECX, Register.EDX, Register.EBX, Register.EBP, Register.ESI, Register.EDI, Register.R8D, Register.R9D, Register.R10D, Register.R11D, Register.R12D, Register.R13D, Register.R14D],
        [Register.RAX, Register.RCX, Register.RDX, Register.RBX, Register.RBP, Register.RSI, Register.RDI, Register.R8, Register.R9, Register.R10, Register.R11, Register.R12, Register.R13, Register.R14],
    ];

    private readonly NativeCpu? _cpu;

    public EmulatorDifferentialHarness()
    {
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64)
        {
            _cpu = new NativeCpu();
        }
    }

    /// <summary>False where machine code cannot run natively (not Linux x86-64): the harness then checks nothing.</summary>
    public bool Available => _cpu is not null;

    public override void Run(ReadOnlySpan<byte> data)
    {
        if (_cpu is null)
        {
            return;
        }
        var r = new FuzzReader(data);
        var input = new CpuState();
        for (int i = 0; i < 16; i++)
        {
            input.Gpr[i] = r.Interesting(ulong.MaxValue);
        }
        input.Gpr[4] = _cpu.StackTop;
        input.Gpr[15] = _cpu.DataAddress;
        input.Rflags = 0x2 | (r.U16() & ArithmeticFlags);
        r.Bytes(64).CopyTo(_cpu.Data);
        var instructions = new List<Instruction>();
        bool auxiliaryUndefined = false;
        int count = 1 + (r.U8() % 24);
        for (int i = 0; i < count && !r.AtEnd; i++)
        {
            if (Next(ref r, out bool? afUndefined) is Instruction ins)
            {
                instructions.Add(ins);
                auxiliaryUndefined = afUndefined ?? auxiliaryUndefined;
            }
        }
        if (instructions.Count == 0)
        {
            // An input too short for an instruction still runs (the thunk alone): afl-fuzz refuses a seed that
            // reaches no instrumented code.
            instructions.Add(Instruction.Create(Code.Nopd));
        }
        Exercised++;
        byte[] code = _cpu.EncodeTest(instructions);
        _cpu.Prepare(code, input);
        CpuState native = _cpu.RunNative();
        byte[] nativeMemory = _cpu.NativeMemory();
        (VcpuExit exit, CpuState emulated, byte[] emulatedMemory) = _cpu.RunEmulator();
        string Describe() => string.Join("; ", instructions);
        if (exit.Kind != VcpuExitKind.Halt)
        {
            throw new FuzzFindingException($"the emulator stopped with {exit.Kind} {exit.Detail} at 0x{exit.Rip:x}: {Describe()}");
        }
        for (int i = 0; i < 16; i++)
        {
            if (native.Gpr[i] != emulated.Gpr[i])
            {
                throw new FuzzFindingException($"register {i}: native 0x{native.Gpr[i]:x}, emulator 0x{emulated.Gpr[i]:x} after {Describe()}");
            }
        }
        ulong compared = ArithmeticFlags & ~(auxiliaryUndefined ? AuxiliaryFlag : 0);
        if (((native.Rflags ^ emulated.Rflags) & compared) != 0)
        {
            throw new FuzzFindingException($"rflags: native 0x{native.Rflags & compared:x}, emulator 0x{emulated.Rflags & compared:x} after {Describe()}");
        }
        if (!nativeMemory.AsSpan().SequenceEqual(emulatedMemory))
        {
            throw new FuzzFindingException($"memory differs at +0x{nativeMemory.AsSpan().CommonPrefixLength(emulatedMemory):x} after {Describe()}");
        }
    }

    /// <summary>One instruction, or null when the choice does not encode; <paramref name="auxiliaryUndefined"/> says what it does to AF (null: leaves it).</summary>
    private static Instruction? Next(ref FuzzReader r, out bool? auxiliaryUndefined)
    {
        int sizeIndex = r.U8() & 3;
        int size = Sizes[sizeIndex];
        Register reg = Gprs[sizeIndex][r.U8() % 14];
        Register reg2 = Gprs[sizeIndex][r.U8() % 14];
        bool memory = (r.U8() & 3) == 0;
        var mem = new MemoryOperand(Register.R15, (long)(r.U8() % 240) * 8);
        byte kind = r.U8();
        auxiliaryUndefined = null;
        string name;
        Instruction ins;
        switch (kind % 9)
        {
            case 0 or 1: // binary ALU, r/m <- r or r <- r/m
                {
                    string op = BinaryOps[r.U8() % BinaryOps.Length];
                    bool toReg = (kind & 0x10) != 0;
                    name = toReg ? $"{op}_r{size}_rm{size}" : $"{op}_rm{size}_r{size}";
                    auxiliaryUndefined = LogicOps.Contains(op);
                    ins = !TryCode(name, out Code c) ? default
                        : toReg ? (memory ? Instruction.Create(c, reg, mem) : Instruction.Create(c, reg, reg2))
                        : (memory ? Instruction.Create(c, mem, reg) : Instruction.Create(c, reg, reg2));
                    break;
                }
            case 2: // test
                name = $"Test_rm{size}_r{size}";
                auxiliaryUndefined = true;
                ins = TryCode(name, out Code t) ? (memory ? Instruction.Create(t, mem, reg) : Instruction.Create(t, reg, reg2)) : default;
                break;
            case 3: // unary
                {
                    string op = UnaryOps[r.U8() % UnaryOps.Length];
                    name = $"{op}_rm{size}";
                    auxiliaryUndefined = op == "Not" ? null : false;
                    ins = TryCode(name, out Code c) ? (memory ? Instruction.Create(c, mem) : Instruction.Create(c, reg)) : default;
                    break;
                }
            case 4: // shift or rotate by one (the count whose OF is defined)
                {
                    string op = ShiftOps[r.U8() % ShiftOps.Length];
                    name = $"{op}_rm{size}_1";
                    auxiliaryUndefined = op is "Shl" or "Shr" or "Sar" ? true : null;
                    ins = TryCode(name, out Code c) ? (memory ? Instruction.Create(c, mem, 1) : Instruction.Create(c, reg, 1)) : default;
                    break;
                }
            case 5: // mov either way
                name = (kind & 0x10) != 0 ? $"Mov_r{size}_rm{size}" : $"Mov_rm{size}_r{size}";
                ins = !TryCode(name, out Code m) ? default
                    : memory ? ((kind & 0x10) != 0 ? Instruction.Create(m, reg, mem) : Instruction.Create(m, mem, reg))
                    : Instruction.Create(m, reg, reg2);
                break;
            case 6: // cmovcc (16, 32, 64) or setcc (8)
                {
                    string cc = Conditions[r.U8() % Conditions.Length];
                    if (size == 8)
                    {
                        name = $"Set{cc}_rm8";
                        ins = TryCode(name, out Code c) ? (memory ? Instruction.Create(c, mem) : Instruction.Create(c, reg)) : default;
                    }
                    else
                    {
                        name = $"Cmov{cc}_r{size}_rm{size}";
                        ins = TryCode(name, out Code c) ? (memory ? Instruction.Create(c, reg, mem) : Instruction.Create(c, reg, reg2)) : default;
                    }
                    break;
                }
            case 7: // movzx / movsx from a narrower source, and lea
                {
                    Register wide = Gprs[3][r.U8() % 14];
                    Register narrow = Gprs[r.U8() % 2][r.U8() % 14];
                    int from = narrow.GetSize() * 8;
                    switch (r.U8() % 3)
                    {
                        case 0:
                            name = $"Movzx_r64_rm{from}";
                            ins = TryCode(name, out Code z) ? (memory ? Instruction.Create(z, wide, mem) : Instruction.Create(z, wide, narrow)) : default;
                            break;
                        case 1:
                            name = $"Movsx_r64_rm{from}";
                            ins = TryCode(name, out Code s) ? (memory ? Instruction.Create(s, wide, mem) : Instruction.Create(s, wide, narrow)) : default;
                            break;
                        default:
                            name = "Lea_r64_m";
                            ins = Instruction.Create(Code.Lea_r64_m, wide, new MemoryOperand(Gprs[3][r.U8() % 14], Gprs[3][r.U8() % 14], 1 << (r.U8() & 3), (long)(int)r.U32(), 4));
                            break;
                    }
                    break;
                }
            default: // xchg or bswap
                if ((kind & 0x10) != 0 && size >= 32)
                {
                    name = $"Bswap_r{size}";
                    ins = TryCode(name, out Code b) ? Instruction.Create(b, reg) : default;
                }
                else
                {
                    name = $"Xchg_rm{size}_r{size}";
                    ins = TryCode(name, out Code x) ? (memory ? Instruction.Create(x, mem, reg) : Instruction.Create(x, reg, reg2)) : default;
                }
                break;
        }
        // A combination the encoder refuses (e.g. AH with a REX register) is skipped, not run.
        return ins.Code == Code.INVALID || !Encoder.Create(64, new NullWriter()).TryEncode(ins, 0x100000, out _, out _) ? null : ins;
    }

    private sealed class NullWriter : CodeWriter
    {
        public override void WriteByte(byte value)
        {
        }
    }

    private static readonly Dictionary<string, Code> CodesByName = Enum.GetValues<Code>().DistinctBy(c => c.ToString()).ToDictionary(c => c.ToString(), StringComparer.Ordinal);

    private static bool TryCode(string name, out Code code) => CodesByName.TryGetValue(name, out code);

    public override void Dispose() => _cpu?.Dispose();
}
