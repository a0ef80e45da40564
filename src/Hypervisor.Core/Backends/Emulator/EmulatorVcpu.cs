using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Iced.Intel;
using Paravirt.Abi;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The emulated vCPU: architectural state (16 GPRs, RIP, RFLAGS, 16 XMM registers), the decoded-block cache with
/// per-page invalidation, the checked memory path and the run loop. Execution lives in
/// <c>EmulatorVcpu.Execute.cs</c>.
/// </summary>
internal sealed unsafe partial class EmulatorVcpu : IVcpu, IInstructionCounter
{
    internal const ulong CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, TF = 0x100, DF = 0x400, OF = 0x800;
    internal const ulong ArithFlags = CF | PF | AF | ZF | SF | OF;
    /// <summary>RFLAGS bits popfq may change at CPL0 (VM, RF, VIF, VIP stay clear).</summary>
    internal const ulong PopfMask = 0x247FD5;
    private const int MaxBlockInstructions = 256;
    private const int FastCacheSize = 4096;

    private readonly GuestMemory _memory;
    private readonly byte* _mem;
    private readonly ulong _size;
    private readonly ulong[] _regArray = GC.AllocateArray<ulong>(20, pinned: true);
    private readonly ulong* _r;
    private readonly Vector128<byte>[] _xmmArray = GC.AllocateArray<Vector128<byte>>(16, pinned: true);
    private readonly Vector128<byte>* _x;
    private readonly byte[] _codePageArray;
    private readonly byte* _codePage;
    private readonly ulong? _budget;

    private ulong _rip;
    private ulong _rf = 0x2;
    private ulong _icount;
    private volatile bool _interrupt;
    private bool _smc;

    private readonly Dictionary<ulong, Block> _blocks = [];
    private readonly Dictionary<ulong, List<Block>> _pageBlocks = [];
    private readonly Block?[] _fast = new Block?[FastCacheSize];
    private readonly List<MicroOp> _decodeOps = [];
    private readonly List<string> _decodeTexts = [];
    private VcpuExit _exit;

