namespace Paravirt.Hypervisor.Backends.Emulator;

/// <summary>
/// The system side of the instruction set: privilege checks (CPL 0/3, IOPL), SYSCALL/SYSRET, SWAPGS, the FS/GS base
/// instructions, RDMSR/WRMSR, control and debug registers, descriptor-table and segment-register loads, far returns,
/// IRETQ, INT n/INT3/INT1, and raising exceptions and interrupts (delivered through the IDT by
/// <see cref="ExceptionDelivery"/>, or ending the run with a named fault when the guest has no IDT).
/// </summary>
internal sealed unsafe partial class EmulatorVcpu
{
    /// <summary>DR0-DR3: kept (no hardware breakpoints are implemented).</summary>
    private readonly ulong[] _dr = new ulong[4];

    private int Iopl => (int)((_s->Rflags >> 12) & 3);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RequireCpl0(string what)
    {
        if (_sys.Cpl != 0)
        {
            GuestFault.GeneralProtection(0, $"'{what}' at CPL {_sys.Cpl}");
        }
    }

    // ---- events ----

    /// <summary>
    /// An instruction at <paramref name="rip"/> raised <paramref name="fault"/>: deliver it, or end the run (no IDT,
    /// a terminal fault, an emulator gap). Returns true when <see cref="Run"/> must return the exit set.
    /// </summary>
    private bool RaiseFault(GuestFault fault, ulong rip) =>
        EndsRun(fault, rip) || RaiseEvent(new GuestEvent(fault.Vector, fault.ErrorCode, EventSource.Exception, fault.Address), rip, rip, fault.Message);

    /// <summary>
    /// A fault no guest handler can see ends the run at <paramref name="rip"/>: an emulator gap (an
    /// <see cref="VcpuExitKind.Unimplemented"/> exit) or a terminal fault (a <see cref="VcpuExitKind.Fault"/> exit).
    /// Returns true when it set that exit.
    /// </summary>
    private bool EndsRun(GuestFault fault, ulong rip)
    {
        if (fault.Vector != GuestFault.Gap && !fault.Terminal)
        {
            return false;
        }
        SetExit(new VcpuExit(fault.Vector == GuestFault.Gap ? VcpuExitKind.Unimplemented : VcpuExitKind.Fault, rip, Address: fault.Address, Detail: fault.Message));
        return true;
    }

    /// <summary>
    /// Delivers <paramref name="ev"/> through the IDT with return address <paramref name="returnRip"/>, applying the
    /// double-fault rules to faults raised on the way (a fault while delivering a #DF is a triple fault: a
    /// <see cref="VcpuExitKind.Shutdown"/> exit). A fault raised while delivering INT n returns to the INT itself
    /// (<paramref name="reportRip"/>: the instruction did not complete). With no IDT loaded the run ends with a
    /// <see cref="VcpuExitKind.Fault"/> exit at <paramref name="reportRip"/> naming the event
    /// (<paramref name="message"/>), as before the emulator delivered events. Returns true when <see cref="Run"/>
    /// must return the exit set.
    /// </summary>
    private bool RaiseEvent(GuestEvent ev, ulong returnRip, ulong? reportRip = null, string? message = null)
    {
        ulong at = reportRip ?? returnRip;
        if (_delivery.NoIdt)
        {
            SetExit(new VcpuExit(VcpuExitKind.Fault, at, Address: ev.FaultAddress, Detail: message ?? $"{Describe(in ev)} at 0x{at:x} with no IDT loaded"));
            return true;
        }
        GuestEvent current = ev;
        Materialize();
        while (true)
        {
            try
            {
                if (current.Vector == Vectors.PF && current.Source == EventSource.Exception)
                {
                    // A delivered #PF sets CR2 and invalidates the TLB entries of the faulting address (SDM 4.10.4.1).
                    _sys.Cr2 = current.FaultAddress;
                    _mmu.FlushPage(current.FaultAddress);
                    _code.FlushFast();
                }
                ulong rip = returnRip, rflags = _s->Rflags, rsp = _r[4];
                _delivery.Deliver(in current, ref rip, ref rflags, ref rsp);
                _s->Rip = rip;
                _s->Rflags = rflags;
                _r[4] = rsp;
                _outResume = 0;
                _shadow = false;
                _deliveries++;
                PrivilegeChanged();
                return false;
            }
            catch (GuestFault nested)
            {
                if (nested.Vector == Vectors.PF)
                {
                    _sys.Cr2 = nested.Address; // a page fault loads CR2 even when it turns into a double fault
                }
                if (EndsRun(nested, at))
                {
                    return true;
                }
                if (current.Vector == Vectors.DF && current.Source == EventSource.Exception)
                {
                    SetExit(new VcpuExit(VcpuExitKind.Shutdown, at, Detail: $"triple fault: {nested.Message} while delivering a double fault"));
                    return true;
                }
                if (current.Source is EventSource.Software or EventSource.Privileged)
                {
                    returnRip = at; // INT n faulted: it did not complete
                }
                current = ExceptionDelivery.IsDoubleFault(in current, nested.Vector)
                    ? new GuestEvent(Vectors.DF, 0, EventSource.Exception)
                    : new GuestEvent(nested.Vector, nested.ErrorCode, EventSource.Exception, nested.Address);
            }
        }
    }

