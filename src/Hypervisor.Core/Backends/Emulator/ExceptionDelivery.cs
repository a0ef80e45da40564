namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>Where an event comes from: decides the DPL check, the EXT bit and whether an error code is pushed.</summary>
internal enum EventSource : byte
{
    /// <summary>A fault or abort raised by an instruction (or by delivering another event).</summary>
    Exception,
    /// <summary>A trap raised after an instruction completed (single-step #DB).</summary>
    Trap,
    /// <summary>INT n, INT3: the gate's DPL must be at least CPL; no error code; EXT clear.</summary>
    Software,
    /// <summary>INT1 (ICEBP): a software-raised #DB without the gate DPL check.</summary>
    Privileged,
    /// <summary>An external interrupt (the paravirtual timer).</summary>
    External,
}

/// <summary>An exception or interrupt to deliver.</summary>
/// <param name="Vector">0-255.</param>
/// <param name="ErrorCode">The error code to push, or -1 for none.</param>
/// <param name="Source">Where it comes from.</param>
/// <param name="FaultAddress">For #PF: the linear address for CR2.</param>
internal readonly record struct GuestEvent(int Vector, int ErrorCode, EventSource Source, ulong FaultAddress = 0)
{
    /// <summary>True when faults raised while delivering this event carry EXT in their error codes.</summary>
    public bool External => Source != EventSource.Software;
}

/// <summary>
/// Delivers exceptions and interrupts through the guest's IDT as a 64-bit CPU does: 64-bit interrupt and trap gates
/// only, the gate DPL check for software interrupts, the target code segment's checks, a stack switch to TSS.RSPn on
/// a privilege change or to an IST stack when the gate names one, the 16-byte alignment of the new stack, the
/// SS:RSP/RFLAGS/CS:RIP[/error code] frame written as one supervisor access (translated in full before any byte is
/// written, so a fault leaves nothing half-done), and TF/NT/RF (and IF for interrupt gates) cleared. Faults raised
/// while delivering are thrown as <see cref="GuestFault"/> with the SDM's error codes (IDT index or selector, EXT);
/// the caller applies the double-fault rules. Independent of the instruction engine.
/// </summary>
internal sealed class ExceptionDelivery
{
    private const ulong TF = 0x100, IF = 0x200, NT = 0x4000, RF = 0x1_0000, VM = 0x2_0000;

    private readonly SystemRegisters _sys;
    private readonly Mmu _mmu;

    public ExceptionDelivery(SystemRegisters sys, Mmu mmu)
    {
        _sys = sys;
        _mmu = mmu;
        Segments = new Segmentation(sys, mmu);
    }

    /// <summary>Descriptor-table access and segment-load checks (shared with IRET, far returns, MOV Sreg).</summary>
    public Segmentation Segments { get; }

    /// <summary>True when no IDT is loaded (limit 0): the emulator then ends the run on an exception instead (every Paravirt guest that sets up none).</summary>
    public bool NoIdt => _sys.Idtr.Limit == 0;

