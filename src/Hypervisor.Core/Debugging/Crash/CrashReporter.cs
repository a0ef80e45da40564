using Iced.Intel;
using Paravirt.Hypervisor.Debugging.Symbols;

namespace Paravirt.Hypervisor.Debugging;

/// <summary>
/// Builds a <see cref="CrashReport"/> from a stopped vCPU: disassembles around rip (Iced), unwinds the stack with
/// the image's call-frame information (frame pointers as a fallback) and symbolizes every frame. Guest memory and
/// the image are hostile: every read goes through <see cref="GuestAddressSpace"/> (short reads end the walk), the
/// unwind is bounded in frames and must move up the stack, and no exception escapes for any content.
/// </summary>
internal static class CrashReporter
{
    internal const int MaxFrames = 64;
    private const int InstructionsBefore = 6, InstructionsAfter = 4;
    private const ulong MaxDecodeWindow = 4096;

    internal static CrashReport Build(GuestFaultInfo fault, VcpuState state, GuestAddressSpace space, ImageSymbols symbols, string? panicMessage = null)
    {
        IReadOnlyList<CrashFrame> frames = Unwind(state.Registers, space, symbols);
        // hlt reports rip after itself (on every backend): show the hlt too when no symbol gives a start to decode from.
        IReadOnlyList<CrashInstruction> code = Disassemble(state.Registers.Rip, space, symbols, fault.Kind == GuestFaultKind.Halt ? 1u : 0u);
        CrashFrame? location = frames.Count == 0 ? null : frames[0];
        if (fault.Kind == GuestFaultKind.Panic)
        {
            // A panic is reported where it was called from, not inside the SDK's panic path.
            location = frames.FirstOrDefault(f => f.Function is not null && !IsPanicPath(f.Function)) ?? location;
        }
        return new CrashReport(fault, state, frames, code, panicMessage, location);
    }

    /// <summary>The Guest SDK's own frames between a guest's failure and the panic hypercall.</summary>
    private static bool IsPanicPath(string function) =>
        function == HypercallPageName || function == "pv_cs_hypercall" || function.StartsWith("pv_panic", StringComparison.Ordinal)
        || function.StartsWith("pv_hypercall", StringComparison.Ordinal)
        || function.EndsWith("_Guest__FailFast", StringComparison.Ordinal) || function.Contains("_ThrowHelpers__", StringComparison.Ordinal);

    /// <summary>How frames inside the host-written hypercall page are named.</summary>
    internal const string HypercallPageName = "[hypercall page]";

    private static SymbolizedAddress Lookup(ImageSymbols symbols, ulong address)
    {
        SymbolizedAddress where = symbols.Lookup(address);
        if (where.Function is null && address - GuestLayout.HypercallPage < Abi.HypercallPage.Size)
        {
            return new SymbolizedAddress(HypercallPageName, address - GuestLayout.HypercallPage, null);
        }
        return where;
    }