    private static string Describe(in GuestEvent ev) => ev.Source switch
    {
        EventSource.External => $"external interrupt {ev.Vector}",
        EventSource.Software when ev.Vector == Vectors.BP => "breakpoint (#BP, int3)",
        EventSource.Software => $"software interrupt 'int 0x{ev.Vector:x}'",
        _ => $"exception {Vectors.Name(ev.Vector)}",
    };

    // ---- dispatch of the system ops ----

    /// <summary>Executes a system op; returns true when it ended the block with rip set (or an exit pending).</summary>
    private bool ExecuteSystem(ref MicroOp op, Block block)
    {
        switch (op.Kind)
        {
            case OpKind.Syscall: Syscall(ref op); return true;
            case OpKind.Sysret: Sysret(ref op); return true;
            case OpKind.Iretq: Iretq(ref op); return true;
            case OpKind.Lretq: Lretq(ref op); return true;
            case OpKind.IntN:
            case OpKind.Int3:
            case OpKind.Int1:
            {
                int vector = op.Kind == OpKind.IntN ? (int)op.Imm : op.Kind == OpKind.Int3 ? Vectors.BP : Vectors.DB;
                var ev = new GuestEvent(vector, -1, op.Kind == OpKind.Int1 ? EventSource.Privileged : EventSource.Software);
                _s->Rip = op.Next;
                RaiseEvent(ev, op.Next, op.Rip, _delivery.NoIdt ? $"{Describe(in ev)} at 0x{op.Rip:x} with no IDT loaded" : null);
                return true;
            }
            case OpKind.FetchFault:
            {
                // The instruction's bytes could not be fetched when the block was decoded: decode again next time.
                ulong address = op.Imm;
                int error = (int)(long)op.Disp;
                int vector = op.Size == 0xFF ? -1 : op.Size;
                string text = block.Texts[op.Text];
                _code.Drop(block);
                throw GuestFault.Create(vector, error, address, text);
            }
            case OpKind.Swapgs:
                RequireCpl0("swapgs");
                (_sys.Gs, _sys.KernelGsBase) = (_sys.Gs with { Base = _sys.KernelGsBase }, _sys.Gs.Base);
                return false;
            case OpKind.Rdfsbase:
            case OpKind.Rdgsbase:
            {
                RequireFsGsBase();
                ulong v = op.Kind == OpKind.Rdfsbase ? _sys.Fs.Base : _sys.Gs.Base;
                _r[op.RegA] = op.Size == 8 ? v : (uint)v;
                return false;
            }
            case OpKind.Wrfsbase:
            case OpKind.Wrgsbase:
            {
                RequireFsGsBase();
                ulong v = op.Size == 8 ? _r[op.RegB] : (uint)_r[op.RegB];
                if (!SystemRegisters.IsCanonical(v))
                {
                    GuestFault.GeneralProtection(0, $"non-canonical {(op.Kind == OpKind.Wrfsbase ? "FS" : "GS")} base 0x{v:x}");
                }
                if (op.Kind == OpKind.Wrfsbase)
                {
                    _sys.Fs = _sys.Fs with { Base = v };
                }
                else
                {
                    _sys.Gs = _sys.Gs with { Base = v };
                }
                return false;
            }
            case OpKind.Rdmsr:
            {
                RequireCpl0("rdmsr");
                ulong v = ReadMsr((uint)_r[1]);
                _r[0] = (uint)v;
                _r[2] = v >> 32;
                return false;
            }
            case OpKind.Wrmsr:
                RequireCpl0("wrmsr");
                WriteMsr((uint)_r[1], ((ulong)(uint)_r[2] << 32) | (uint)_r[0]);
                _s->Rip = op.Next;
                return true;
            case OpKind.Invlpg:
            {
                RequireCpl0("invlpg");
                _mmu.FlushPage(Ea(ref op));
                _code.FlushFast();
                _s->Rip = op.Next;
                return true;
            }
            case OpKind.Wbinvd:
                RequireCpl0("wbinvd");
                return false;
            case OpKind.Clts:
                RequireCpl0("clts");
                _sys.Cr0 &= ~SystemRegisters.Cr0Ts;
                UpdateFpuAvailability();
                return false;
            case OpKind.Lmsw:
            {
                RequireCpl0("lmsw");
                ulong v = ReadB(ref op, 2);
                // LMSW loads PE, MP, EM, TS and cannot clear PE.
                _sys.Cr0 = (_sys.Cr0 & ~0xEUL) | (v & 0xF) | SystemRegisters.Cr0Pe;
                UpdateFpuAvailability();
                _s->Rip = op.Next;
                return true;
            }
            case OpKind.Smsw:
                WriteA(ref op, op.A == Loc.Mem ? Ea(ref op) : 0, _sys.Cr0 & (op.A == Loc.Mem ? 0xFFFFUL : Mask(op.Size)));
                return false;
            case OpKind.Sgdt:
            case OpKind.Sidt:
            {
                DescriptorTableRegister t = op.Kind == OpKind.Sgdt ? _sys.Gdtr : _sys.Idtr;
                ulong ea = Ea(ref op);
                Span<byte> image = stackalloc byte[10];
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(image, t.Limit);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(image[2..], t.Base);
                WriteSlow(ea, image);
                return false;
            }
            case OpKind.Str:
            case OpKind.Sldt:
            {
                ushort sel = op.Kind == OpKind.Str ? _sys.Tr.Selector : _sys.Ldtr.Selector;
                WriteA(ref op, op.A == Loc.Mem ? Ea(ref op) : 0, sel);
                return false;
            }
            case OpKind.Ltr:
            {
                RequireCpl0("ltr");
                _sys.Tr = _delivery.Segments.LoadTask((ushort)ReadB(ref op, 2));
                return false;
            }
            case OpKind.Lldt:
            {
                RequireCpl0("lldt");
                _sys.Ldtr = _delivery.Segments.LoadLdt((ushort)ReadB(ref op, 2));
                return false;
            }
            case OpKind.MovFromSreg:
            {
                ushort sel = SegmentByIndex(op.RegB).Selector;
                WriteA(ref op, op.A == Loc.Mem ? Ea(ref op) : 0, sel);
                return false;
            }
            case OpKind.MovToSreg:
                LoadSegmentRegister(op.RegA, (ushort)ReadB(ref op, 2));
                _s->Rip = op.Next;
                return true;
            case OpKind.PushSreg:
            {
                ulong sp = _r[4] - 8;
                Store64(sp, SegmentByIndex(op.RegB).Selector);
                _r[4] = sp;
                return false;
            }
            case OpKind.PopSreg:
            {
                ushort sel = (ushort)Load64(_r[4]);
                LoadSegmentRegister(op.RegA, sel);
                _r[4] += 8;
                _s->Rip = op.Next;
                return true;
            }
            case OpKind.MovFromDr:
                RequireCpl0("mov from a debug register");
                _r[op.RegA] = DebugRegister(op.RegB);
                return false;
            case OpKind.MovToDr:
                RequireCpl0("mov to a debug register");
                SetDebugRegister(op.RegA, _r[op.RegB]);
                return false;
            default:
                GuestFault.NotImplemented($"system op {op.Kind}");
                return false;
        }
    }

