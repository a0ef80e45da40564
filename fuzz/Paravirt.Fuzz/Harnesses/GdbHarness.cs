using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Debugging;
using Paravirt.Hypervisor.Debugging.Gdb;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The GDB stub's input, as an untrusted gdb client sends it: the input is a byte stream cut into frames by the RSP
/// parser (packets, acks, Ctrl-C, garbage, bad checksums, oversized packets), and every packet goes to the command
/// layer against a real emulator vCPU stopped at its entry (registers, memory through its page tables, breakpoints
/// and watchpoints, resume packets). Nothing may throw; the parser must consume at least one byte per frame and never
/// more than it was given; no reply may exceed the announced packet size.
/// </summary>
internal sealed class GdbHarness : Harness
{
    private const ulong Entry = 0x10_0000;
    private readonly GuestMemory _memory = new(4UL << 20);
    private readonly EmulatorBackend _backend = new();

    public override void Run(ReadOnlySpan<byte> data)
    {
        _memory.Clear(new GuestAddress(0), _memory.Size);
        _memory.Write(new GuestAddress(Entry), [0x90, 0x90, 0xF4]); // nop; nop; hlt
        using IVirtualMachine vm = _backend.CreateVirtualMachine(_memory, new VirtualMachineOptions());
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(Entry, 0x20_0000, 0x2000));
        var target = new GuestDebugTarget(vcpu, _memory, _backend, CancellationToken.None);
        var handler = new GdbCommandHandler(target, new DebugStop(DebugStopKind.Attach, Entry));
        int offset = 0;
        while (offset < data.Length)
        {
            ReadOnlySpan<byte> rest = data[offset..];
            int used = GdbPacketParser.Parse(rest, GdbPacketParser.DefaultMaxPayload, out GdbFrame frame);
            if (frame.Kind == GdbFrameKind.NeedMore)
            {
                break;
            }
            if (used <= 0 || used > rest.Length)
            {
                throw new FuzzFindingException($"the parser used {used} of {rest.Length} bytes for a {frame.Kind} frame");
            }
            offset += used;
            if (frame.Kind != GdbFrameKind.Packet)
            {
                continue;
            }
            GdbReply reply = handler.Handle(frame.Payload!);
            Exercised++;
            if (reply.Payload is { Length: > GdbCommandHandler.PacketSize })
            {
                throw new FuzzFindingException($"a reply of {reply.Payload.Length} bytes passes the announced packet size");
            }
            if (reply.Action is GdbAction.Kill or GdbAction.Detach)
            {
                break; // the session ends
            }
        }
    }

    public override void Dispose() => _memory.Dispose();
}