    public EmulatorVcpu(GuestMemory memory, VirtualMachineOptions options, in VcpuStartState start)
    {
        _memory = memory;
        _mem = (byte*)memory.HostAddress;
        _size = memory.Size;
        _budget = options.InstructionBudget;
        // Safe: the arrays are pinned for the lifetime of this object (GC.AllocateArray pinned: true).
        _r = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_regArray));
        _x = (Vector128<byte>*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_xmmArray));
        _codePageArray = GC.AllocateArray<byte>((int)((_size + 0xFFF) >> 12) + 1, pinned: true);
        _codePage = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_codePageArray));
        _rip = start.Rip;
        _r[4] = start.Rsp;
        _r[7] = start.Rdi;
    }

    public ulong InstructionsRetired => _icount;

    // ---- IVcpu ----

    public VcpuExit Run()
    {
        ObjectDisposedException.ThrowIf(_memory.Size == 0, this);
        while (true)
        {
            if (_interrupt)
            {
                _interrupt = false;
                return new VcpuExit(VcpuExitKind.Interrupted, _rip);
            }
            ulong left = ulong.MaxValue;
            if (_budget is ulong budget)
            {
                if (_icount >= budget)
                {
                    return new VcpuExit(VcpuExitKind.BudgetExhausted, _rip, Detail: $"instruction budget of {budget} used");
                }
                left = budget - _icount;
            }
            Block block = GetBlock(_rip);
            int n = block.Ops.Length;
            if ((ulong)n > left)
            {
                n = (int)left;
            }
            if (ExecuteBlock(block, n))
            {
                return _exit;
            }
        }
    }

    public HypercallArgs GetHypercallArgs() => new(_r[0], _r[7], _r[6], _r[2], _r[10], _r[8]);

    public void CompleteHypercall(long result) => _r[0] = (ulong)result;

    public VcpuRegisters GetRegisters() => new(
        _r[0], _r[3], _r[1], _r[2], _r[6], _r[7], _r[4], _r[5],
        _r[8], _r[9], _r[10], _r[11], _r[12], _r[13], _r[14], _r[15], _rip, _rf);

    public void Interrupt() => _interrupt = true;

    public void Dispose()
    {
        _blocks.Clear();
        _pageBlocks.Clear();
        Array.Clear(_fast);
    }

    /// <summary>For tests: forgets all decoded code and state and starts again at <paramref name="start"/> (the host rewrote guest code).</summary>
    internal void Reset(in VcpuStartState start)
    {
        _blocks.Clear();
        _pageBlocks.Clear();
        Array.Clear(_fast);
        Array.Clear(_codePageArray);
        Array.Clear(_regArray);
        Array.Clear(_xmmArray);
        _rip = start.Rip;
        _r[4] = start.Rsp;
        _r[7] = start.Rdi;
        _rf = 2;
        _icount = 0;
        _smc = false;
        _interrupt = false;
    }

    /// <summary>For tests: sets a general-purpose register (0 = rax ... 15 = r15).</summary>
    internal void SetRegister(int index, ulong value) => _r[index & 15] = value;

    /// <summary>For tests: sets RFLAGS (bit 1 is forced on).</summary>
    internal void SetFlags(ulong value) => _rf = (value & PopfMask) | 2;

    /// <summary>For tests: an XMM register.</summary>
    internal Vector128<byte> GetXmm(int index) => _x[index & 15];

    /// <summary>For tests: sets an XMM register.</summary>
    internal void SetXmm(int index, Vector128<byte> value) => _x[index & 15] = value;

    // ---- block cache ----

    private Block GetBlock(ulong rip)
    {
        int slot = (int)((rip ^ (rip >> 12)) & (FastCacheSize - 1));
        Block? b = _fast[slot];
        if (b is not null && b.Start == rip && b.Valid)
        {
            return b;
        }
        if (!_blocks.TryGetValue(rip, out b))
        {
            b = Decode(rip);
            _blocks[rip] = b;
            if (b.End > b.Start)
            {
                for (ulong page = b.Start >> 12; page <= (b.End - 1) >> 12 && page < (_size >> 12); page++)
                {
                    _codePage[page] = 1;
                    if (!_pageBlocks.TryGetValue(page, out List<Block>? list))
                    {
                        list = [];
                        _pageBlocks[page] = list;
                    }
                    list.Add(b);
                }
            }
        }
        _fast[slot] = b;
        return b;
    }

    private Block Decode(ulong rip)
    {
        _decodeOps.Clear();
        _decodeTexts.Clear();
        var reader = new GuestCodeReader(_mem, _size, rip);
        var decoder = Decoder.Create(64, reader, rip, DecoderOptions.None);
        ulong end = rip;
        while (_decodeOps.Count < MaxBlockInstructions)
        {
            decoder.Decode(out Instruction ins);
            var op = default(MicroOp);
            if (ins.IsInvalid)
            {
                string text = decoder.LastError == DecoderError.NoMoreBytes
                    ? $"page fault: instruction fetch at 0x{ins.IP:x} outside guest memory"
                    : $"invalid instruction (#UD) at 0x{ins.IP:x}";
                AddUnsupported(ref op, ins.IP, text);
                break;
            }
            end = ins.NextIP;
            if (!Translator.Translate(in ins, ref op))
            {
                op = default;
                AddUnsupported(ref op, ins.IP, $"unsupported instruction '{Format(in ins)}' at 0x{ins.IP:x}");
                break;
            }
            _decodeOps.Add(op);
            if (EndsBlock(op.Kind))
            {
                break;
            }
        }
        return new Block(rip, end, [.. _decodeOps], [.. _decodeTexts]);
    }

    private void AddUnsupported(ref MicroOp op, ulong ip, string text)
    {
        op.Kind = OpKind.Unsupported;
        op.Rip = ip;
        op.Next = ip;
        op.Text = _decodeTexts.Count;
        _decodeTexts.Add(text);
        _decodeOps.Add(op);
    }

    private static string Format(in Instruction ins)
    {
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        formatter.Format(in ins, output);
        return output.ToStringAndReset();
    }

    private static bool EndsBlock(OpKind k) => k is OpKind.Jcc or OpKind.Jmp or OpKind.JmpInd or OpKind.Call
        or OpKind.CallInd or OpKind.Ret or OpKind.Loop or OpKind.Loope or OpKind.Loopne or OpKind.Jrcxz
        or OpKind.Hlt or OpKind.Out or OpKind.In or OpKind.Unsupported;

    /// <summary>A guest store touched a page holding decoded code: drop the page's blocks (self-modifying code).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void InvalidateCode(ulong address, int size)
    {
        for (ulong page = address >> 12; page <= (address + (ulong)size - 1) >> 12; page++)
        {
            _codePage[page] = 0;
            if (_pageBlocks.Remove(page, out List<Block>? list))
            {
                foreach (Block b in list)
                {
                    b.Valid = false;
                    if (_blocks.TryGetValue(b.Start, out Block? cur) && ReferenceEquals(cur, b))
                    {
                        _blocks.Remove(b.Start);
                    }
                }
            }
        }
        _smc = true;
    }

    // ---- checked memory path ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Load(ulong a, int size)
    {
        if (a > _size - (ulong)size)
        {
            GuestFault.PageFault(a, size, write: false);
        }
        byte* p = _mem + a;
        return size switch
        {
            1 => *p,
            2 => Unsafe.ReadUnaligned<ushort>(p),
            4 => Unsafe.ReadUnaligned<uint>(p),
            _ => Unsafe.ReadUnaligned<ulong>(p),
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Load64(ulong a)
    {
        if (a > _size - 8)
        {
            GuestFault.PageFault(a, 8, write: false);
        }
        return Unsafe.ReadUnaligned<ulong>(_mem + a);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Store(ulong a, int size, ulong v)
    {
        if (a > _size - (ulong)size)
        {
            GuestFault.PageFault(a, size, write: true);
        }
        if ((_codePage[a >> 12] | _codePage[(a + (ulong)size - 1) >> 12]) != 0)
        {
            InvalidateCode(a, size);
        }
        byte* p = _mem + a;
        switch (size)
        {
            case 1: *p = (byte)v; break;
            case 2: Unsafe.WriteUnaligned(p, (ushort)v); break;
            case 4: Unsafe.WriteUnaligned(p, (uint)v); break;
            default: Unsafe.WriteUnaligned(p, v); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Store64(ulong a, ulong v)
    {
        if (a > _size - 8)
        {
            GuestFault.PageFault(a, 8, write: true);
        }
        if ((_codePage[a >> 12] | _codePage[(a + 7) >> 12]) != 0)
        {
            InvalidateCode(a, 8);
        }
        Unsafe.WriteUnaligned(_mem + a, v);
    }

    private Vector128<byte> Load128(ulong a, bool aligned)
    {
        if (aligned && (a & 15) != 0)
        {
            GuestFault.Misaligned(a);
        }
        if (a > _size - 16)
        {
            GuestFault.PageFault(a, 16, write: false);
        }
        return Unsafe.ReadUnaligned<Vector128<byte>>(_mem + a);
    }

    private void Store128(ulong a, Vector128<byte> v, bool aligned)
    {
        if (aligned && (a & 15) != 0)
        {
            GuestFault.Misaligned(a);
        }
        if (a > _size - 16)
        {
            GuestFault.PageFault(a, 16, write: true);
        }
        if ((_codePage[a >> 12] | _codePage[(a + 15) >> 12]) != 0)
        {
            InvalidateCode(a, 16);
        }
        Unsafe.WriteUnaligned(_mem + a, v);
    }

    /// <summary>Reads guest code for Iced; returns -1 past the end of guest memory.</summary>
    private sealed class GuestCodeReader : CodeReader
    {
        private readonly byte* _mem;
        private readonly ulong _size;
        private ulong _pos;

        public GuestCodeReader(byte* mem, ulong size, ulong pos)
        {
            _mem = mem;
            _size = size;
            _pos = pos;
        }

        public override int ReadByte() => _pos < _size ? _mem[_pos++] : -1;
    }

    internal static bool IsHypercallPort(ulong port) => port == HypercallPage.IoPort;
}