    private void RequireFsGsBase()
    {
        if ((_sys.Cr4 & SystemRegisters.Cr4FsGsBase) == 0)
        {
            GuestFault.InvalidOpcode("invalid opcode (#UD): rd/wr fs/gs base with CR4.FSGSBASE clear");
        }
    }

    /// <summary>RDTSC/RDTSCP: #GP at CPL &gt; 0 when CR4.TSD is set.</summary>
    private void RequireTsc()
    {
        if ((_sys.Cr4 & SystemRegisters.Cr4Tsd) != 0 && _sys.Cpl != 0)
        {
            GuestFault.GeneralProtection(0, "rdtsc at CPL 3 with CR4.TSD set");
        }
    }

    // ---- IF, IOPL, HLT, port I/O ----

    private void Cli()
    {
        if (_sys.Cpl > Iopl)
        {
            GuestFault.GeneralProtection(0, $"'cli' at CPL {_sys.Cpl} with IOPL {Iopl}");
        }
        _s->Rflags &= ~IF;
    }

    private void Sti()
    {
        if (_sys.Cpl > Iopl)
        {
            GuestFault.GeneralProtection(0, $"'sti' at CPL {_sys.Cpl} with IOPL {Iopl}");
        }
        if ((_s->Rflags & IF) == 0)
        {
            _shadow = true; // the instruction after STI runs before any interrupt
        }
        _s->Rflags |= IF;
    }

