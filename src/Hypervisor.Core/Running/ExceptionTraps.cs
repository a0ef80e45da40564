namespace Paravirt.Hypervisor.Running;

/// <summary>The CPU's exception frame as the default handler found it: where and how the guest failed.</summary>
/// <param name="Vector">Exception vector (0-31).</param>
/// <param name="ErrorCode">The error code (0 for vectors without one).</param>
/// <param name="Rip">The faulting instruction (for traps such as #BP and #DB: the next one).</param>
/// <param name="Rsp">The guest's stack pointer at the fault.</param>
/// <param name="Rflags">The guest's flags at the fault.</param>
internal readonly record struct ExceptionFrame(int Vector, ulong ErrorCode, ulong Rip, ulong Rsp, ulong Rflags);

/// <summary>
/// Default exception handlers the VMM installs for guests that have no IDT of their own (see
/// <see cref="GuestLayout"/>): on KVM and WHP an unhandled exception otherwise becomes a triple fault, after which
/// the hardware resets the vCPU and the registers of the crash are gone. Each of the 32 gates runs on its own stack
/// (IST1, so a broken guest stack still reports) a stub that pushes the vector (and a zero error code where the CPU
/// pushes none) and writes to <see cref="GuestLayout.ExceptionPort"/>; the host reads the exception frame back and
/// reports the crash with the registers of the faulting instruction (every general-purpose register is untouched by
/// the stub). A guest that loads its own IDT replaces them. The emulator does not load them: without an IDT it ends the run
/// at the fault itself.
/// </summary>
internal static class ExceptionTraps
{
    internal const int Vectors = 32;
    private const int StubSize = 16, GateSize = 16;
    private const ushort CodeSelector = 0x08;

    /// <summary>IDTR for the default handlers.</summary>
    internal static DescriptorTableRegister Idt => new(GuestLayout.Idt, (Vectors * GateSize) - 1);

    /// <summary>Vectors for which the CPU pushes an error code.</summary>
    private static bool HasErrorCode(int vector) => vector is 8 or 10 or 11 or 12 or 13 or 14 or 17 or 21 or 29 or 30;

    /// <summary>Writes the IDT, the stubs and IST1 into the host-reserved area.</summary>
    internal static void Write(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Span<byte> stubs = memory.GetSpan(new GuestAddress(GuestLayout.ExceptionStubs), Vectors * StubSize);
        Span<byte> idt = memory.GetSpan(new GuestAddress(GuestLayout.Idt), Vectors * GateSize);
        stubs.Fill(0xCC);
        idt.Clear();
        for (int v = 0; v < Vectors; v++)
        {
            Span<byte> stub = stubs.Slice(v * StubSize, StubSize);
            int n = 0;
            if (!HasErrorCode(v))
            {
                stub[n++] = 0x6A; // push 0 (the missing error code)
                stub[n++] = 0x00;
            }
            stub[n++] = 0x6A; // push vector
            stub[n++] = (byte)v;
            stub[n++] = 0xE6; // out ExceptionPort, al
            stub[n++] = (byte)GuestLayout.ExceptionPort;
            stub[n++] = 0xF4; // hlt (the host ends the run; never resumed here)
            stub[n++] = 0xEB; // jmp to the hlt
            stub[n] = 0xFD;

            ulong handler = GuestLayout.ExceptionStubs + (ulong)(v * StubSize);
            Span<byte> gate = idt.Slice(v * GateSize, GateSize);
            BitConverter.TryWriteBytes(gate, (ushort)handler);
            BitConverter.TryWriteBytes(gate[2..], CodeSelector);
            gate[4] = 1;    // IST1
            gate[5] = 0x8E; // present, DPL 0, 64-bit interrupt gate
            BitConverter.TryWriteBytes(gate[6..], (ushort)(handler >> 16));
            BitConverter.TryWriteBytes(gate[8..], (uint)(handler >> 32));
        }
        memory.Clear(new GuestAddress(GuestLayout.ExceptionStack), GuestLayout.ExceptionStackTop - GuestLayout.ExceptionStack);
        memory.WriteUInt64(new GuestAddress(GuestLayout.TssIst1), GuestLayout.ExceptionStackTop);
    }

    /// <summary>True for the exit a default handler makes.</summary>
    internal static bool IsTrap(in VcpuExit exit) => exit.Kind == VcpuExitKind.IoOut && exit.Address == GuestLayout.ExceptionPort;

    /// <summary>
    /// Reads the exception frame the stub left on the exception stack (rsp at the trap points at the vector, then the
    /// error code, rip, cs, rflags, rsp, ss). False when rsp is not where a stub leaves it (the guest wrote to the port
    /// itself) or the frame is not readable: the caller reports an unexpected port write instead.
    /// </summary>
    internal static bool TryReadFrame(GuestMemory memory, in VcpuRegisters registers, out ExceptionFrame frame)
    {
        frame = default;
        ulong sp = registers.Rsp;
        const ulong FrameBytes = 7 * 8;
        if (sp < GuestLayout.ExceptionStack || sp > GuestLayout.ExceptionStackTop - FrameBytes)
        {
            return false;
        }
        Span<byte> raw = stackalloc byte[(int)FrameBytes];
        if (!memory.TryRead(new GuestAddress(sp), raw))
        {
            return false;
        }
        ulong vector = BitConverter.ToUInt64(raw);
        if (vector >= Vectors)
        {
            return false;
        }
        frame = new ExceptionFrame((int)vector, BitConverter.ToUInt64(raw[8..]), BitConverter.ToUInt64(raw[16..]), BitConverter.ToUInt64(raw[40..]), BitConverter.ToUInt64(raw[32..]));
        return true;
    }

    /// <summary>The words a crash report starts with for a vector: <c>divide error (#DE)</c>, <c>page fault (#PF)</c>, ...</summary>
    internal static string Describe(int vector) => (vector switch
    {
        0 => "divide error",
        1 => "debug exception",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point exception",
        21 => "control protection",
        _ => "exception",
    }) + " (" + Debugging.GuestFaultInfo.VectorName(vector) + ")";
}