    /// <summary>
    /// Delivers <paramref name="ev"/>: on return <paramref name="rip"/>, <paramref name="rflags"/> and
    /// <paramref name="rsp"/> hold the handler's state and CS/SS are loaded; on a <see cref="GuestFault"/> nothing
    /// architectural has changed except accessed/dirty bits.
    /// </summary>
    /// <param name="ev">The event.</param>
    /// <param name="rip">In: the address to return to (the faulting instruction for a fault, the next one for a trap or INT n). Out: the handler.</param>
    /// <param name="rflags">In: RFLAGS (materialized). Out: the handler's RFLAGS.</param>
    /// <param name="rsp">In: RSP. Out: the handler's RSP (below the frame).</param>
    public void Deliver(in GuestEvent ev, ref ulong rip, ref ulong rflags, ref ulong rsp)
    {
        bool ext = ev.External;
        int vector = ev.Vector;
        int idtError = (vector * 8) + 2 + (ext ? 1 : 0);
        ulong offsetInIdt = (ulong)vector * 16;
        if (offsetInIdt + 15 > _sys.Idtr.Limit)
        {
            GuestFault.GeneralProtection(idtError, $"vector {vector} is past the IDT limit 0x{_sys.Idtr.Limit:x}");
        }
        ulong low = _mmu.ReadLinear64(_sys.Idtr.Base + offsetInIdt, user: false);
        ulong high = _mmu.ReadLinear64(_sys.Idtr.Base + offsetInIdt + 8, user: false);
        int type = (int)((low >> 40) & 0x1F); // type with the S bit: a system descriptor has S clear
        bool trapGate = type == Segmentation.TypeTrapGate;
        if (type != Segmentation.TypeInterruptGate && !trapGate)
        {
            GuestFault.GeneralProtection(idtError, $"IDT entry {vector} is not a 64-bit interrupt or trap gate (type {type})");
        }
        int gateDpl = (int)((low >> 45) & 3);
        if (ev.Source == EventSource.Software && gateDpl < _sys.Cpl)
        {
            GuestFault.GeneralProtection((vector * 8) + 2, $"INT {vector} at CPL {_sys.Cpl} through a gate of DPL {gateDpl}");
        }
        if ((low & (1UL << 47)) == 0)
        {
            GuestFault.Raise(Vectors.NP, idtError, $"IDT entry {vector} is not present");
        }
        ushort selector = (ushort)(low >> 16);
        ulong target = (low & 0xFFFF) | ((low >> 32) & 0xFFFF_0000) | (high << 32);
        int ist = (int)((low >> 32) & 7);

        int cpl = _sys.Cpl;
        SegmentRegister cs = Segments.LoadCode(selector, ext, out int newCpl, gateTarget: true);
        if (!SystemRegisters.IsCanonical(target))
        {
            GuestFault.GeneralProtection(ext ? 1 : 0, $"IDT entry {vector} points at non-canonical 0x{target:x}");
        }
        SegmentRegister ss = _sys.Ss;
        ulong newRsp = rsp;
        if (newCpl < cpl)
        {
            newRsp = ReadTss(ist != 0 ? 36 + (8 * (ist - 1)) : 4 + (8 * newCpl), ext);
            ss = Segmentation.NullStack(newCpl, (ushort)newCpl);
        }
        else if (ist != 0)
        {
            newRsp = ReadTss(36 + (8 * (ist - 1)), ext);
        }
        newRsp &= ~15UL;
        bool hasError = ev.ErrorCode >= 0 && ev.Source == EventSource.Exception;
        int count = hasError ? 6 : 5;
        ulong frame = newRsp - (ulong)(8 * count);
        if (!SystemRegisters.IsCanonical(newRsp - 1) || !SystemRegisters.IsCanonical(frame))
        {
            GuestFault.Raise(Vectors.SS, ext ? 1 : 0, $"the interrupt stack 0x{newRsp:x} is non-canonical");
        }
        Span<ulong> values = stackalloc ulong[6];
        int k = 0;
        if (hasError)
        {
            values[k++] = (uint)ev.ErrorCode;
        }
        values[k++] = rip;
        values[k++] = _sys.Cs.Selector;
        values[k++] = rflags;
        values[k++] = rsp;
        values[k++] = _sys.Ss.Selector;
        _mmu.WriteStackFrame(frame, values[..count], user: newCpl == 3);

        _sys.Cs = cs;
        if (newCpl < cpl)
        {
            _sys.Ss = ss;
        }
        rip = target;
        rsp = frame;
        rflags &= ~(TF | NT | RF | VM | (trapGate ? 0 : IF));
    }

    /// <summary>Reads the 8-byte TSS field at <paramref name="offset"/> (RSPn, ISTn); #TS(TR) past its limit.</summary>
    private ulong ReadTss(int offset, bool ext)
    {
        SegmentRegister tr = _sys.Tr;
        if (tr.Attributes == 0 || (ulong)offset + 7 > tr.Limit)
        {
            GuestFault.Raise(Vectors.TS, Segmentation.SelectorError(tr.Selector, ext), $"the TSS (limit 0x{tr.Limit:x}) has no field at offset {offset}");
        }
        return _mmu.ReadLinear64(tr.Base + (ulong)offset, user: false);
    }

    /// <summary>True when a fault of <paramref name="second"/> while delivering <paramref name="first"/> is a double fault (SDM vol. 3, table 6-5).</summary>
    public static bool IsDoubleFault(in GuestEvent first, int second)
    {
        if (first.Source != EventSource.Exception)
        {
            return false; // interrupts, traps and software INT n are benign
        }
        bool secondContributory = Contributory(second);
        return first.Vector == Vectors.PF ? secondContributory || second == Vectors.PF : Contributory(first.Vector) && secondContributory;
    }

    private static bool Contributory(int vector) => vector is Vectors.DE or Vectors.TS or Vectors.NP or Vectors.SS or Vectors.GP;
}