    /// <summary>The RFLAGS bits POPF (and IRET, with the CPL before it) may change at <paramref name="cpl"/>: IOPL only at CPL 0, IF only when CPL &lt;= IOPL.</summary>
    private ulong FlagsWritable(int cpl)
    {
        ulong mask = PopfMask;
        if (cpl > 0)
        {
            mask &= ~IOPL;
        }
        if (cpl > Iopl)
        {
            mask &= ~IF;
        }
        return mask;
    }

    /// <summary>
    /// IN/OUT at CPL &gt; IOPL: allowed only when the TSS I/O permission bitmap clears every bit of the ports
    /// accessed; otherwise #GP(0) to the guest kernel (a user-mode out never reaches the host).
    /// </summary>
    private void CheckIo(ulong port, int size)
    {
        if (_sys.Cpl <= Iopl)
        {
            return;
        }
        SegmentRegister tr = _sys.Tr;
        if (tr.Attributes != 0 && tr.Limit >= 103)
        {
            ulong bitmap = ReadSupervisor16(tr.Base + 102);
            ulong at = bitmap + (port >> 3);
            if (at + 1 <= tr.Limit)
            {
                ulong bits = ReadSupervisor16(tr.Base + at);
                ulong mask = ((1UL << size) - 1) << (int)(port & 7);
                if ((bits & mask) == 0)
                {
                    return;
                }
            }
        }
        GuestFault.GeneralProtection(0, $"port I/O to 0x{port:x} at CPL {_sys.Cpl} (IOPL {Iopl}, not allowed by the TSS I/O bitmap)");
    }

    private ulong ReadSupervisor16(ulong linear)
    {
        ushort v;
        _mmu.ReadLinear(linear, new Span<byte>(&v, 2), user: false);
        return v;
    }

    // ---- control registers, MSRs ----

    private void Lgdt(ref MicroOp op, bool idt)
    {
        RequireCpl0(idt ? "lidt" : "lgdt");
        ulong ea = Ea(ref op);
        ulong limit = Load(ea, 2), tableBase = Load64(ea + 2);
        if (!SystemRegisters.IsCanonical(tableBase))
        {
            GuestFault.GeneralProtection(0, $"non-canonical {(idt ? "IDT" : "GDT")} base 0x{tableBase:x}");
        }
        var table = new DescriptorTableRegister(tableBase, (ushort)limit);
        if (idt)
        {
            _sys.Idtr = table;
        }
        else
        {
            _sys.Gdtr = table;
        }
    }

    private ulong ReadControlRegister(int cr)
    {
        RequireCpl0("mov from a control register");
        return cr switch
        {
            0 => _sys.Cr0,
            2 => _sys.Cr2,
            3 => _sys.Cr3,
            4 => _sys.Cr4,
            _ => _sys.Cr8,
        };
    }

