using System.Buffers.Binary;
using Iced.Intel;
using Paravirt.Abi;
using Paravirt.Hypervisor.Memory;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Scenarios;

/// <summary>
/// A hand-written kernel-style guest that exercises the system side of an x86-64 CPU, built as a Paravirt ELF image
/// (so it runs through the full VMM on any backend): it loads its own GDT (kernel and user segments, a TSS with
/// RSP0 and an IST stack), IDT (a stub per vector) and 4-level page tables (user, read-only, no-execute and
/// unmapped pages), enables NX and SYSCALL, then takes #DE, #UD, #BP, #GP (non-canonical address, LTR of a code
/// segment), #PF (not present, write protect, NX fetch), INT n, #NM for x87 and SSE with CR0.TS set, #MF for a
/// pending x87 exception, #PF for x87/FXSAVE operands crossing into an unmapped page, a timer interrupt held pending
/// while IF=0 (woken out of poll), a double fault on an IST stack;
/// enters user mode with IRETQ and there makes SYSCALLs (SWAPGS, GS-relative per-CPU data, SYSRETQ), INT 0x80, INT3,
/// and takes #PF (supervisor page, read-only page, NX page), #GP (hlt, out, cli, mov from CR0, rdmsr; optionally int
/// of a DPL-0 gate), a single-step #DB and a timer interrupt at CPL 3. Every event is logged (vector, error code, saved RIP,
/// saved CS/SS, CR2) and the log is printed in hex through <c>debug_write</c>; the run exits with status 0.
/// The same image must print the same log on KVM and on the emulator (<see cref="CrossBackendScenarios"/>), and the
/// emulator's tests check the log against the architecture (tests/Paravirt.Emulator.Tests/KernelGuestTests.cs).
/// </summary>
internal static class KernelGuest
{
    public const ulong Base = EntryConvention.ImageMinAddress;
    public const ulong UserText = Base + 0x8000, UserData = Base + 0xA000, UserReadOnly = Base + 0xB000, KernelData = Base + 0xC000;
    public const ulong Gdt = Base + 0xD000, Tss = Gdt + 0x100, Idt = Base + 0xE000;
    public const ulong KernelStackTop = Base + 0x12000, IstStackTop = Base + 0x13000, UserStackTop = Base + 0x15000;
    public const ulong NxPage = Base + 0x16000, Pml4 = Base + 0x17000, Pdpt = Base + 0x18000, Pd = Base + 0x19000, Pt = Base + 0x1A000;
    public const ulong OutBuffer = Base + 0x1B000, End = Base + 0x1D000;
    /// <summary>A page the tables leave not present.</summary>
    public const ulong Unmapped = 0x1F_0000;

    public const ushort KernelCs = 0x08, KernelDs = 0x10, UserDs = 0x1B, UserCs = 0x23, TssSelector = 0x28;
    public const int TimerVector = 32, SyscallEvent = 0x100, SummaryEvent = 0x200;

    // Kernel data layout.
    private const ulong LogCount = KernelData, SyscallCount = KernelData + 0x10, Ticks = KernelData + 0x20, SavedRsp = KernelData + 0x28;
    private const ulong FpuScratch = KernelData + 0x30;
    private const ulong LogStart = KernelData + 0x100, ResumeTable = KernelData + 0xC00, PerCpu = KernelData + 0xE00;
    private const int RecordBytes = 40, MaxRecords = (int)(ResumeTable - LogStart) / RecordBytes;
    // User data layout.
    private const ulong TimerFlag = UserData, SyscallResult = UserData + 8;

    private static ulong HypercallEntry => GuestLayout.HypercallPage + HypercallPage.EntryOffset;

    /// <summary>One logged event.</summary>
    public readonly record struct Event(ulong Vector, ulong ErrorCode, ulong Rip, ulong Cs, ulong Ss, ulong Cr2);

    /// <summary>The labelled addresses the checks need.</summary>
    public sealed class Addresses
    {
        public Dictionary<string, ulong> Kernel { get; } = [];
        public Dictionary<string, ulong> User { get; } = [];
    }

