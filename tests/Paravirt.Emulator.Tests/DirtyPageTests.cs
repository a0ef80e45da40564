using Iced.Intel;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Memory;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// What snapshots rely on in the emulator: every store path marks the dirty page map (interpreted, translated to IL,
/// bulk string stores), a restore's rewritten pages drop the blocks decoded from them, and a guard page traps stores.
/// </summary>
public sealed class DirtyPageTests
{
    private const ulong PageA = 0x15_0000, PageB = 0x16_3000;

    private static byte[] StoreLoop(int iterations) => EmuHarness.Assemble(a =>
    {
        Label loop = a.CreateLabel();
        a.mov(ecx, iterations);
        a.mov(rbx, PageA);
        a.Label(ref loop);
        a.mov(__qword_ptr[rbx + 8], rcx);   // a 64-bit store (translated natively once the block is hot)
        a.mov(__dword_ptr[rbx + 0x13000 + 16], ecx);
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
    });

    [Fact]
    public void Interpreted_and_translated_stores_mark_their_pages_and_nothing_else()
    {
        using EmuGuest guest = EmuHarness.Create(StoreLoop(200));
        var (memory, vm, vcpu) = guest;
        memory.DirtyPageMap.Clear(); // the harness wrote the code
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal([(int)(PageA >> 12), (int)(PageB >> 12)], Marked(memory));

        // Run the same (now translated) loop again: the IL path marks the map too.
        memory.DirtyPageMap.Clear();
        vcpu.SetRegisters(vcpu.GetRegisters() with { Rip = EmuHarness.CodeAddress });
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal([(int)(PageA >> 12), (int)(PageB >> 12)], Marked(memory));
    }

    [Fact]
    public void Rep_stos_and_rep_movs_mark_every_page_they_write()
    {
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
        memory.DirtyPageMap.Clear();
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        int a0 = (int)(PageA >> 12), b0 = (int)(PageB >> 12);
        Assert.Equal([a0, a0 + 1, a0 + 2, b0, b0 + 1], Marked(memory));
    }

    [Fact]
    public void Rewritten_pages_drop_the_code_decoded_from_them()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 1);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        var (memory, vm, vcpu) = guest;
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal(1UL, vcpu.GetRegisters().Rax);

        memory.DirtyPageMap.Clear();
        memory.Write(new GuestAddress(EmuHarness.CodeAddress + 1), 2); // mov eax, 2 (what a restore does to a code page)
        vm.InvalidateGuestCode(memory.DirtyPageMap);
        vcpu.SetRegisters(vcpu.GetRegisters() with { Rip = EmuHarness.CodeAddress, Rax = 0 });
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal(2UL, vcpu.GetRegisters().Rax);
    }

    [Fact]
    public void A_store_into_a_guard_page_faults_with_its_address_and_a_load_does_not()
    {
        const ulong Guard = 0x18_0000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rbx, Guard);
            a.mov(rax, __qword_ptr[rbx + 8]);  // a load: not trapped
            a.mov(rsp, Guard + 4096);
            a.push(rax);                        // the first push below the "stack" hits the guard page
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
        Assert.Equal(Guard + 4096 - 8, exit.Address);
        Assert.Contains("stack overflow", exit.Detail, StringComparison.Ordinal);
    }

    private static int[] Marked(GuestMemory memory)
    {
        var pages = new List<int>();
        ReadOnlySpan<byte> map = memory.DirtyPageMap;
        for (int p = 0; p < map.Length; p++)
        {
            if (map[p] != 0 && (ulong)p << 12 != (EmuHarness.MemorySize - 4096))
            {
                pages.Add(p);
            }
        }
        return [.. pages];
    }
}