    /// <summary>The backtrace from <paramref name="registers"/>.</summary>
    internal static List<CrashFrame> Unwind(in VcpuRegisters registers, GuestAddressSpace space, ImageSymbols symbols)
    {
        var frames = new List<CrashFrame>();
        var regs = new ulong?[CallFrameTable.RegisterCount];
        regs[0] = registers.Rax; regs[1] = registers.Rdx; regs[2] = registers.Rcx; regs[3] = registers.Rbx;
        regs[4] = registers.Rsi; regs[5] = registers.Rdi; regs[6] = registers.Rbp; regs[7] = registers.Rsp;
        regs[8] = registers.R8; regs[9] = registers.R9; regs[10] = registers.R10; regs[11] = registers.R11;
        regs[12] = registers.R12; regs[13] = registers.R13; regs[14] = registers.R14; regs[15] = registers.R15;
        regs[16] = registers.Rip;
        ulong? ReadStack(ulong address) => space.TryReadUInt64(address, out ulong v) ? v : null;

        ulong pc = registers.Rip;
        FrameSource source = FrameSource.Rip;
        for (int index = 0; index < MaxFrames; index++)
        {
            // A caller's pc is a return address: look up the call instruction before it.
            ulong lookup = index == 0 ? pc : pc - 1;
            SymbolizedAddress where = Lookup(symbols, lookup);
            frames.Add(new CrashFrame(index, pc, where.Function, where.Function is null ? 0 : pc - (lookup - where.Offset), where.Source?.File, where.Source?.Line ?? 0, source));

            ulong sp = regs[CallFrameTable.Rsp] ?? 0;
            ulong?[] caller;
            if (symbols.Frames.TryUnwind(lookup, regs, ReadStack, out caller, out bool outermost))
            {
                if (outermost)
                {
                    break;
                }
                source = FrameSource.CallFrameInfo;
            }
            else if (index == 0 && !symbols.Frames.Covers(pc) && ReadStack(sp) is ulong top && symbols.Symbols.TryFind(top - 1, out _))
            {
                // A leaf without unwind information (the hypercall stub, hand-written assembly): the return address
                // is on top of the stack.
                caller = (ulong?[])regs.Clone();
                caller[CallFrameTable.ReturnAddress] = top;
                caller[CallFrameTable.Rsp] = sp + 8;
                source = FrameSource.StackTop;
            }
            else if (regs[CallFrameTable.Rbp] is ulong bp && bp >= sp && (bp & 7) == 0 && ReadStack(bp + 8) is ulong ret && ReadStack(bp) is ulong savedBp)
            {
                caller = (ulong?[])regs.Clone();
                caller[CallFrameTable.ReturnAddress] = ret;
                caller[CallFrameTable.Rbp] = savedBp;
                caller[CallFrameTable.Rsp] = bp + 16;
                source = FrameSource.FramePointer;
            }
            else
            {
                break;
            }
            if (caller[CallFrameTable.ReturnAddress] is not ulong next || next == 0
                || caller[CallFrameTable.Rsp] is not ulong callerSp || callerSp <= sp)
            {
                break; // the bottom, or a corrupt stack that does not move up
            }
            if (!space.TryTranslate(next, out _))
            {
                break;
            }
            caller[CallFrameTable.ReturnAddress] = next;
            regs = caller;
            pc = next;
        }
        return frames;
    }

    /// <summary>Up to <see cref="InstructionsBefore"/> instructions before rip (decoded from the function's start when known) and a few from rip on.</summary>
    internal static List<CrashInstruction> Disassemble(ulong rip, GuestAddressSpace space, ImageSymbols symbols, uint knownBefore = 0)
    {
        var result = new List<CrashInstruction>();
        ulong start = rip - Math.Min(rip, knownBefore);
        if (symbols.Symbols.TryFind(rip, out ElfSymbol function) && rip - function.Address <= MaxDecodeWindow)
        {
            start = function.Address;
        }
        ulong windowLength = rip - start + (16 * InstructionsAfter);
        byte[] bytes = new byte[windowLength];
        int readable = space.Read(start, bytes);
        if (readable == 0)
        {
            return result;
        }
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(bytes, 0, readable), start);
        var formatter = new IntelFormatter();
        formatter.Options.FirstOperandCharIndex = 8;
        var output = new StringOutput();
        var before = new Queue<CrashInstruction>();
        int after = 0;
        while (decoder.IP < start + (ulong)readable && after < InstructionsAfter)
        {
            decoder.Decode(out Instruction ins);
            if (ins.IsInvalid && ins.IP == rip)
            {
                result.AddRange(before);
                result.Add(new CrashInstruction(ins.IP, Slice(bytes, start, ins.IP, Math.Min(ins.Length, 15)), "(bad)", Where(symbols, ins.IP), true));
                return result;
            }
            formatter.Format(in ins, output);
            var item = new CrashInstruction(ins.IP, Slice(bytes, start, ins.IP, ins.Length), output.ToStringAndReset(), Where(symbols, ins.IP), ins.IP == rip);
            if (ins.IP < rip)
            {
                if (ins.NextIP > rip)
                {
                    // The decode from the function start does not land on rip (data in code, or rip mid-instruction):
                    // start again at rip.
                    before.Clear();
                    decoder = Decoder.Create(64, new ByteArrayCodeReader(bytes, (int)(rip - start), readable - (int)(rip - start)), rip);
                    continue;
                }
                before.Enqueue(item);
                if (before.Count > InstructionsBefore)
                {
                    before.Dequeue();
                }
            }
            else
            {
                if (after == 0)
                {
                    result.AddRange(before);
                }
                result.Add(item);
                after++;
            }
        }
        return result;
    }

    private static byte[] Slice(byte[] bytes, ulong start, ulong ip, int length)
    {
        int offset = (int)(ip - start);
        length = Math.Max(0, Math.Min(length, bytes.Length - offset));
        return bytes.AsSpan(offset, length).ToArray();
    }

    private static string Where(ImageSymbols symbols, ulong address)
    {
        SymbolizedAddress s = Lookup(symbols, address);
        return s.Function is null ? "" : s.Offset == 0 ? s.Function : $"{s.Function}+0x{s.Offset:x}";
    }
}
