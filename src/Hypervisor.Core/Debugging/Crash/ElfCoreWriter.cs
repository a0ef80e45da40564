using System.Text;

namespace Paravirt.Hypervisor.Debugging;

/// <summary>
/// Writes an ELF core file of a stopped guest in the layout Linux gives a process core, so that
/// <c>gdb IMAGE CORE</c> shows its registers, memory and backtrace: one <c>PT_NOTE</c> with <c>NT_PRSTATUS</c>
/// (signal and general registers, <c>struct elf_prstatus</c>), <c>NT_PRPSINFO</c>, <c>NT_FPREGSET</c> (the
/// 512-byte FXSAVE image) and <c>NT_SIGINFO</c> (gdb's <c>$_siginfo</c>: signal, code, faulting address), then one <c>PT_LOAD</c> per mapped range of the guest's virtual address space
/// (<see cref="GuestAddressSpace.Mappings"/>), with its bytes. Bounded: at most <see cref="MaxSegments"/> segments and
/// twice the guest's memory in all, whatever the page tables say.
/// </summary>
internal static class ElfCoreWriter
{
    internal const int MaxSegments = 4096;
    private const int ElfHeaderSize = 64, ProgramHeaderSize = 56;
    private const uint PT_LOAD = 1, PT_NOTE = 4, PF_X = 1, PF_W = 2, PF_R = 4;
    private const uint NT_PRSTATUS = 1, NT_FPREGSET = 2, NT_PRPSINFO = 3, NT_SIGINFO = 0x5349_4749;
    private const int SigInfoSize = 128;
    private const int PrStatusSize = 336, PrPsInfoSize = 136, FpRegSetSize = 512;