    /// <summary>
    /// Writes CR0, CR4 or EFER. When a bit of <paramref name="pagingBits"/> changes, every cached translation (and so
    /// the block lookup's fast entries) means something else, and all of them go.
    /// </summary>
    private void WritePagingControl(ref ulong register, ulong value, ulong pagingBits)
    {
        bool flush = ((value ^ register) & pagingBits) != 0;
        register = value;
        if (flush)
        {
            _mmu.FlushAll();
            _code.FlushFast();
        }
    }

    private void WriteControlRegister(int cr, ulong value)
    {
        RequireCpl0("mov to a control register");
        switch (cr)
        {
            case 0:
            {
                value |= SystemRegisters.Cr0Et; // hardwired
                if (!SystemRegisters.IsValidCr0(value))
                {
                    GuestFault.GeneralProtection(0, $"invalid CR0 value 0x{value:x} (reserved bits, or leaving paging or protected mode in 64-bit mode)");
                }
                WritePagingControl(ref _sys.Cr0, value, SystemRegisters.Cr0Wp | SystemRegisters.Cr0Pg);
                UpdateFpuAvailability();
                break;
            }
            case 2:
                _sys.Cr2 = value;
                break;
            case 3:
                if ((value >> Mmu.PhysicalAddressBits) != 0)
                {
                    GuestFault.GeneralProtection(0, $"CR3 value 0x{value:x} sets reserved bits");
                }
                _sys.Cr3 = value;
                _mmu.FlushForCr3Write();
                _code.FlushFast();
                break;
            case 4:
            {
                if (!SystemRegisters.IsValidCr4(value))
                {
                    GuestFault.GeneralProtection(0, $"CR4 value 0x{value:x} sets a bit the emulator does not implement (implemented: 0x{SystemRegisters.Cr4Writable:x}) or clears PAE");
                }
                WritePagingControl(ref _sys.Cr4, value, SystemRegisters.Cr4Pge | SystemRegisters.Cr4Pae | SystemRegisters.Cr4Pse);
                UpdateFpuAvailability();
                break;
            }
            default:
                if (value > 15)
                {
                    GuestFault.GeneralProtection(0, $"CR8 value 0x{value:x} sets reserved bits");
                }
                _sys.Cr8 = value;
                break;
        }
    }

    /// <summary>Recomputes <see cref="CpuState.SseFault"/> and <see cref="CpuState.X87Fault"/> after a CR0 or CR4 change.</summary>
    private void UpdateFpuAvailability()
    {
        _s->SseFault = (_sys.Cr0 & SystemRegisters.Cr0Em) != 0 || (_sys.Cr4 & SystemRegisters.Cr4OsFxsr) == 0 ? Vectors.UD
            : (_sys.Cr0 & SystemRegisters.Cr0Ts) != 0 ? Vectors.NM : 0;
        _s->X87Fault = (_sys.Cr0 & (SystemRegisters.Cr0Em | SystemRegisters.Cr0Ts)) != 0 ? Vectors.NM : 0;
    }

    /// <summary>
    /// Raises what an SSE instruction raises when CR0/CR4 forbid it: #UD with CR0.EM set or CR4.OSFXSR clear, #NM
    /// with CR0.TS set (lazy FPU switching). Called at the start of every SSE op (x87 ops: <see cref="FpuUnavailable"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SseUnavailable()
    {
        if (_s->SseFault == Vectors.NM)
        {
            GuestFault.Raise(Vectors.NM, -1, "SSE instruction with CR0.TS set");
        }
        GuestFault.InvalidOpcode("invalid opcode (#UD): SSE instruction with CR0.EM set or CR4.OSFXSR clear");
    }

    private ulong ReadMsr(uint msr) => msr switch
    {
        SystemRegisters.MsrEfer => _sys.Efer,
        SystemRegisters.MsrStar => _sys.Star,
        SystemRegisters.MsrLstar => _sys.Lstar,
        SystemRegisters.MsrCstar => _sys.Cstar,
        SystemRegisters.MsrSfmask => _sys.Sfmask,
        SystemRegisters.MsrFsBase => _sys.Fs.Base,
        SystemRegisters.MsrGsBase => _sys.Gs.Base,
        SystemRegisters.MsrKernelGsBase => _sys.KernelGsBase,
        SystemRegisters.MsrTscAux => _sys.TscAux,
        SystemRegisters.MsrTsc => Tsc,
        _ => UnknownMsr(msr, "rdmsr"),
    };

