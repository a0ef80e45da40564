using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// What snapshots rely on in the emulator, with paging: every guest store marks the PHYSICAL page it reaches in the
/// dirty page map (interpreted, translated to IL, bulk string stores) through its TLB's slow write path; clearing the
/// map (a snapshot or restore) revokes the TLB's write permissions so the next store marks again; a restore rewrites
/// exactly the physical pages that changed and drops the code decoded from them; a guard page traps every access.
/// </summary>
public sealed class DirtyPageTests
{
    private const ulong MemorySize = 4UL << 20;

    // The guest's own 4 KiB page tables (A and D preset in every entry, so a walk never writes them): identity
    // below 2 MiB, except two linear pages that alias one physical page and one page that the guest remaps.
    private const ulong Pml4 = 0x1C_0000, Pdpt = 0x1C_1000, Pd = 0x1C_2000, Pt = 0x1C_3000;
    private const ulong AliasA = 0x15_0000, AliasB = 0x17_0000, Shared = 0x16_0000;
    private const ulong Moving = 0x18_0000, FirstFrame = 0x19_0000, SecondFrame = 0x1A_0000;
    private const ulong P = 1, RW = 2, A = 0x20, D = 0x40, PS = 0x80;

    // Code, one snippet per page: each ends in hlt; the test sets rip to the next.
    private const ulong Enter = 0x10_0000, StoreAliases = 0x10_1000, Remap = 0x10_2000, StoreAliasB = 0x10_3000, RepMovs = 0x10_4000, Loop = 0x10_5000;

    private static int Page(ulong address) => (int)(address >> 12);

    /// <summary>A guest booted onto its tables, and the snapshots kept of its memory.</summary>
    private sealed class Booted(EmuGuest guest, SnapshotMemory snapshots, MemorySnapshot initial) : IDisposable
    {
        public GuestMemory Memory => guest.Memory;
        public IVcpu Vcpu => guest.Vcpu;
        public SnapshotMemory Snapshots => snapshots;

        public void Dispose()
        {
            initial.Dispose();
            snapshots.Dispose();
            guest.Dispose();
        }
    }