    /// <summary>
    /// Builds the ELF image; <paramref name="addresses"/> gets the address of every named instruction.
    /// <paramref name="withIdtIndexErrorCode"/> adds a user-mode <c>int 0x81</c> through a DPL-0 gate, whose #GP error
    /// code the SDM gives as vector * 8 + 2 (0x40A) but QEMU's TCG (which runs the nested-KVM guest) as
    /// vector * 16 + 2: the emulator's tests check it, the cross-backend comparison leaves it out.
    /// </summary>
    public static byte[] Build(out Addresses addresses, bool withIdtIndexErrorCode = false)
    {
        addresses = new Addresses();
        var image = new byte[End - Base];
        var resume = new List<(ulong Fault, ulong Resume)>();

        // User code first: the kernel's fault table needs its addresses.
        (byte[] user, Dictionary<string, ulong> userLabels) = AssembleUser(withIdtIndexErrorCode);
        user.CopyTo(image, (int)(UserText - Base));
        foreach ((string name, ulong at) in userLabels)
        {
            addresses.User[name] = at;
        }
        foreach (string f in new[] { "u_read_kernel", "u_write_ro", "u_hlt", "u_out", "u_cli", "u_int81", "u_cr0", "u_rdmsr", "u_nx" })
        {
            if (f == "u_int81" && !withIdtIndexErrorCode)
            {
                continue;
            }
            resume.Add((userLabels[f == "u_nx" ? "u_nx_target" : f], userLabels[f + "_done"]));
        }

        (byte[] kernel, Dictionary<string, ulong> kernelLabels, ulong[] stubs) = AssembleKernel();
        if (kernel.Length > (int)(UserText - Base))
        {
            throw new InvalidOperationException($"the kernel code ({kernel.Length} bytes) overlaps the user page");
        }
        kernel.CopyTo(image, 0);
        foreach ((string name, ulong at) in kernelLabels)
        {
            addresses.Kernel[name] = at;
        }
        foreach (string f in new[] { "k_de", "k_ud", "k_gp", "k_pf_read", "k_pf_write", "k_ltr", "k_nm_x87", "k_nm_sse", "k_mf", "k_pf_fld", "k_pf_fxsave" })
        {
            resume.Add((kernelLabels[f], kernelLabels[f + "_done"]));
        }
        resume.Add((NxPage, kernelLabels["k_nx_done"]));

        void Q(ulong at, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan((int)(at - Base)), v);
        Span<byte> m = image;

        // Resume table: (faulting RIP, where the handler continues), zero-terminated.
        for (int i = 0; i < resume.Count; i++)
        {
            Q(ResumeTable + (ulong)(16 * i), resume[i].Fault);
            Q(ResumeTable + (ulong)(16 * i) + 8, resume[i].Resume);
        }
        // Per-CPU area (KERNEL_GS_BASE): [0] user rsp while in a syscall, [8] the syscall stack.
        Q(PerCpu + 8, KernelStackTop - 0x800);

        // GDT: null, kernel code, kernel data, user data, user code, 64-bit TSS (available).
        Q(Gdt + 0x08, 0x00AF_9A00_0000_FFFF);
        Q(Gdt + 0x10, 0x00CF_9200_0000_FFFF);
        Q(Gdt + 0x18, 0x00CF_F200_0000_FFFF);
        Q(Gdt + 0x20, 0x00AF_FA00_0000_FFFF);
        Q(Gdt + 0x28, 0x67 | ((Tss & 0xFF_FFFF) << 16) | (0x89UL << 40) | ((Tss >> 24) & 0xFF) << 56);
        Q(Gdt + 0x30, Tss >> 32);
        // Descriptor-table pseudo-descriptors right after the GDT entries (limit, base).
        BinaryPrimitives.WriteUInt16LittleEndian(m[(int)(Gdt + 0x40 - Base)..], 0x37);
        Q(Gdt + 0x42, Gdt);
        BinaryPrimitives.WriteUInt16LittleEndian(m[(int)(Gdt + 0x50 - Base)..], 0xFFF);
        Q(Gdt + 0x52, Idt);
        // TSS: RSP0, IST1, no I/O bitmap (its offset lies past the limit).
        Q(Tss + 4, KernelStackTop);
        Q(Tss + 36, IstStackTop);
        BinaryPrimitives.WriteUInt16LittleEndian(m[(int)(Tss + 102 - Base)..], 0x68);

        // IDT: every vector through its stub, interrupt gates, #DF on IST1, INT3 and INT 0x80 callable from CPL 3.
        for (int v = 0; v < 256; v++)
        {
            ulong target = stubs[v];
            ulong dpl = v is 3 or 0x80 ? 3UL : 0UL;
            ulong ist = v == 8 ? 1UL : 0UL;
            ulong low = (target & 0xFFFF) | ((ulong)KernelCs << 16) | (ist << 32) | ((0xEUL | (dpl << 5) | 0x80) << 40) | ((target >> 16) & 0xFFFF) << 48;
            Q(Idt + (ulong)(16 * v), low);
            Q(Idt + (ulong)(16 * v) + 8, target >> 32);
        }

        // Page tables: 4 KiB pages for the first 2 MiB, nothing above.
        const ulong P = 1, RW = 2, US = 4, NX = 1UL << 63;
        Q(Pml4, Pdpt | P | RW | US);
        Q(Pdpt, Pd | P | RW | US);
        Q(Pd, Pt | P | RW | US);
        for (ulong page = 1; page < 512; page++)
        {
            ulong at = page << 12;
            ulong flags = at switch
            {
                < Base => P | RW,                                        // host structures, the hypercall page
                < UserText => P | RW,                                    // kernel text
                < UserData => P | US,                                    // user text: read-only, executable
                < UserReadOnly => P | RW | US | NX,                      // user data
                < KernelData => P | US | NX,                             // user read-only data
                >= UserStackTop - 0x1000 and < UserStackTop => P | RW | US | NX,
                Unmapped => 0,
                _ => P | RW | NX,                                        // kernel data, tables, stacks, NX page
            };
            Q(Pt + (8 * page), flags == 0 ? 0 : at | flags);
        }
        m[(int)(NxPage - Base)] = 0xC3; // a ret that must never run

        return GuestElf.Wrap(image, Base);
    }

