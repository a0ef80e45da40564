using System.Xml.Linq;
using Paravirt.Hypervisor.Debugging.Gdb;

namespace Paravirt.Hypervisor.Tests.Debugging;

/// <summary>The stub's command layer against a real emulator vCPU: registers, memory, breakpoints, the target description.</summary>
public sealed class GdbCommandHandlerTests : IDisposable
{
    private const ulong Entry = 0x10_0000;
    private readonly GuestMemory _memory = new(4UL << 20);
    private readonly IVirtualMachine _vm;
    private readonly IVcpu _vcpu;
    private readonly GdbCommandHandler _handler;

    public GdbCommandHandlerTests()
    {
        _memory.Write(new GuestAddress(Entry), [0x90, 0x90, 0xF4]); // nop; nop; hlt
        var backend = new EmulatorBackend();
        _vm = backend.CreateVirtualMachine(_memory, new VirtualMachineOptions());
        _vcpu = _vm.CreateVcpu(new VcpuStartState(Entry, 0x20_0000, 0x2000));
        var target = new GuestDebugTarget(_vcpu, _memory, backend, CancellationToken.None);
        _handler = new GdbCommandHandler(target, new DebugStop(DebugStopKind.Attach, Entry));
    }

    public void Dispose()
    {
        _vcpu.Dispose();
        _vm.Dispose();
        _memory.Dispose();
    }

    private string Ask(string packet) => Encoding.Latin1.GetString(_handler.Handle(Encoding.Latin1.GetBytes(packet)).Payload ?? []);