    private void WriteMsr(uint msr, ulong value)
    {
        switch (msr)
        {
            case SystemRegisters.MsrEfer:
            {
                value = (value & ~SystemRegisters.EferLma) | (_sys.Efer & SystemRegisters.EferLma); // LMA is read-only
                if (!SystemRegisters.IsValidEfer(value))
                {
                    GuestFault.GeneralProtection(0, $"EFER value 0x{value:x} sets reserved bits or clears LME in long mode");
                }
                WritePagingControl(ref _sys.Efer, value, SystemRegisters.EferNxe);
                break;
            }
            case SystemRegisters.MsrStar: _sys.Star = value; break;
            case SystemRegisters.MsrLstar: _sys.Lstar = Canonical(value, msr); break;
            case SystemRegisters.MsrCstar: _sys.Cstar = Canonical(value, msr); break;
            case SystemRegisters.MsrSfmask: _sys.Sfmask = Low32(value, msr); break;
            case SystemRegisters.MsrFsBase: _sys.Fs = _sys.Fs with { Base = Canonical(value, msr) }; break;
            case SystemRegisters.MsrGsBase: _sys.Gs = _sys.Gs with { Base = Canonical(value, msr) }; break;
            case SystemRegisters.MsrKernelGsBase: _sys.KernelGsBase = Canonical(value, msr); break;
            case SystemRegisters.MsrTscAux: _sys.TscAux = Low32(value, msr); break;
            case SystemRegisters.MsrTsc: _tscOffset = (long)(value - _s->Icount); break;
            default: UnknownMsr(msr, "wrmsr"); break;
        }
    }

    private static ulong Canonical(ulong value, uint msr)
    {
        if (!SystemRegisters.IsCanonical(value))
        {
            GuestFault.GeneralProtection(0, $"wrmsr 0x{msr:x} with non-canonical 0x{value:x}");
        }
        return value;
    }

    private static ulong Low32(ulong value, uint msr)
    {
        if ((value >> 32) != 0)
        {
            GuestFault.GeneralProtection(0, $"wrmsr 0x{msr:x} with reserved bits set (0x{value:x})");
        }
        return value;
    }

    private static ulong UnknownMsr(uint msr, string what)
    {
        GuestFault.GeneralProtection(0, $"{what} of MSR 0x{msr:x}, which the emulator does not implement");
        return 0;
    }

    private ulong DebugRegister(int dr) => dr switch
    {
        < 4 => _dr[dr],
        6 => _sys.Dr6,
        7 => _sys.Dr7,
        _ => DebugAlias(dr) == 6 ? _sys.Dr6 : _sys.Dr7,
    };

    private void SetDebugRegister(int dr, ulong value)
    {
        int target = dr is 4 or 5 ? DebugAlias(dr) : dr;
        if (target is 6 or 7 && (value >> 32) != 0)
        {
            GuestFault.GeneralProtection(0, $"DR{target} value 0x{value:x} sets reserved bits");
        }
        switch (target)
        {
            case < 4: _dr[target] = value; break;
            case 6: _sys.Dr6 = (value & 0xE00F) | 0xFFFF_0FF0; break;
            default: _sys.Dr7 = (value & 0xFFFF_2BFF) | 0x400; break;
        }
    }

    /// <summary>DR4/DR5 alias DR6/DR7 unless CR4.DE is set, in which case they raise #UD.</summary>
    private int DebugAlias(int dr)
    {
        if ((_sys.Cr4 & SystemRegisters.Cr4De) != 0)
        {
            GuestFault.InvalidOpcode($"invalid opcode (#UD): DR{dr} with CR4.DE set");
        }
        return dr + 2;
    }

    // ---- segments ----

    /// <summary>Segment register by the x86 encoding: 0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS.</summary>
    private SegmentRegister SegmentByIndex(int index) => index switch
    {
        0 => _sys.Es,
        1 => _sys.Cs,
        2 => _sys.Ss,
        3 => _sys.Ds,
        4 => _sys.Fs,
        _ => _sys.Gs,
    };