    private static (byte[] Code, Dictionary<string, ulong> Labels, ulong[] Stubs) AssembleKernel()
    {
        var a = new Assembler(64);
        var named = new Dictionary<string, Label>();
        var here = new NamedLabels(a, named);
        void Here(string name) => here.Mark(name);
        Label common = a.CreateLabel(), syscallEntry = a.CreateLabel(), afterUser = a.CreateLabel(), printLog = a.CreateLabel();
        Label dfRecovery = a.CreateLabel();

        // --- entry: own GDT, reload CS with a far return, data segments, TR, IDT, page tables, MSRs
        a.cli();
        a.mov(rsp, (long)KernelStackTop);
        a.lgdt(__[(long)(Gdt + 0x40)]);
        Label reloaded = a.CreateLabel();
        a.push(KernelCs);
        a.lea(rax, __[reloaded]);
        a.push(rax);
        a.AddInstruction(Instruction.Create(Code.Retfq));
        a.Label(ref reloaded);
        a.mov(eax, KernelDs);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.xor(eax, eax);
        a.mov(fs, ax);
        a.mov(gs, ax);
        a.mov(eax, TssSelector);
        a.ltr(ax);
        a.lidt(__[(long)(Gdt + 0x50)]);
        a.mov(rax, (long)Pml4);
        a.mov(cr3, rax);
        WriteMsr(a, 0xC000_0080, null, orEax: (1 << 0) | (1 << 11));     // EFER.SCE | EFER.NXE
        WriteMsr(a, 0xC000_0081, ((ulong)0x10 << 48) | ((ulong)KernelCs << 32)); // STAR: user base 0x10, kernel CS 0x08
        a.lea(rax, __[syscallEntry]);
        a.mov(rdx, rax);
        a.shr(rdx, 32);
        a.mov(ecx, 0xC000_0082);                                          // LSTAR
        a.wrmsr();
        WriteMsr(a, 0xC000_0084, 0x4_7700);                               // SFMASK: TF IF DF IOPL AC NT
        WriteMsr(a, 0xC000_0102, PerCpu);                                 // KERNEL_GS_BASE

        // --- faults at CPL 0 (the handler resumes at <name>_done through the resume table)
        Here("k_de_setup");
        a.xor(ecx, ecx);
        a.mov(eax, 1);
        a.xor(edx, edx);
        here.Faulting("k_de", () => a.div(ecx));
        here.Faulting("k_ud", () => a.ud2());
        Here("k_int3");
        a.int3();
        Here("k_int3_after");
        a.nop();
        a.mov(rax, unchecked((long)0x8000_0000_0000_0000UL));
        here.Faulting("k_gp", () => a.mov(rax, __qword_ptr[rax]));
        here.Faulting("k_pf_read", () => a.mov(rax, __qword_ptr[(long)Unmapped]));
        here.Faulting("k_pf_write", () => a.mov(__byte_ptr[(long)UserReadOnly], 1));
        a.mov(rax, (long)NxPage);
        Here("k_nx_call");
        a.call(rax);
        Here("k_nx_done");
        a.add(rsp, 8); // the call's return address
        Here("k_int80");
        a.@int(0x80);
        Here("k_int80_after");
        a.nop();
        a.mov(eax, KernelCs);
        here.Faulting("k_ltr", () => a.ltr(ax));   // a code segment is no TSS: #GP(selector)

        // --- the FPU under CR0 and the page tables: lazy FPU switching (CR0.TS: #NM for x87 and SSE), an unmasked
        // x87 exception left pending until the next waiting instruction (#MF), FP operands that cross into an
        // unmapped page (#PF with CR2 at that page, W for the FXSAVE store)
        a.mov(rax, cr0);
        a.or(rax, 8);
        a.mov(cr0, rax);
        here.Faulting("k_nm_x87", () => a.fld1());
        here.Faulting("k_nm_sse", () => a.addsd(xmm0, xmm1));
        a.clts();
        a.fninit();
        a.mov(__word_ptr[(long)FpuScratch], 0x37B);                 // unmask divide by zero
        a.fldcw(__word_ptr[(long)FpuScratch]);
        a.fld1();
        a.fldz();
        a.fdivp(st1, st0);                                          // pending, no fault yet
        here.Faulting("k_mf", () => a.wait());
        a.fninit();
        here.Faulting("k_pf_fld", () => a.fld(__tword_ptr[(long)(Unmapped - 4)]));
        here.Faulting("k_pf_fxsave", () => a.fxsave64(__[(long)(Unmapped - 0x100)]));

        // --- a timer interrupt held pending while IF=0: poll wakes up, STI delivers it after the next instruction
        Hypercall(a, HypercallCode.ClockMonotonic);
        a.lea(rdi, __[rax + 1_000_000]);
        a.mov(esi, TimerVector);
        Hypercall(a, HypercallCode.TimerSet, loadArguments: false);
        Hypercall(a, HypercallCode.ClockMonotonic);
        a.mov(rdi, 10_000_000_000);
        a.add(rdi, rax);
        a.xor(esi, esi);
        Hypercall(a, HypercallCode.Poll, loadArguments: false);
        a.sti();
        a.nop();
        a.cli();

        // --- a double fault: #PF on a push to an unmapped stack, and again while delivering it: #DF on IST1
        a.mov(__qword_ptr[(long)SavedRsp], rsp);
        a.mov(rsp, (long)(Unmapped + 0x800));
        Here("k_df_push");
        a.push(rax);
        a.Label(ref dfRecovery);
        a.mov(rsp, __qword_ptr[(long)SavedRsp]);

        // --- user mode: IRETQ to CPL 3 with IF=1
        a.push(UserDs);
        a.mov(rax, (long)UserStackTop);
        a.push(rax);
        a.push(0x202);
        a.push(UserCs);
        a.mov(rax, (long)UserText);
        a.push(rax);
        a.iretq();

        a.Label(ref afterUser);
        // Back from user mode (SYSCALL 99): a summary record, print the log, exit 0.
        a.mov(rax, __qword_ptr[(long)LogCount]);
        a.imul(rdx, rax, RecordBytes);
        a.mov(rbx, (long)LogStart);
        a.add(rdx, rbx);
        a.mov(__qword_ptr[rdx], SummaryEvent);
        a.mov(rcx, __qword_ptr[(long)SyscallCount]);
        a.mov(__qword_ptr[rdx + 8], rcx);
        a.mov(rcx, __qword_ptr[(long)SyscallResult]);
        a.mov(__qword_ptr[rdx + 16], rcx);
        a.mov(rcx, __qword_ptr[(long)Ticks]);
        a.mov(__qword_ptr[rdx + 24], rcx);
        a.mov(rcx, __qword_ptr[(long)PerCpu]);  // the user rsp the last SYSCALL saved through GS
        a.mov(__qword_ptr[rdx + 32], rcx);
        a.inc(rax);
        a.mov(__qword_ptr[(long)LogCount], rax);
        a.call(printLog);
        a.xor(edi, edi);
        Hypercall(a, HypercallCode.Exit, loadArguments: false);
        a.hlt();

        // --- print the log: 5 hex words per record, one record per line
        a.Label(ref printLog);
        {
            Label record = a.CreateLabel(), word = a.CreateLabel(), nibble = a.CreateLabel(), digit = a.CreateLabel();
            a.mov(rsi, (long)LogStart);
            a.mov(rdi, (long)OutBuffer);
            a.mov(r8, __qword_ptr[(long)LogCount]);
            a.Label(ref record);
            a.mov(r9d, 5);
            a.Label(ref word);
            a.mov(rax, __qword_ptr[rsi]);
            a.mov(ecx, 16);
            a.Label(ref nibble);
            a.rol(rax, 4);
            a.mov(ebx, eax);
            a.and(ebx, 0xF);
            a.add(ebx, '0');
            a.cmp(ebx, '9');
            a.jbe(digit);
            a.add(ebx, 'a' - '9' - 1);
            a.Label(ref digit);
            a.mov(__byte_ptr[rdi], bl);
            a.inc(rdi);
            a.dec(ecx);
            a.jnz(nibble);
            a.mov(__byte_ptr[rdi], (byte)' ');
            a.inc(rdi);
            a.add(rsi, 8);
            a.dec(r9d);
            a.jnz(word);
            a.mov(__byte_ptr[rdi - 1], (byte)'\n');
            a.dec(r8);
            a.jnz(record);
            a.mov(rsi, rdi);
            a.mov(rdi, (long)OutBuffer);
            a.sub(rsi, rdi);
            Hypercall(a, HypercallCode.DebugWrite, loadArguments: false);
            a.ret();
        }

        // --- SYSCALL entry: SWAPGS, per-CPU data through GS, log, dispatch on rax, SYSRETQ
        a.Label(ref syscallEntry);
        a.swapgs();
        a.mov(__qword_ptr.gs[0], rsp);
        a.mov(rsp, __qword_ptr.gs[8]);
        a.push(rcx);
        a.push(r11);
        a.push(rax);
        a.mov(rbx, __qword_ptr[(long)LogCount]);
        a.imul(rdx, rbx, RecordBytes);
        a.mov(rsi, (long)LogStart);
        a.add(rdx, rsi);
        a.mov(__qword_ptr[rdx], SyscallEvent);
        a.mov(__qword_ptr[rdx + 8], rax);
        a.mov(__qword_ptr[rdx + 16], rcx);
        a.mov(eax, ss);
        a.shl(eax, 16);
        a.mov(esi, cs);
        a.or(eax, esi);
        a.mov(__qword_ptr[rdx + 24], rax);
        a.mov(__qword_ptr[rdx + 32], r11); // the user's RFLAGS as SYSCALL saved them
        a.inc(rbx);
        a.mov(__qword_ptr[(long)LogCount], rbx);
        a.pop(rax);
        Label notExit = a.CreateLabel(), notTimer = a.CreateLabel(), back = a.CreateLabel();
        a.cmp(eax, 99);
        a.jne(notExit);
        a.mov(rsp, (long)KernelStackTop);
        a.swapgs();
        a.jmp(afterUser);
        a.Label(ref notExit);
        a.cmp(eax, 50);
        a.jne(notTimer);
        Hypercall(a, HypercallCode.ClockMonotonic);
        a.lea(rdi, __[rax + 1_000_000]);
        a.mov(esi, TimerVector);
        Hypercall(a, HypercallCode.TimerSet, loadArguments: false);
        a.xor(eax, eax);
        a.jmp(back);
        a.Label(ref notTimer);
        a.inc(__qword_ptr[(long)SyscallCount]);
        a.add(rax, 1000);
        a.Label(ref back);
        a.pop(r11);
        a.pop(rcx);
        a.mov(rsp, __qword_ptr.gs[0]);
        a.swapgs();
        a.sysretq();

        // --- the common exception handler: log, resume through the table, clear TF after a #DB
        a.Label(ref common);
        a.push(rax);
        a.push(rbx);
        a.push(rcx);
        a.push(rdx);
        // frame: vector +32, error +40, rip +48, cs +56, rflags +64, rsp +72, ss +80
        a.mov(rbx, (long)KernelData);
        a.mov(rcx, __qword_ptr[rbx]);
        a.cmp(ecx, MaxRecords - 1);
        Label full = a.CreateLabel();
        a.jae(full);
        a.imul(rdx, rcx, RecordBytes);
        a.lea(rdx, __[rbx + rdx + (int)(LogStart - KernelData)]);
        a.mov(rax, __qword_ptr[rsp + 32]);
        a.mov(__qword_ptr[rdx], rax);
        a.mov(rax, __qword_ptr[rsp + 40]);
        a.mov(__qword_ptr[rdx + 8], rax);
        a.mov(rax, __qword_ptr[rsp + 48]);
        // (rsp + 32 holds the frame's vector.)
        void WhenVectorIs(int first, int second, Action then)
        {
            Label match = a.CreateLabel(), skip = a.CreateLabel();
            a.cmp(__qword_ptr[rsp + 32], first);
            a.je(match);
            a.cmp(__qword_ptr[rsp + 32], second);
            a.jne(skip);
            a.Label(ref match);
            then();
            a.Label(ref skip);
        }
        WhenVectorIs(TimerVector, 8, () => a.xor(eax, eax)); // an interrupt's RIP depends on timing; a #DF's is undefined
        a.mov(__qword_ptr[rdx + 16], rax);
        a.mov(rax, __qword_ptr[rsp + 80]);
        a.shl(rax, 16);
        a.or(rax, __qword_ptr[rsp + 56]);
        a.mov(__qword_ptr[rdx + 24], rax);
        a.xor(eax, eax);
        WhenVectorIs(14, 8, () => a.mov(rax, cr2)); // a #PF's (and a #DF's) faulting address
        a.mov(__qword_ptr[rdx + 32], rax);
        a.inc(rcx);
        a.mov(__qword_ptr[rbx], rcx);
        a.Label(ref full);
        // dispatch
        Label notDf = a.CreateLabel(), notTimerIrq = a.CreateLabel(), notDb = a.CreateLabel(), look = a.CreateLabel(), found = a.CreateLabel(), done = a.CreateLabel();
        a.cmp(__qword_ptr[rsp + 32], 8);
        a.jne(notDf);
        a.mov(rsp, (long)KernelStackTop);
        a.jmp(dfRecovery);
        a.Label(ref notDf);
        a.cmp(__qword_ptr[rsp + 32], TimerVector);
        a.jne(notTimerIrq);
        a.inc(__qword_ptr[(long)Ticks]);
        a.mov(__qword_ptr[(long)TimerFlag], 1);
        a.jmp(done);
        a.Label(ref notTimerIrq);
        a.cmp(__qword_ptr[rsp + 32], 1);
        a.jne(notDb);
        a.and(__qword_ptr[rsp + 64], ~0x100);
        a.jmp(done);
        a.Label(ref notDb);
        a.mov(rax, __qword_ptr[rsp + 48]);
        a.mov(rdx, (long)ResumeTable);
        a.Label(ref look);
        a.mov(rcx, __qword_ptr[rdx]);
        a.test(rcx, rcx);
        a.jz(done);
        a.cmp(rcx, rax);
        a.je(found);
        a.add(rdx, 16);
        a.jmp(look);
        a.Label(ref found);
        a.mov(rcx, __qword_ptr[rdx + 8]);
        a.mov(__qword_ptr[rsp + 48], rcx);
        a.Label(ref done);
        a.pop(rdx);
        a.pop(rcx);
        a.pop(rbx);
        a.pop(rax);
        a.add(rsp, 16);
        a.iretq();

        // --- one stub per vector: a dummy error code where the CPU pushes none, the vector, then the common code
        var stubLabels = new Label[256];
        for (int v = 0; v < 256; v++)
        {
            stubLabels[v] = a.CreateLabel();
            a.Label(ref stubLabels[v]);
            if (v is not (8 or 10 or 11 or 12 or 13 or 14 or 17))
            {
                a.push(-1);
            }
            a.push(v);
            a.jmp(common);
        }

        using var ms = new MemoryStream();
        AssemblerResult result = a.Assemble(new StreamCodeWriter(ms), Base, BlockEncoderOptions.ReturnNewInstructionOffsets);
        var labels = named.ToDictionary(p => p.Key, p => { Label l = p.Value; return result.GetLabelRIP(l); });
        ulong[] stubs = stubLabels.Select(l => result.GetLabelRIP(l)).ToArray();
        return (ms.ToArray(), labels, stubs);
    }

