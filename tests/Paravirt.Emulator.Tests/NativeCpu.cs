// Keeps its own imports: fuzz/Paravirt.Fuzz compiles this file too.
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Iced.Intel;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Memory;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>Register, flag, XMM and x87/MXCSR state in or out of a test run.</summary>
internal sealed class CpuState
{
    public ulong[] Gpr { get; } = new ulong[16];
    public ulong Rflags { get; set; }
    public Vector128<byte>[] Xmm { get; } = new Vector128<byte>[16];

    /// <summary>
    /// The x87 and MXCSR state as an FXSAVE image (the XMM part of it is ignored on input: <see cref="Xmm"/> is
    /// loaded after it). Input: loaded with FXRSTOR before the code under test (every exception must stay masked:
    /// an unmasked one would trap in the test process). Output: stored with FXSAVE right after it.
    /// </summary>
    public byte[] Fx { get; } = NewFx();

    /// <summary>An FXSAVE image of the state after FNINIT with MXCSR's reset value.</summary>
    public static byte[] NewFx()
    {
        var fx = new byte[512];
        BitConverter.TryWriteBytes(fx.AsSpan(0), (ushort)0x037F);
        BitConverter.TryWriteBytes(fx.AsSpan(24), 0x1F80u);
        BitConverter.TryWriteBytes(fx.AsSpan(28), 0xFFFFu);
        return fx;
    }

    public uint Mxcsr
    {
        get => BitConverter.ToUInt32(Fx, 24);
        set => BitConverter.TryWriteBytes(Fx.AsSpan(24), value);
    }
}

/// <summary>
/// Runs the same machine code on the real CPU (inside this process) and on the emulator, from the same state.
/// A region is mapped RWX at the same low address in this process and in a guest memory big enough to contain it,
/// so that addresses (memory operands, RIP-relative data, branch targets) are identical in both worlds. The region
/// holds a thunk (save host registers, load all GPRs, XMM registers and flags from an input block, run the code
/// under test, store everything to an output block, restore, return), the data page the code may touch and a
/// stack page. The emulator runs the very same thunk bytes and stops at a <c>hlt</c> it returns to.
/// </summary>
internal sealed unsafe class NativeCpu : IDisposable
{
    public const int RegionSize = 0x10000;
    private const int InOff = 0x800, XInOff = 0x900, OutOff = 0xA00, XOutOff = 0xB00, HostRspOff = 0x888;
    public const int DataOff = 0x1000, DataSize = 0x1000, StackOff = 0x2000, StackSize = 0x1000;
    // FXSAVE areas: the host's state (saved and restored around the test), the input and the output images.
    private const int HostFxOff = 0x3000, FxInOff = 0x3200, FxOutOff = 0x3400, SnapshotEnd = 0x3600;
    private const int EmuStackTop = 0x8000, EmuHaltOff = 0x9000;
    private const int CompareStart = DataOff, CompareEnd = StackOff + StackSize;
    private const int MaxTestCode = 0x200;

    private const int PROT_RWX = 7;
    private const int MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_FIXED_NOREPLACE = 0x100000;