    private static int Number(string name)
    {
        XElement reg = XDocument.Parse(GdbRegisters.TargetXml).Descendants("reg").Single(r => (string?)r.Attribute("name") == name);
        return int.Parse((string)reg.Attribute("regnum")!, System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void The_target_description_is_valid_xml_numbering_every_register_once_with_gdbs_amd64_features()
    {
        XDocument xml = XDocument.Parse(GdbRegisters.TargetXml);
        Assert.Equal("i386:x86-64", xml.Root!.Element("architecture")!.Value);
        Assert.Equal(
            ["org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse", "org.gnu.gdb.i386.linux", "org.gnu.gdb.i386.segments", "org.paravirt.x86.control"],
            xml.Root.Elements("feature").Select(f => (string)f.Attribute("name")!));
        int[] numbers = [.. xml.Descendants("reg").Select(r => (int)r.Attribute("regnum")!)];
        Assert.Equal(Enumerable.Range(0, GdbRegisters.Count), numbers);
        Assert.Equal(16, Number("rip"));
        Assert.Equal(40, Number("xmm0"));
        Assert.Equal(GdbRegisters.GPacketCount - 1, Number("mxcsr"));
    }

    [Fact]
    public void QXfer_serves_the_description_in_windows_that_concatenate_to_it()
    {
        var sb = new StringBuilder();
        for (int offset = 0; ; offset += 64)
        {
            string reply = Ask($"qXfer:features:read:target.xml:{offset:x},40"); // 0x40 = 64 bytes
            Assert.True(reply[0] is 'm' or 'l', reply);
            sb.Append(reply[1..]);
            if (reply[0] == 'l')
            {
                break;
            }
            Assert.Equal(64, reply.Length - 1);
        }
        Assert.Equal(GdbRegisters.TargetXml, sb.ToString());
        Assert.StartsWith("E", Ask("qXfer:features:read:other.xml:0,10"), StringComparison.Ordinal);
        Assert.Equal("l", Ask("qXfer:features:read:target.xml:ffffff,10"));
    }

    [Fact]
    public void G_and_g_round_trip_the_general_registers_and_rip()
    {
        _vcpu.SetRegisters(_vcpu.GetRegisters() with { Rax = 0x1122334455667788, R15 = 42, Rflags = 0x246 });
        string g = Ask("g");
        int expectedLength = Enumerable.Range(0, GdbRegisters.GPacketCount).Sum(GdbRegisters.Size) * 2;
        Assert.Equal(expectedLength, g.Length);
        Assert.StartsWith("8877665544332211", g, StringComparison.Ordinal);
        Assert.Equal("0000100000000000", g.Substring(16 * 16, 16)); // rip after 16 GPRs
        Assert.Equal("46020000", g.Substring(17 * 16, 8));          // eflags

        string changed = "0100000000000000" + g[16..];
        Assert.Equal("OK", Ask("G" + changed));
        Assert.Equal(1UL, _vcpu.GetRegisters().Rax);
        Assert.Equal(42UL, _vcpu.GetRegisters().R15);
        Assert.Equal(Entry, _vcpu.GetRegisters().Rip);
    }

    [Fact]
    public void P_and_p_reach_sse_x87_segment_and_control_registers()
    {
        Assert.Equal("OK", Ask($"P{Number("xmm3"):x}=00112233445566778899aabbccddeeff"));
        Assert.Equal("00112233445566778899aabbccddeeff", Ask($"p{Number("xmm3"):x}"));
        Assert.Equal(Convert.FromHexString("00112233445566778899aabbccddeeff"), _vcpu.GetState().Xmm(3).ToArray());

        Assert.Equal("801f0000", Ask($"p{Number("mxcsr"):x}"));                 // 0x1f80 reset value
        Assert.Equal("7f030000", Ask($"p{Number("fctrl"):x}"));                 // 0x37f
        Assert.Equal("ffff0000", Ask($"p{Number("ftag"):x}"));                  // all empty
        Assert.Equal("00000000000000000000", Ask($"p{Number("st0"):x}"));       // (the emulator has no x87 unit yet)
        Assert.Equal("08000000", Ask($"p{Number("cs"):x}"));
        Assert.Equal("0000010000000000", Ask($"p{Number("cr3"):x}"));          // the emulator reports the long-mode CR3
        Assert.Equal("ffffffffffffffff", Ask($"p{Number("orig_rax"):x}"));
        Assert.Equal("OK", Ask($"P{Number("orig_rax"):x}=ffffffffffffffff")); // gdb writes it when it moves pc
    }

    [Fact]
    public void Memory_reads_and_writes_go_through_the_guest_and_tell_the_backend_about_code()
    {
        Assert.Equal("9090f4", Ask($"m{Entry:x},3"));
        Assert.Equal("OK", Ask($"M{Entry:x},1:cc"));
        Assert.Equal(0xCC, _memory.Read<byte>(new GuestAddress(Entry)));
        Assert.Equal("OK", Ask("X100001,2:}]}\x03")); // binary write of 0x7d 0x23 (both escaped)
        Assert.Equal("cc7d23", Ask($"m{Entry:x},3"));
        // A read that runs off the end of memory returns the readable prefix.
        ulong last = _memory.Size - 2;
        Assert.Equal(4, Ask($"m{last:x},10").Length);
    }

    [Fact]
    public void Breakpoint_and_watchpoint_packets_reach_the_vcpu_and_unsupported_kinds_are_empty()
    {
        Assert.Equal("OK", Ask($"Z0,{Entry + 2:x},1"));
        VcpuExit exit = _vcpu.Run();
        Assert.Equal(DebugStopReason.Breakpoint, exit.DebugReason);
        Assert.Equal(Entry + 2, exit.Rip);
        Assert.Equal("OK", Ask($"z0,{Entry + 2:x},1"));
        Assert.Equal("OK", Ask($"z0,{Entry + 2:x},1")); // removing twice is fine
        Assert.Equal("OK", Ask("Z2,8000,8"));
        Assert.Equal("", Ask("Z3,8000,8"));             // the emulator has no read watchpoints
        Assert.Equal("OK", Ask("z2,8000,8"));
        Assert.Equal(VcpuExitKind.Halt, _vcpu.Run().Kind);
    }

    [Fact]
    public void Resume_packets_say_whether_a_fault_is_delivered()
    {
        Assert.Equal((GdbAction.Continue, false), Act("c"));
        Assert.Equal((GdbAction.Step, false), Act("s"));
        Assert.Equal((GdbAction.Continue, true), Act("C0b"));
        Assert.Equal((GdbAction.Continue, false), Act("C00"));
        Assert.Equal((GdbAction.Continue, true), Act("vCont;C0b:1"));
        Assert.Equal((GdbAction.Step, false), Act("vCont;s:1;c"));
        Assert.Equal((GdbAction.Continue, false), Act("vCont;c:-1"));
        Assert.Equal((GdbAction.None, true), Act("vCont;x"));
        Assert.Equal((GdbAction.Kill, true), Act("k"));
        Assert.Equal((GdbAction.Detach, true), Act("D"));
        Assert.Equal((GdbAction.Continue, false), Act($"c{Entry + 1:x}"));
        Assert.Equal(Entry + 1, _vcpu.GetRegisters().Rip);

        (GdbAction, bool) Act(string packet)
        {
            GdbReply r = _handler.Handle(Encoding.ASCII.GetBytes(packet));
            return (r.Action, r.DeliverSignal);
        }
    }

    [Fact]
    public void Stop_replies_carry_the_signal_and_the_watched_address()
    {
        Assert.Equal("T05thread:01;", _handler.StopReply());
        _handler.Stop = new DebugStop(DebugStopKind.Watchpoint, Entry, 0x8000);
        Assert.Equal("T05watch:8000;thread:01;", _handler.StopReply());
        _handler.Stop = new DebugStop(DebugStopKind.Interrupted, Entry);
        Assert.StartsWith("T02", _handler.StopReply(), StringComparison.Ordinal);
        _handler.Stop = new DebugStop(DebugStopKind.Fault, Entry, Fault: new GuestFaultInfo(GuestFaultKind.CpuException, "divide error (#DE)", 0));
        Assert.StartsWith("T08", _handler.StopReply(), StringComparison.Ordinal);
        _handler.Stop = new DebugStop(DebugStopKind.Fault, Entry, Fault: new GuestFaultInfo(GuestFaultKind.CpuException, "page fault", 14, 0xdead));
        Assert.StartsWith("T0b", _handler.StopReply(), StringComparison.Ordinal);
        Ask("qSupported:multiprocess+;swbreak+;hwbreak+");
        _handler.Stop = new DebugStop(DebugStopKind.Breakpoint, Entry);
        Assert.Equal("T05swbreak:;thread:01;", _handler.StopReply());
    }

    /// <summary>Seeded random packets (known command letters with random, often broken arguments): never an exception.</summary>
    [Fact]
    public void Seeded_random_packets_get_replies_and_never_throw()
    {
        var random = new Random(1414);
        string[] heads = ["g", "G", "p", "P", "m", "M", "X", "Z0,", "z0,", "Z2,", "Z4,", "z1,", "c", "s", "C", "S", "vCont;", "vCont?", "qXfer:features:read:target.xml:", "qSupported:", "H", "T", "q", "Q", "v", "?", "D", "qC", "qAttached"];
        const string alphabet = "0123456789abcdefABCDEFxyz,:;=-}#$*\0\u00ff ";
        for (int i = 0; i < 20_000; i++)
        {
            var sb = new StringBuilder(heads[random.Next(heads.Length)]);
            for (int n = random.Next(0, 40); n > 0; n--)
            {
                sb.Append(alphabet[random.Next(alphabet.Length)]);
            }
            if (random.Next(10) == 0)
            {
                sb.Append(new string('f', random.Next(16, 40))); // numbers too long for 64 bits
            }
            string packet = sb.ToString();
            if (packet.StartsWith('D') || packet == "k")
            {
                continue; // they end the session; covered elsewhere
            }
            GdbReply reply = _handler.Handle(Encoding.Latin1.GetBytes(packet));
            Assert.True(reply.Payload is not null || reply.Action != GdbAction.None, packet);
            Assert.True(reply.Payload is null || reply.Payload.Length <= GdbCommandHandler.PacketSize, packet);
        }
        Assert.StartsWith("T", Ask("?"), StringComparison.Ordinal);
    }
}