    private static (byte[] Code, Dictionary<string, ulong> Labels) AssembleUser(bool withIdtIndexErrorCode)
    {
        var a = new Assembler(64);
        var named = new Dictionary<string, Label>();
        var here = new NamedLabels(a, named);
        void Here(string name) => here.Mark(name);
        Here("u_start");
        a.mov(eax, 7);
        Here("u_syscall");
        a.syscall();
        a.mov(__qword_ptr[(long)SyscallResult], rax);
        a.@int(0x80);
        Here("u_int80_after");
        a.nop();
        a.int3();
        Here("u_int3_after");
        a.nop();
        here.Faulting("u_read_kernel", () => a.mov(rax, __qword_ptr[(long)KernelData]));
        here.Faulting("u_write_ro", () => a.mov(__byte_ptr[(long)UserReadOnly], 1));
        here.Faulting("u_hlt", () => a.hlt());
        here.Faulting("u_out", () => a.@out(0x80, al));
        here.Faulting("u_cli", () => a.cli());
        if (withIdtIndexErrorCode)
        {
            here.Faulting("u_int81", () => a.@int(0x81));
        }
        here.Faulting("u_cr0", () => a.mov(rax, cr0));
        a.mov(ecx, 0xC000_0080);
        here.Faulting("u_rdmsr", () => a.rdmsr());
        a.mov(rax, (long)UserData);
        here.Faulting("u_nx", () => a.call(rax));
        a.add(rsp, 8);
        // single step: TF set by POPF traps after the instruction that follows it
        a.pushfq();
        a.or(__qword_ptr[rsp], 0x100);
        a.popfq();
        Here("u_step");
        a.nop();
        Here("u_step_after");
        a.nop();
        // a timer interrupt at CPL 3 (the kernel-mode tick set the flag too)
        a.mov(__qword_ptr[(long)TimerFlag], 0);
        a.mov(eax, 50);
        a.syscall();
        Label spin = a.CreateLabel();
        a.Label(ref spin);
        a.pause();
        a.cmp(__qword_ptr[(long)TimerFlag], 0);
        a.je(spin);
        a.mov(eax, 99);
        a.syscall();
        a.ud2();

        using var ms = new MemoryStream();
        AssemblerResult result = a.Assemble(new StreamCodeWriter(ms), UserText, BlockEncoderOptions.ReturnNewInstructionOffsets);
        var labels = named.ToDictionary(p => p.Key, p => { Label l = p.Value; return result.GetLabelRIP(l); });
        labels["u_nx_target"] = UserData;
        return (ms.ToArray(), labels);
    }