    /// <summary>MOV Sreg / POP Sreg: SS with the stack checks (and an interrupt shadow), DS/ES/FS/GS with the data checks. CS cannot be loaded this way (#UD at decode).</summary>
    private void LoadSegmentRegister(int index, ushort selector)
    {
        Segmentation seg = _delivery.Segments;
        switch (index)
        {
            case 2:
                _sys.Ss = seg.LoadStack(selector, _sys.Cpl);
                _shadow = true;
                break;
            case 0: _sys.Es = seg.LoadData(selector, _sys.Es, keepBase: false); break;
            case 3: _sys.Ds = seg.LoadData(selector, _sys.Ds, keepBase: false); break;
            case 4: _sys.Fs = seg.LoadData(selector, _sys.Fs, keepBase: false); break;
            case 5: _sys.Gs = seg.LoadData(selector, _sys.Gs, keepBase: false); break;
            default: GuestFault.InvalidOpcode("invalid opcode (#UD): mov to CS"); break;
        }
    }

    /// <summary>After a return to an outer privilege level: DS, ES, FS, GS loaded with a segment the new CPL may not use become null (their FS/GS bases stay).</summary>
    private void NullInaccessibleSegments(int cpl)
    {
        static SegmentRegister Check(SegmentRegister s, int cpl)
        {
            if ((s.Selector & 0xFFFC) == 0 || s.Attributes == 0)
            {
                return s;
            }
            bool conformingCode = (s.Type & (Segmentation.TypeCode | Segmentation.TypeConforming)) == (Segmentation.TypeCode | Segmentation.TypeConforming);
            return !conformingCode && s.Dpl < cpl ? new SegmentRegister(0, s.Base, 0, 0) : s;
        }
        _sys.Ds = Check(_sys.Ds, cpl);
        _sys.Es = Check(_sys.Es, cpl);
        _sys.Fs = Check(_sys.Fs, cpl);
        _sys.Gs = Check(_sys.Gs, cpl);
    }

    // ---- SYSCALL, SYSRET, IRETQ, far return ----

    private static SegmentRegister FlatCode(ushort selector, int dpl) =>
        new(selector, 0, 0xFFFF_FFFF, SegmentRegister.MakeAttributes(11, codeOrData: true, dpl, present: true, @long: true, granularity: true));

    private static SegmentRegister FlatData(ushort selector, int dpl) =>
        new(selector, 0, 0xFFFF_FFFF, SegmentRegister.MakeAttributes(3, codeOrData: true, dpl, present: true, defaultBig: true, granularity: true));

    private void Syscall(ref MicroOp op)
    {
        if ((_sys.Efer & SystemRegisters.EferSce) == 0)
        {
            GuestFault.InvalidOpcode($"invalid opcode (#UD): 'syscall' with EFER.SCE clear at 0x{op.Rip:x}");
        }
        Materialize();
        _r[1] = op.Next;
        _r[11] = _s->Rflags & ~RF;
        _s->Rflags = (_s->Rflags & ~_sys.Sfmask & ~RF) | 2;
        ushort cs = (ushort)((_sys.Star >> 32) & 0xFFFC);
        _sys.Cs = FlatCode(cs, 0);
        _sys.Ss = FlatData((ushort)(cs + 8), 0);
        _s->Rip = _sys.Lstar;
        PrivilegeChanged();
    }

    private void Sysret(ref MicroOp op)
    {
        if ((_sys.Efer & SystemRegisters.EferSce) == 0)
        {
            GuestFault.InvalidOpcode($"invalid opcode (#UD): 'sysret' with EFER.SCE clear at 0x{op.Rip:x}");
        }
        RequireCpl0("sysret");
        if (op.Size != 8)
        {
            GuestFault.NotImplemented("'sysretd' (a return to 32-bit compatibility mode)");
        }
        ulong target = _r[1];
        if (!SystemRegisters.IsCanonical(target))
        {
            GuestFault.GeneralProtection(0, $"sysret to non-canonical rcx 0x{target:x}");
        }
        ushort baseSelector = (ushort)(_sys.Star >> 48);
        _sys.Cs = FlatCode((ushort)((baseSelector + 16) | 3), 3);
        _sys.Ss = FlatData((ushort)((baseSelector + 8) | 3), 3);
        _s->LazyKind = LazyKind.None;
        _s->Rflags = (_r[11] & 0x3C_7FD7) | 2;
        _s->Rip = target;
        PrivilegeChanged();
    }

