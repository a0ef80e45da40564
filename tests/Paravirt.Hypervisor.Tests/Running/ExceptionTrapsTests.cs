using Iced.Intel;
using Decoder = Iced.Intel.Decoder;

namespace Paravirt.Hypervisor.Tests.Running;

/// <summary>The VMM's default exception handlers: the IDT, the stubs, IST1 and the frame the host reads back.</summary>
public sealed class ExceptionTrapsTests : IDisposable
{
    private readonly GuestMemory _memory = new(4UL << 20);

    public ExceptionTrapsTests() => ExceptionTraps.Write(_memory);

    public void Dispose() => _memory.Dispose();

    [Fact]
    public void Every_gate_is_a_present_64_bit_interrupt_gate_on_ist1_pointing_at_its_stub()
    {
        Assert.Equal(new DescriptorTableRegister(GuestLayout.Idt, 32 * 16 - 1), ExceptionTraps.Idt);
        for (int v = 0; v < 32; v++)
        {
            Span<byte> gate = _memory.GetSpan(new GuestAddress(GuestLayout.Idt + (ulong)(16 * v)), 16);
            ulong handler = BitConverter.ToUInt16(gate) | ((ulong)BitConverter.ToUInt16(gate[6..]) << 16) | ((ulong)BitConverter.ToUInt32(gate[8..]) << 32);
            Assert.Equal(GuestLayout.ExceptionStubs + (ulong)(16 * v), handler);
            Assert.Equal(0x08, BitConverter.ToUInt16(gate[2..]));
            Assert.Equal(1, gate[4]);
            Assert.Equal(0x8E, gate[5]);
        }
        Assert.Equal(GuestLayout.ExceptionStackTop, _memory.Read<ulong>(new GuestAddress(GuestLayout.TssIst1)));
    }

    [Theory]
    [InlineData(0, "push 0|push 0|out 0E3h,al|hlt")]
    [InlineData(13, "push 0Dh|out 0E3h,al|hlt")]   // #GP: the CPU pushed the error code
    [InlineData(14, "push 0Eh|out 0E3h,al|hlt")]
    [InlineData(3, "push 0|push 3|out 0E3h,al|hlt")]
    public void The_stubs_push_the_vector_and_report_on_the_exception_port(int vector, string expected)
    {
        ulong at = GuestLayout.ExceptionStubs + (ulong)(16 * vector);
        byte[] code = _memory.GetSpan(new GuestAddress(at), 16).ToArray();
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), at);
        var formatter = new NasmFormatter();
        var text = new List<string>();
        for (int i = 0; i < expected.Split('|').Length; i++)
        {
            var output = new StringOutput();
            formatter.Format(decoder.Decode(), output);
            text.Add(output.ToStringAndReset());
        }
        Assert.Equal(expected, string.Join('|', text));
    }

    [Fact]
    public void The_frame_is_read_only_where_a_stub_leaves_it()
    {
        ulong sp = GuestLayout.ExceptionStackTop - (7 * 8);
        ulong[] frame = [14, 2, 0x10_1234, 0x08, 0x246, 0x20_0000, 0x10];
        for (int i = 0; i < frame.Length; i++)
        {
            _memory.WriteUInt64(new GuestAddress(sp + (ulong)(8 * i)), frame[i]);
        }
        var registers = new VcpuRegisters(0, 0, 0, 0, 0, 0, sp, 0, 0, 0, 0, 0, 0, 0, 0, 0, GuestLayout.ExceptionStubs, 2);
        Assert.True(ExceptionTraps.TryReadFrame(_memory, registers, out ExceptionFrame read));
        Assert.Equal(new ExceptionFrame(14, 2, 0x10_1234, 0x20_0000, 0x246), read);

        // A guest that writes to the port itself, with its own stack, or a vector out of range: not a trap.
        Assert.False(ExceptionTraps.TryReadFrame(_memory, registers with { Rsp = 0x20_0000 }, out _));
        Assert.False(ExceptionTraps.TryReadFrame(_memory, registers with { Rsp = GuestLayout.ExceptionStackTop - 8 }, out _));
        _memory.WriteUInt64(new GuestAddress(sp), 99);
        Assert.False(ExceptionTraps.TryReadFrame(_memory, registers, out _));
    }

    [Fact]
    public void Exits_on_other_ports_are_not_traps()
    {
        Assert.True(ExceptionTraps.IsTrap(new VcpuExit(VcpuExitKind.IoOut, Address: GuestLayout.ExceptionPort)));
        Assert.False(ExceptionTraps.IsTrap(new VcpuExit(VcpuExitKind.IoOut, Address: Abi.HypercallPage.IoPort)));
        Assert.False(ExceptionTraps.IsTrap(new VcpuExit(VcpuExitKind.IoIn, Address: GuestLayout.ExceptionPort)));
    }
}

/// <summary>The host side of a trap, end to end on the emulator: a guest that builds the frame the CPU would push.</summary>
public sealed class ExceptionTrapRunTests
{
    [Fact]
    public void A_reported_exception_becomes_a_crash_at_the_faulting_instruction_with_the_guests_stack()
    {
        var asm = new Assembler(64);
        asm.mov(AssemblerRegisters.rsp, (long)GuestLayout.ExceptionStackTop); // what IST1 gives the handler
        asm.push(0x10);                                                        // ss
        asm.push(0x20_0000);                                                   // the guest's rsp
        asm.push(0x246);                                                       // rflags
        asm.push(0x08);                                                        // cs
        asm.mov(AssemblerRegisters.rax, 0x10_0123L);
        asm.push(AssemblerRegisters.rax);                                      // the faulting rip
        asm.push(0x6);                                                         // #PF error code: write, user
        asm.mov(AssemblerRegisters.rbx, 0x1111L);                              // a register the report must keep
        asm.mov(AssemblerRegisters.rax, (long)(GuestLayout.ExceptionStubs + (14 * 16)));
        asm.jmp(AssemblerRegisters.rax);                                       // the #PF stub
        using var ms = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(ms), 0x10_0000);
        GuestImage image = ElfLoader.Parse(Integration.RunLimitsTests.CodeImage(ms.ToArray()), Abi.AbiVersion.Current);

        RunResult r = Integration.HelloGuestTests.EmulatorRunner().Run(image, new GuestRunOptions { Backend = "emulator", Timeout = TimeSpan.FromSeconds(30) });

        Assert.Equal(RunOutcome.Faulted, r.Outcome);
        Assert.StartsWith("the guest crashed: page fault (#PF): write at 0x", r.Message, StringComparison.Ordinal);
        Hypervisor.Debugging.CrashReport crash = r.Crash!;
        Assert.Equal(14, crash.Fault.Vector);
        Assert.Equal(0x10_0123UL, crash.Registers.Rip);
        Assert.Equal(0x20_0000UL, crash.Registers.Rsp);
        Assert.Equal(0x246UL, crash.Registers.Rflags);
        Assert.Equal(0x1111UL, crash.Registers.Rbx);
    }
}