    /// <summary>Names the next instruction; several names for one instruction share its label (Iced allows one).</summary>
    private sealed class NamedLabels(Assembler a, Dictionary<string, Label> named)
    {
        private int _count = -1;
        private Label _last;

        public void Mark(string name)
        {
            if (a.Instructions.Count == _count)
            {
                named[name] = _last;
                return;
            }
            _last = a.CreateLabel(name);
            a.Label(ref _last);
            _count = a.Instructions.Count;
            named[name] = _last;
        }

        /// <summary>
        /// Emits an instruction that faults, marked <paramref name="name"/>, and marks <c>name_done</c> after it: where
        /// the fault handler resumes (the resume table pairs the two).
        /// </summary>
        public void Faulting(string name, Action instruction)
        {
            Mark(name);
            instruction();
            Mark(name + "_done");
        }
    }

    private static void WriteMsr(Assembler a, uint msr, ulong? value, uint orEax = 0)
    {
        a.mov(ecx, msr);
        if (value is ulong v)
        {
            a.mov(eax, (uint)v);
            a.mov(edx, (uint)(v >> 32));
        }
        else
        {
            a.rdmsr();
            a.or(eax, orEax);
        }
        a.wrmsr();
    }

    /// <summary>Calls the hypercall page (clobbers rax and the argument registers).</summary>
    private static void Hypercall(Assembler a, HypercallCode code, bool loadArguments = true)
    {
        _ = loadArguments;
        a.mov(eax, (uint)code);
        a.mov(r11, (long)HypercallEntry);
        a.call(r11);
    }