    private void Iretq(ref MicroOp op)
    {
        if (op.Size != 8)
        {
            GuestFault.NotImplemented($"'{(op.Size == 4 ? "iretd" : "iretw")}' (only iretq in 64-bit code)");
        }
        Materialize();
        if ((_s->Rflags & NT) != 0)
        {
            GuestFault.GeneralProtection(0, "iretq with RFLAGS.NT set (task return)");
        }
        ulong sp = _r[4];
        Span<ulong> frame = stackalloc ulong[5];
        ReadSlow(sp, System.Runtime.InteropServices.MemoryMarshal.AsBytes(frame));
        ulong newRip = frame[0];
        ushort csSelector = (ushort)frame[1];
        ulong newFlags = frame[2];
        ulong newRsp = frame[3];
        ushort ssSelector = (ushort)frame[4];
        int cpl = _sys.Cpl;
        SegmentRegister cs = ReturnCodeSegment(csSelector, cpl, "iretq", out int newCpl);
        SegmentRegister ss = _delivery.Segments.LoadStack(ssSelector, newCpl);
        CheckReturnRip(newRip, "iretq");
        ulong writable = FlagsWritable(cpl) | RF | AC | ID | NT;
        _s->Rflags = (_s->Rflags & ~writable) | (newFlags & writable) | 2;
        CompleteReturn(cs, ss, newRip, newRsp, cpl, newCpl);
    }

    private void Lretq(ref MicroOp op)
    {
        if (op.Size != 8)
        {
            GuestFault.NotImplemented("a 16/32-bit far return");
        }
        ulong sp = _r[4];
        Span<ulong> frame = stackalloc ulong[2];
        ReadSlow(sp, System.Runtime.InteropServices.MemoryMarshal.AsBytes(frame));
        ulong newRip = frame[0];
        ushort csSelector = (ushort)frame[1];
        int cpl = _sys.Cpl;
        SegmentRegister cs = ReturnCodeSegment(csSelector, cpl, "far return", out int newCpl);
        ulong newRsp = sp + 16 + op.Imm;
        SegmentRegister ss = _sys.Ss;
        if (newCpl > cpl)
        {
            Span<ulong> outer = stackalloc ulong[2];
            ReadSlow(newRsp, System.Runtime.InteropServices.MemoryMarshal.AsBytes(outer));
            ss = _delivery.Segments.LoadStack((ushort)outer[1], newCpl);
            newRsp = outer[0] + op.Imm;
        }
        CheckReturnRip(newRip, "far return");
        CompleteReturn(cs, ss, newRip, newRsp, cpl, newCpl);
    }

    /// <summary>
    /// The code segment an iretq or far return (<paramref name="instruction"/>) goes back to: a return never raises
    /// privilege, so a CS whose RPL is below the CPL is #GP.
    /// </summary>
    private SegmentRegister ReturnCodeSegment(ushort csSelector, int cpl, string instruction, out int newCpl)
    {
        if ((csSelector & 3) < cpl)
        {
            GuestFault.GeneralProtection(Segmentation.SelectorError(csSelector, false), $"{instruction} to CS 0x{csSelector:x} of RPL below CPL {cpl}");
        }
        return _delivery.Segments.LoadCode(csSelector, false, out newCpl, gateTarget: false);
    }

    private static void CheckReturnRip(ulong newRip, string instruction)
    {
        if (!SystemRegisters.IsCanonical(newRip))
        {
            GuestFault.GeneralProtection(0, $"{instruction} to non-canonical rip 0x{newRip:x}");
        }
    }

    /// <summary>The last step of a return, once nothing can fault: the new CS:rip and SS:rsp, and the ring change.</summary>
    private void CompleteReturn(SegmentRegister cs, SegmentRegister ss, ulong newRip, ulong newRsp, int cpl, int newCpl)
    {
        _sys.Cs = cs;
        _sys.Ss = ss;
        _r[4] = newRsp;
        _s->Rip = newRip;
        if (newCpl > cpl)
        {
            NullInaccessibleSegments(newCpl);
        }
        PrivilegeChanged();
    }
}