    /// <summary>
    /// Memory with the tables and every snippet written, and the emulator's VM and vCPU over it; the tables are loaded
    /// (CR3) and a first snapshot taken (which clears the dirty page map, as a sandbox's first snapshot does).
    /// </summary>
    private static Booted Boot(IReadOnlyList<ulong>? guardPages = null)
    {
        var memory = new GuestMemory(MemorySize);
        memory.WriteUInt64(new GuestAddress(Pml4), Pdpt | P | RW | A);
        memory.WriteUInt64(new GuestAddress(Pdpt), Pd | P | RW | A);
        memory.WriteUInt64(new GuestAddress(Pd), Pt | P | RW | A);
        memory.WriteUInt64(new GuestAddress(Pd + 8), (2UL << 20) | P | RW | A | D | PS); // 2-4 MiB: the stack
        for (ulong i = 0; i < 512; i++)
        {
            ulong linear = i << 12;
            ulong frame = linear switch
            {
                AliasA or AliasB => Shared,
                Moving => FirstFrame,
                _ => linear,
            };
            memory.WriteUInt64(new GuestAddress(Pt + i * 8), frame | P | RW | A | D);
        }
        Write(memory, Enter, a =>
        {
            a.mov(rax, Pml4);
            a.mov(cr3, rax);
            a.hlt();
        });
        Write(memory, StoreAliases, a =>
        {
            a.mov(rbx, AliasA);
            a.mov(__qword_ptr[rbx + 8], 0x1111);       // reaches Shared + 8
            a.mov(rbx, AliasB);
            a.mov(__qword_ptr[rbx + 16], 0x2222);      // reaches Shared + 16
            a.mov(rbx, Moving);
            a.mov(__qword_ptr[rbx], 0x3333);           // reaches FirstFrame
            a.hlt();
        });
        Write(memory, Remap, a =>
        {
            // The guest moves the Moving page to SecondFrame (a store into its own page table), then writes through it.
            a.mov(rbx, Pt + (Moving >> 12) * 8);
            a.mov(rax, SecondFrame | P | RW | A | D);
            a.mov(__qword_ptr[rbx], rax);
            a.mov(rbx, Moving);
            a.invlpg(__[rbx]);
            a.mov(__qword_ptr[rbx], 0x4444);           // reaches SecondFrame
            a.hlt();
        });
        Write(memory, StoreAliasB, a =>
        {
            a.mov(rbx, AliasB);
            a.mov(__qword_ptr[rbx + 24], 0x5555);
            a.mov(rbx, Moving);
            a.mov(__qword_ptr[rbx + 8], 0x6666);
            a.hlt();
        });
        Write(memory, RepMovs, a =>
        {
            a.mov(rsi, 0x12_0000);
            a.mov(rdi, AliasB + 0x800);
            a.mov(ecx, 0x400);
            a.rep.movsb();                              // one run inside AliasB: the bulk path through the TLB
            a.hlt();
        });
        Write(memory, Loop, a =>
        {
            Label top = a.CreateLabel();
            a.mov(ecx, 200);
            a.mov(rbx, AliasA);
            a.Label(ref top);
            a.mov(__qword_ptr[rbx + 0x100], rcx);      // hot: translated to IL after the threshold
            a.dec(ecx);
            a.jnz(top);
            a.hlt();
        });
        IVirtualMachine vm = new EmulatorBackend().CreateVirtualMachine(memory, new VirtualMachineOptions { TrackDirtyPages = true, GuardPages = guardPages ?? [] });
        IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(Enter, MemorySize, 0x2000));
        var guest = new EmuGuest(memory, vm, vcpu);
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        var snapshots = new SnapshotMemory(memory, null);
        return new Booted(guest, snapshots, snapshots.Take(tracked: true));
    }

    private static void Write(GuestMemory memory, ulong at, Action<Assembler> build) =>
        memory.Write(new GuestAddress(at), EmuHarness.Assemble(build, at));

    private static void RunAt(IVcpu vcpu, ulong rip)
    {
        vcpu.SetRegisters(vcpu.GetRegisters() with { Rip = rip });
        VcpuExit exit = vcpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Halt, $"{exit.Kind} at 0x{exit.Rip:x}: {exit.Detail}");
    }

    private static ulong Read(GuestMemory memory, ulong physical) => memory.Read<ulong>(new GuestAddress(physical));

    [Fact]
    public void Stores_through_two_aliases_mark_the_one_physical_page_they_reach_not_the_linear_pages()
    {
        using Booted guest = Boot();
        (GuestMemory memory, IVcpu vcpu, SnapshotMemory snapshots) = (guest.Memory, guest.Vcpu, guest.Snapshots);
        RunAt(vcpu, StoreAliases);
        Assert.Equal([Page(Shared), Page(FirstFrame)], Marked(memory));
        Assert.Equal(0x1111UL, Read(memory, Shared + 8));
        Assert.Equal(0x2222UL, Read(memory, Shared + 16));
    }

    [Fact]
    public void A_snapshot_clears_the_map_and_the_next_store_marks_again_even_where_the_TLB_had_write_permission()
    {
        using Booted guest = Boot();
        (GuestMemory memory, IVcpu vcpu, SnapshotMemory snapshots) = (guest.Memory, guest.Vcpu, guest.Snapshots);
        RunAt(vcpu, StoreAliases);                      // the TLB now lets stores to AliasB and Moving skip the walk
        using MemorySnapshot snapshot = snapshots.Take(tracked: true);
        Assert.Empty(Marked(memory));
        RunAt(vcpu, StoreAliasB);
        Assert.Equal([Page(Shared), Page(FirstFrame)], Marked(memory));
    }

    [Fact]
    public void A_restore_after_a_remap_rewrites_exactly_the_physical_pages_written_and_the_next_stores_mark_again()
    {
        using Booted guest = Boot();
        (GuestMemory memory, IVcpu vcpu, SnapshotMemory snapshots) = (guest.Memory, guest.Vcpu, guest.Snapshots);
        RunAt(vcpu, StoreAliases);
        using MemorySnapshot snapshot = snapshots.Take(tracked: true);
        VcpuState state = vcpu.GetState();

        RunAt(vcpu, Remap);
        RunAt(vcpu, StoreAliasB);                       // through AliasB (Shared) and the moved page (SecondFrame)
        Assert.Equal([Page(Shared), Page(SecondFrame), Page(Pt)], Marked(memory));
        Assert.Equal(0x4444UL, Read(memory, SecondFrame));
        Assert.Equal(0x6666UL, Read(memory, SecondFrame + 8));
        Assert.Equal(0x5555UL, Read(memory, Shared + 24));

        snapshots.Restore(snapshot, tracked: true);
        vcpu.SetState(state);
        Assert.Equal(3, snapshots.LastRestoredPages);
        Assert.Empty(Marked(memory));
        Assert.Equal(0UL, Read(memory, SecondFrame));
        Assert.Equal(0UL, Read(memory, SecondFrame + 8));
        Assert.Equal(0UL, Read(memory, Shared + 24));
        Assert.Equal(0x1111UL, Read(memory, Shared + 8));
        Assert.Equal(FirstFrame | P | RW | A | D, Read(memory, Pt + (Moving >> 12) * 8));

        // The restored tables map Moving to FirstFrame again: stores go there, and every page written is marked.
        RunAt(vcpu, StoreAliasB);
        Assert.Equal([Page(Shared), Page(FirstFrame)], Marked(memory));
        Assert.Equal(0x6666UL, Read(memory, FirstFrame + 8));
        Assert.Equal(0UL, Read(memory, SecondFrame + 8));
        Assert.Equal(0x5555UL, Read(memory, Shared + 24));
    }

    [Fact]
    public void A_restore_without_a_state_load_still_revokes_write_permission()
    {
        using Booted guest = Boot();
        (GuestMemory memory, IVcpu vcpu, SnapshotMemory snapshots) = (guest.Memory, guest.Vcpu, guest.Snapshots);
        RunAt(vcpu, StoreAliasB);                       // write permission for AliasB and Moving in the TLB
        using MemorySnapshot snapshot = snapshots.Take(tracked: true);
        RunAt(vcpu, StoreAliases);
        snapshots.Restore(snapshot, tracked: true);
        Assert.Equal(0x5555UL, Read(memory, Shared + 24));
        Assert.Equal(0UL, Read(memory, Shared + 8));
        Assert.Empty(Marked(memory));
        RunAt(vcpu, StoreAliasB);                       // no SetState: only the dirty map's observer dropped the TLB's write tags
        Assert.Equal([Page(Shared), Page(FirstFrame)], Marked(memory));
    }

    [Fact]
    public void Translated_stores_mark_the_physical_page_and_mark_again_after_a_snapshot()
    {
        using Booted guest = Boot();
        (GuestMemory memory, IVcpu vcpu, SnapshotMemory snapshots) = (guest.Memory, guest.Vcpu, guest.Snapshots);
        ((EmulatorVcpu)vcpu).JitThreshold = 2;
        RunAt(vcpu, Loop);
        Assert.True(((EmulatorVcpu)vcpu).BlocksCompiled > 0, "the loop was not translated");
        Assert.Equal([Page(Shared)], Marked(memory));
        Assert.Equal(1UL, Read(memory, Shared + 0x100));

        using MemorySnapshot snapshot = snapshots.Take(tracked: true);
        Assert.Empty(Marked(memory));
        memory.Write(new GuestAddress(Shared + 0x100), 0UL); // a host write marks too: clear again to see the guest's own marks
        memory.ClearDirtyPages();
        RunAt(vcpu, Loop);                              // the loop's translated block runs again: its first store bails to the slow path, which marks
        Assert.Equal([Page(Shared)], Marked(memory));
        Assert.Equal(1UL, Read(memory, Shared + 0x100));
    }

    [Fact]
    public void Rep_movs_through_an_alias_marks_the_physical_page()
    {
        using Booted guest = Boot();
        (GuestMemory memory, IVcpu vcpu, SnapshotMemory snapshots) = (guest.Memory, guest.Vcpu, guest.Snapshots);
        memory.Write(new GuestAddress(0x12_0000), Enumerable.Repeat((byte)0xAB, 0x400).ToArray());
        memory.ClearDirtyPages();
        RunAt(vcpu, RepMovs);
        Assert.Equal([Page(Shared)], Marked(memory));
        Assert.Equal(0xABABABABABABABABUL, Read(memory, Shared + 0x800));
    }

    [Fact]
    public void Rep_stos_and_rep_movs_mark_every_page_they_write()
    {
        const ulong PageA = 0x15_0000, PageB = 0x16_3000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rdi, PageA);
            a.mov(ecx, 3 * 4096);
            a.xor(eax, eax);
            a.rep.stosb();
            a.mov(rsi, PageA);
            a.mov(rdi, PageB);
            a.mov(ecx, 4096 + 1);
            a.rep.movsb();
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, _, vcpu) = guest;
        memory.ClearDirtyPages();
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        int a0 = Page(PageA), b0 = Page(PageB);
        Assert.Equal([a0, a0 + 1, a0 + 2, b0, b0 + 1], Marked(memory, ignoreTables: true));
    }

    [Fact]
    public void Rewritten_code_pages_drop_the_code_decoded_from_them()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 1);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.RunToHalt(code);
        var (memory, _, vcpu) = guest;
        Assert.Equal(1UL, vcpu.GetRegisters().Rax);

        // What a restore does to a code page: a host write through GuestMemory (observers hear of it).
        memory.Write(new GuestAddress(EmuHarness.CodeAddress + 1), 2); // mov eax, 2
        vcpu.SetRegisters(vcpu.GetRegisters() with { Rip = EmuHarness.CodeAddress, Rax = 0 });
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal(2UL, vcpu.GetRegisters().Rax);
    }

    [Theory]
    [InlineData("load")]
    [InlineData("store")]
    [InlineData("push")]
    public void Any_access_to_a_guard_page_ends_the_run_with_its_physical_address(string access)
    {
        const ulong Guard = 0x18_0000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rbx, Guard);
            a.mov(rsp, Guard + 4096);
            switch (access)
            {
                case "load": a.mov(rax, __qword_ptr[rbx + 8]); break;
                case "store": a.mov(__qword_ptr[rbx + 8], rbx); break;
                default: a.push(rax); break;            // the first push below the "stack" hits the guard page
            }
            a.hlt();
        });
        using var memory = new GuestMemory(EmuHarness.MemorySize);
        memory.Write(new GuestAddress(EmuHarness.CodeAddress), code);
        VcpuExit exit;
        using (IVirtualMachine vm = new EmulatorBackend().CreateVirtualMachine(memory, new VirtualMachineOptions { GuardPages = [Guard] }))
        using (IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(EmuHarness.CodeAddress, EmuHarness.MemorySize, 0x2000)))
        {
            exit = vcpu.Run();
        }
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Equal(access == "push" ? Guard + 4096 - 8 : Guard + 8, exit.Address);
        Assert.Contains("guard page 0x180000", exit.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_guard_page_is_trapped_at_its_physical_address_whatever_linear_address_maps_it()
    {
        // Moving (linear 0x180000) maps FirstFrame (0x190000): guarding FirstFrame traps the store through Moving.
        using Booted guest = Boot(guardPages: [FirstFrame]);
        IVcpu vcpu = guest.Vcpu;
        vcpu.SetRegisters(vcpu.GetRegisters() with { Rip = StoreAliases });
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        Assert.Equal(FirstFrame, exit.Address);
        Assert.Contains("at 0x180000", exit.Detail, StringComparison.Ordinal);
    }

    /// <summary>The marked pages, leaving out the pages of the host's identity tables (the emulator sets their accessed bits) when <paramref name="ignoreTables"/>.</summary>
    private static int[] Marked(GuestMemory memory, bool ignoreTables = false)
    {
        var pages = new List<int>();
        ReadOnlySpan<byte> map = memory.DirtyPageMap;
        for (int p = 0; p < map.Length; p++)
        {
            bool table = (ulong)p << 12 is >= GuestLayout.Pml4 and < GuestLayout.FirstPd + (GuestLayout.PdCount * 0x1000UL);
            if (map[p] != 0 && !(ignoreTables && table))
            {
                pages.Add(p);
            }
        }
        return [.. pages];
    }
}