    /// <summary>Parses the printed log (one record per line, five hex words).</summary>
    public static List<Event> ParseLog(string output)
    {
        var events = new List<Event>();
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] w = line.Split(' ');
            if (w.Length != 5)
            {
                continue;
            }
            ulong[] v = w.Select(x => ulong.Parse(x, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            events.Add(new Event(v[0], v[1], v[2], v[3] & 0xFFFF, (v[3] >> 16) & 0xFFFF, v[4]));
        }
        return events;
    }
}

/// <summary>Paravirt ELF images for hand-assembled test guests.</summary>
internal static class GuestElf
{
    /// <summary>Wraps a flat image in a Paravirt ELF: one RWX PT_LOAD at <paramref name="address"/> (also the entry) and the ABI note.</summary>
    public static byte[] Wrap(byte[] image, ulong address)
    {
        const int phoff = 64, phnum = 2, noteOff = phoff + (56 * phnum), loadOff = 0x1000;
        byte[] note = new byte[12 + 12 + 8];
        BinaryPrimitives.WriteUInt32LittleEndian(note, 9);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(4), 8);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(8), ElfNote.TypeAbi);
        "Paravirt\0"u8.CopyTo(note.AsSpan(12));
        BinaryPrimitives.WriteUInt16LittleEndian(note.AsSpan(24), AbiVersion.Current.Major);
        BinaryPrimitives.WriteUInt16LittleEndian(note.AsSpan(26), AbiVersion.Current.Minor);
        byte[] f = new byte[loadOff + image.Length];
        Span<byte> s = f;
        "\x7F"u8.CopyTo(s);
        "ELF"u8.CopyTo(s[1..]);
        s[4] = 2; // 64-bit
        s[5] = 1; // little endian
        s[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(s[16..], 2);   // ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(s[18..], 62);  // x86-64
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], address);
        BinaryPrimitives.WriteUInt64LittleEndian(s[32..], phoff);
        BinaryPrimitives.WriteUInt16LittleEndian(s[52..], 64);
        BinaryPrimitives.WriteUInt16LittleEndian(s[54..], 56);
        BinaryPrimitives.WriteUInt16LittleEndian(s[56..], phnum);
        void Phdr(int i, uint type, uint flags, ulong offset, ulong vaddr, ulong size, ulong align)
        {
            Span<byte> p = f.AsSpan(phoff + (56 * i));
            BinaryPrimitives.WriteUInt32LittleEndian(p, type);
            BinaryPrimitives.WriteUInt32LittleEndian(p[4..], flags);
            BinaryPrimitives.WriteUInt64LittleEndian(p[8..], offset);
            BinaryPrimitives.WriteUInt64LittleEndian(p[16..], vaddr);
            BinaryPrimitives.WriteUInt64LittleEndian(p[24..], vaddr);
            BinaryPrimitives.WriteUInt64LittleEndian(p[32..], size);
            BinaryPrimitives.WriteUInt64LittleEndian(p[40..], size);
            BinaryPrimitives.WriteUInt64LittleEndian(p[48..], align);
        }
        Phdr(0, 1, 7, loadOff, address, (ulong)image.Length, 0x1000);
        Phdr(1, 4, 4, noteOff, 0, (ulong)note.Length, 4);
        note.CopyTo(s[noteOff..]);
        image.CopyTo(s[loadOff..]);
        return f;
    }
}