    internal static void Write(string path, VcpuState state, GuestAddressSpace space, GuestFaultInfo fault, string programName)
    {
        ArgumentNullException.ThrowIfNull(path);
        List<MappedRange> ranges = space.Mappings(MaxSegments, out _);
        ulong budget = space.Memory.Size * 2;
        var segments = new List<MappedRange>();
        foreach (MappedRange r in ranges)
        {
            if (r.Length > budget)
            {
                break;
            }
            budget -= r.Length;
            segments.Add(r);
        }

        byte[] notes = BuildNotes(state, fault, programName);
        int headers = ElfHeaderSize + (ProgramHeaderSize * (1 + segments.Count));
        ulong notesOffset = (ulong)headers;
        ulong dataOffset = Align(notesOffset + (ulong)notes.Length, 0x1000);

        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        Span<byte> eh = stackalloc byte[ElfHeaderSize];
        eh.Clear();
        "\x7F"u8.CopyTo(eh);
        "ELF"u8.CopyTo(eh[1..]);
        eh[4] = 2; // ELFCLASS64
        eh[5] = 1; // ELFDATA2LSB
        eh[6] = 1; // EV_CURRENT
        BinaryPrimitives.WriteUInt16LittleEndian(eh[16..], 4); // ET_CORE
        BinaryPrimitives.WriteUInt16LittleEndian(eh[18..], 62); // EM_X86_64
        BinaryPrimitives.WriteUInt32LittleEndian(eh[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(eh[32..], ElfHeaderSize); // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(eh[52..], ElfHeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(eh[54..], ProgramHeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(eh[56..], (ushort)(1 + segments.Count));
        file.Write(eh);

        Span<byte> ph = stackalloc byte[ProgramHeaderSize];
        ProgramHeader(ph, PT_NOTE, 0, notesOffset, 0, (ulong)notes.Length, (ulong)notes.Length, 4);
        file.Write(ph);
        ulong offset = dataOffset;
        foreach (MappedRange r in segments)
        {
            uint flags = PF_R | (r.Writable ? PF_W : 0) | (r.Executable ? PF_X : 0);
            ProgramHeader(ph, PT_LOAD, flags, offset, r.Linear, r.Length, r.Length, 0x1000);
            file.Write(ph);
            offset += r.Length;
        }
        file.Write(notes);
        file.Write(new byte[dataOffset - notesOffset - (ulong)notes.Length]);
        foreach (MappedRange r in segments)
        {
            // Blocks of zeros are skipped with a seek: the file gets holes (most guest memory is untouched).
            for (ulong done = 0; done < r.Length;)
            {
                ulong chunk = Math.Min(r.Length - done, 64 * 1024);
                ReadOnlySpan<byte> bytes = space.Memory.GetSpan(new GuestAddress(r.Physical + done), chunk);
                if (bytes.IndexOfAnyExcept((byte)0) < 0)
                {
                    file.Seek((long)chunk, SeekOrigin.Current);
                }
                else
                {
                    file.Write(bytes);
                }
                done += chunk;
            }
        }
        file.SetLength(file.Position); // a trailing hole still counts in the length
    }

    private static void ProgramHeader(Span<byte> ph, uint type, uint flags, ulong offset, ulong vaddr, ulong filesz, ulong memsz, ulong align)
    {
        ph.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(ph, type);
        BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], offset);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], vaddr);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], filesz);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], memsz);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[48..], align);
    }

    /// <summary>The PT_NOTE contents: NT_PRSTATUS, NT_PRPSINFO, NT_FPREGSET, each named "CORE".</summary>
    internal static byte[] BuildNotes(VcpuState state, GuestFaultInfo fault, string name)
    {
        using var notes = new MemoryStream();
        byte[] status = new byte[PrStatusSize];
        int signal = fault.UnixSignal;
        BinaryPrimitives.WriteInt32LittleEndian(status, signal); // pr_info.si_signo
        BinaryPrimitives.WriteInt16LittleEndian(status.AsSpan(12), (short)signal); // pr_cursig
        BinaryPrimitives.WriteInt32LittleEndian(status.AsSpan(32), 1); // pr_pid
        VcpuRegisters r = state.Registers;
        // struct user_regs_struct, in its order.
        ulong[] regs =
        [
            r.R15, r.R14, r.R13, r.R12, r.Rbp, r.Rbx, r.R11, r.R10, r.R9, r.R8, r.Rax, r.Rcx, r.Rdx, r.Rsi, r.Rdi,
            ulong.MaxValue, r.Rip, state.Cs.Selector, r.Rflags, r.Rsp, state.Ss.Selector, state.Fs.Base, state.Gs.Base,
            state.Ds.Selector, state.Es.Selector, state.Fs.Selector, state.Gs.Selector,
        ];
        for (int i = 0; i < regs.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(status.AsSpan(112 + (8 * i)), regs[i]);
        }
        BinaryPrimitives.WriteInt32LittleEndian(status.AsSpan(328), 1); // pr_fpvalid
        Note(notes, NT_PRSTATUS, status);

        byte[] info = new byte[PrPsInfoSize];
        info[1] = (byte)'R'; // pr_sname
        BinaryPrimitives.WriteInt32LittleEndian(info.AsSpan(24), 1); // pr_pid
        byte[] fname = Encoding.UTF8.GetBytes(name);
        fname.AsSpan(0, Math.Min(fname.Length, 15)).CopyTo(info.AsSpan(40));
        fname.AsSpan(0, Math.Min(fname.Length, 79)).CopyTo(info.AsSpan(56));
        Note(notes, NT_PRPSINFO, info);

        Note(notes, NT_FPREGSET, state.ExtendedState.AsSpan(0, FpRegSetSize).ToArray());

        // siginfo_t: si_signo, si_errno, si_code, then (SIGSEGV, SIGBUS, SIGFPE, SIGILL) si_addr at offset 16: the
        // data address of a page fault, else the faulting instruction, as the kernel reports them.
        byte[] siginfo = new byte[SigInfoSize];
        BinaryPrimitives.WriteInt32LittleEndian(siginfo, signal);
        BinaryPrimitives.WriteInt32LittleEndian(siginfo.AsSpan(8), signal switch
        {
            8 => 1,  // FPE_INTDIV
            11 => 1, // SEGV_MAPERR
            4 => 2,  // ILL_ILLOPN
            _ => 0,  // SI_USER
        });
        BinaryPrimitives.WriteUInt64LittleEndian(siginfo.AsSpan(16), fault.Address ?? r.Rip);
        Note(notes, NT_SIGINFO, siginfo);
        return notes.ToArray();
    }

    private static void Note(MemoryStream notes, uint type, byte[] desc)
    {
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(header, 5); // "CORE\0"
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)desc.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], type);
        notes.Write(header);
        notes.Write("CORE\0\0\0\0"u8); // name padded to 4
        notes.Write(desc);
        notes.Write(new byte[(4 - (desc.Length % 4)) % 4]);
    }

    private static ulong Align(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);
}