    [DllImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static extern nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [DllImport("libc", EntryPoint = "munmap")]
    private static extern int Munmap(nint addr, nuint length);

    private readonly byte* _region;
    private readonly byte[] _prologue;
    private readonly byte[] _epilogue;
    private readonly GuestMemory _guest;
    private readonly EmulatorVcpu _vcpu;
    private readonly byte[] _snapshot = new byte[SnapshotEnd];

    public NativeCpu()
    {
        nint p = -1;
        foreach (ulong candidate in new ulong[] { 0x0100_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000 })
        {
            p = Mmap((nint)candidate, RegionSize, PROT_RWX, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p == (nint)candidate)
            {
                break;
            }
            if (p != -1)
            {
                _ = Munmap(p, RegionSize);
            }
            p = -1;
        }
        if (p == -1)
        {
            throw new InvalidOperationException("could not map the native test region at a low fixed address");
        }
        _region = (byte*)p;
        Address = (ulong)p;
        _prologue = BuildPrologue();
        _epilogue = BuildEpilogue();
        ulong guestSize = Math.Max(GuestMemory.MinSize, (Address + RegionSize + 0xFFFF) & ~0xFFFFUL);
        _guest = new GuestMemory(guestSize);
        _vcpu = (EmulatorVcpu)new EmulatorBackend().CreateVirtualMachine(_guest, new VirtualMachineOptions { InstructionBudget = 100_000 })
            .CreateVcpu(new VcpuStartState(Address, Address + EmuStackTop, 0));
    }

    /// <summary>The emulator side (for tests that tune it, e.g. its translation threshold).</summary>
    internal EmulatorVcpu Emulator => _vcpu;

    /// <summary>Address of the region (same in the host and in the guest).</summary>
    public ulong Address { get; }

    /// <summary>Where the code under test starts.</summary>
    public ulong CodeAddress => Address + (ulong)_prologue.Length;

    public ulong DataAddress => Address + DataOff;

    public ulong StackTop => Address + StackOff + (StackSize / 2);

    /// <summary>The data page (before a run: the input; after a native run: the native result).</summary>
    public Span<byte> Data => new(_region + DataOff, DataSize);

    public Span<byte> Stack => new(_region + StackOff, StackSize);

    private ulong Abs(int off) => Address + (ulong)off;

    private byte[] BuildPrologue()
    {
        var a = new Assembler(64);
        a.push(rbx); a.push(rbp); a.push(r12); a.push(r13); a.push(r14); a.push(r15);
        a.mov(__qword_ptr[(long)Abs(HostRspOff)], rsp);
        a.fxsave64(__[(long)Abs(HostFxOff)]);
        a.fxrstor64(__[(long)Abs(FxInOff)]);
        AssemblerRegisterXMM[] x = [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15];
        for (int i = 0; i < 16; i++)
        {
            a.movdqu(x[i], __xmmword_ptr[(long)Abs(XInOff + (i * 16))]);
        }
        a.push(__qword_ptr[(long)Abs(InOff + 0x80)]);
        a.popfq();
        AssemblerRegister64[] g = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
        for (int i = 0; i < 16; i++)
        {
            if (i != 4)
            {
                a.mov(g[i], __qword_ptr[(long)Abs(InOff + (i * 8))]);
            }
        }
        a.mov(rsp, __qword_ptr[(long)Abs(InOff + (4 * 8))]);
        return Encode(a, Address);
    }

    private byte[] BuildEpilogue()
    {
        var a = new Assembler(64);
        AssemblerRegister64[] g = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
        for (int i = 0; i < 16; i++)
        {
            a.mov(__qword_ptr[(long)Abs(OutOff + (i * 8))], g[i]);
        }
        a.fxsave64(__[(long)Abs(FxOutOff)]);
        a.mov(rsp, __qword_ptr[(long)Abs(HostRspOff)]);
        a.pushfq();
        a.pop(__qword_ptr[(long)Abs(OutOff + 0x80)]);
        a.cld();
        AssemblerRegisterXMM[] x = [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15];
        for (int i = 0; i < 16; i++)
        {
            a.movdqu(__xmmword_ptr[(long)Abs(XOutOff + (i * 16))], x[i]);
        }
        a.fxrstor64(__[(long)Abs(HostFxOff)]);
        a.pop(r15); a.pop(r14); a.pop(r13); a.pop(r12); a.pop(rbp); a.pop(rbx);
        a.ret();
        return Encode(a, 0); // position independent: absolute addresses only
    }

    private static byte[] Encode(Assembler a, ulong rip)
    {
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), rip);
        return ms.ToArray();
    }

    /// <summary>Encodes <paramref name="instructions"/> at <see cref="CodeAddress"/>.</summary>
    public byte[] EncodeTest(IReadOnlyList<Instruction> instructions)
    {
        var writer = new ByteWriter();
        ulong rip = CodeAddress;
        foreach (Instruction ins in instructions)
        {
            var enc = Encoder.Create(64, writer);
            if (!enc.TryEncode(ins, rip, out uint len, out string? error))
            {
                throw new InvalidOperationException($"cannot encode {ins}: {error}");
            }
            rip += len;
        }
        return writer.ToArray();
    }

    private sealed class ByteWriter : CodeWriter
    {
        private readonly List<byte> _bytes = [];
        public override void WriteByte(byte value) => _bytes.Add(value);
        public byte[] ToArray() => [.. _bytes];
    }

    /// <summary>Installs <paramref name="code"/> and <paramref name="input"/>; <see cref="Data"/> and <see cref="Stack"/> are the memory input.</summary>
    public void Prepare(ReadOnlySpan<byte> code, CpuState input)
    {
        if (code.Length > MaxTestCode)
        {
            throw new ArgumentException("test code too long", nameof(code));
        }
        var region = new Span<byte>(_region, RegionSize);
        _prologue.CopyTo(region);
        code.CopyTo(region[_prologue.Length..]);
        _epilogue.CopyTo(region[(_prologue.Length + code.Length)..]);
        for (int i = 0; i < 16; i++)
        {
            MemoryMarshal.Write(region[(InOff + (i * 8))..], input.Gpr[i]);
            MemoryMarshal.Write(region[(XInOff + (i * 16))..], input.Xmm[i]);
        }
        MemoryMarshal.Write(region[(InOff + 0x80)..], input.Rflags);
        input.Fx.CopyTo(region[FxInOff..]);
        region[FxOutOff..(FxOutOff + 512)].Fill(0xA5); // bytes FXSAVE leaves alone stay equal in both runs
        region[..SnapshotEnd].CopyTo(_snapshot);
    }

    /// <summary>Runs the prepared code on the real CPU.</summary>
    public CpuState RunNative()
    {
        var fn = (delegate* unmanaged<void>)_region;
        fn();
        return ReadOut(new Span<byte>(_region, RegionSize));
    }

    /// <summary>Runs the prepared code (from the snapshot taken by <see cref="Prepare"/>) on the emulator.</summary>
    public (VcpuExit Exit, CpuState State, byte[] Memory) RunEmulator()
    {
        Span<byte> g = _guest.GetSpan(new GuestAddress(Address), RegionSize);
        _snapshot.CopyTo(g); // code, input state, data and stack pages; the rest of the region is the emulator's scratch stack
        g[EmuHaltOff] = 0xF4; // hlt
        MemoryMarshal.Write(g[(EmuStackTop - 8)..], Address + EmuHaltOff);
        _vcpu.Reset(new VcpuStartState(Address, Address + EmuStackTop - 8, 0));
        VcpuExit exit = _vcpu.Run();
        return (exit, ReadOut(g), g[CompareStart..CompareEnd].ToArray());
    }

    /// <summary>The native data + stack pages after <see cref="RunNative"/>.</summary>
    public byte[] NativeMemory() => new Span<byte>(_region + CompareStart, CompareEnd - CompareStart).ToArray();

    private static CpuState ReadOut(Span<byte> region)
    {
        var s = new CpuState();
        for (int i = 0; i < 16; i++)
        {
            s.Gpr[i] = MemoryMarshal.Read<ulong>(region[(OutOff + (i * 8))..]);
            s.Xmm[i] = MemoryMarshal.Read<Vector128<byte>>(region[(XOutOff + (i * 16))..]);
        }
        s.Rflags = MemoryMarshal.Read<ulong>(region[(OutOff + 0x80)..]);
        region.Slice(FxOutOff, 512).CopyTo(s.Fx);
        return s;
    }

    public void Dispose()
    {
        _vcpu.Dispose();
        _guest.Dispose();
        _ = Munmap((nint)_region, RegionSize);
    }
}