/// <summary>
/// A guest that reads code from disk over code it already ran, then runs it: it writes <c>mov eax, 1; ret</c> into
/// a buffer and calls it, reads sector 0 of block device 0 (which holds <c>mov eax, 2; ret</c>) into the same buffer
/// through the block ring, calls it again and exits with what it returned. On KVM the status is 2; an emulator that
/// keeps decoded code across host writes exits with 1.
/// </summary>
internal static class CodeFromDiskGuest
{
    public const ulong Base = EntryConvention.ImageMinAddress, Ring = Base + 0x1000, Code = Base + 0x2000, End = Base + 0x3000;

    /// <summary>The sector the disk must hold: <c>mov eax, 2; ret</c>, zero-padded.</summary>
    public static byte[] Sector()
    {
        byte[] sector = new byte[512];
        new byte[] { 0xB8, 2, 0, 0, 0, 0xC3 }.CopyTo(sector, 0);
        return sector;
    }

    /// <summary>Writes a 1 MiB disk image holding <see cref="Sector"/> at sector 0 to a new temporary file (the caller deletes it) and returns its path.</summary>
    public static string WriteDisk()
    {
        string disk = Path.Combine(Path.GetTempPath(), $"paravirt-code-{Guid.NewGuid():N}.img");
        byte[] contents = new byte[1 << 20];
        Sector().CopyTo(contents, 0);
        File.WriteAllBytes(disk, contents);
        return disk;
    }

    public static byte[] Build()
    {
        var a = new Assembler(64);
        ulong hypercall = GuestLayout.HypercallPage + HypercallPage.EntryOffset;
        void Hypercall(HypercallCode code)
        {
            a.mov(eax, (uint)code);
            a.mov(r11, (long)hypercall);
            a.call(r11);
        }
        Label wait = a.CreateLabel(), done = a.CreateLabel(), fail = a.CreateLabel();
        // mov eax, 1; ret: written by the guest, then run (decoded, and translated after enough calls)
        a.mov(rbx, (long)Code);
        a.mov(__dword_ptr[rbx], 0x0000_01B8);
        a.mov(__word_ptr[rbx + 4], 0xC300);
        a.mov(r13d, 40);
        Label warm = a.CreateLabel();
        a.Label(ref warm);
        a.call(rbx);
        a.dec(r13d);
        a.jnz(warm);
        a.mov(r14d, eax);                         // 1
        // attach the ring (one slot) to device 0
        a.mov(__dword_ptr[(long)(Ring + 12)], 1); // rsp_event: wake me at the first response
        a.xor(edi, edi);
        a.mov(rsi, (long)Ring);
        a.xor(edx, edx);
        Hypercall(HypercallCode.BlockAttach);
        a.test(rax, rax);
        a.js(fail);
        a.mov(r12, rax);                          // event port
        // request in slot 0: read sector 0 (512 bytes) into Code
        a.mov(__qword_ptr[(long)(Ring + 64)], 7);
        a.mov(__dword_ptr[(long)(Ring + 64 + 8)], (uint)BlockOperation.Read);
        a.mov(__qword_ptr[(long)(Ring + 64 + 16)], 0);
        a.mov(__qword_ptr[(long)(Ring + 64 + 24)], rbx);
        a.mov(__dword_ptr[(long)(Ring + 64 + 32)], 512);
        a.mov(__dword_ptr[(long)Ring], 1);        // req_prod
        a.mov(rdi, r12);
        Hypercall(HypercallCode.EventSend);
        a.Label(ref wait);
        a.cmp(__dword_ptr[(long)(Ring + 8)], 1);  // rsp_prod
        a.jae(done);
        Hypercall(HypercallCode.ClockMonotonic);
        a.mov(rdi, 1_000_000_000);
        a.add(rdi, rax);
        a.mov(ecx, r12d);
        a.mov(esi, 1);
        a.shl(rsi, cl);
        Hypercall(HypercallCode.Poll);
        a.jmp(wait);
        a.Label(ref done);
        a.cmp(__qword_ptr[(long)(Ring + 64 + 8)], 0); // response status
        a.jne(fail);
        a.call(rbx);                               // the code the disk put there
        a.imul(edi, r14d, 10);
        a.add(edi, eax);                           // 12 on a CPU that sees the new code
        Hypercall(HypercallCode.Exit);
        a.Label(ref fail);
        a.mov(edi, 99);
        Hypercall(HypercallCode.Exit);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), Base);
        byte[] image = new byte[End - Base];
        ms.ToArray().CopyTo(image, 0);
        return GuestElf.Wrap(image, Base);
    }
}

