using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Guest memory kept for the next VM (<see cref="GuestMemoryPool"/>) is zeroed wherever anyone wrote. Each test uses a
/// memory size no other test uses, so that tests running in parallel never take each other's mappings.
/// </summary>
public sealed class GuestMemoryPoolTests
{
    private static bool AllZero(GuestMemory memory) =>
        memory.TryGetReadOnlySpan(new GuestAddress(0), memory.Size, out ReadOnlySpan<byte> all) && all.IndexOfAnyExcept((byte)0) < 0;

    [Fact]
    public void A_new_vm_on_recycled_memory_sees_zeros_wherever_the_last_guest_or_host_wrote()
    {
        const ulong Size = EmuHarness.MemorySize + 0x3000;
        const ulong Data = 0x12_0000, Stack = 0x1F_0000;
        // Stores of every kind: plain and read-modify-write, a rep stosb over three pages, pushes, fxsave, cmpxchg, xchg, SSE.
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(rsp, Stack);
            a.mov(rax, 0x1122334455667788);
            a.mov(__qword_ptr[Data], rax);
            a.add(__dword_ptr[Data + 0x1008], 7);
            a.mov(rdi, Data + 0x2000);
            a.mov(ecx, 3 * 4096);
            a.mov(al, 0xAB);
            a.rep.stosb();
            a.push(rax);
            a.push(rax);
            a.fxsave(__[Data + 0x6000]);
            a.mov(rbx, 0x55);
            a.xor(eax, eax);
            a.cmpxchg(__qword_ptr[Data + 0x7000], rbx);
            a.xchg(__qword_ptr[Data + 0x8000], rbx);
            a.pcmpeqb(xmm0, xmm0);
            a.movdqu(__xmmword_ptr[Data + 0x9000], xmm0);
            a.hlt();
        });
        using (EmuGuest guest = EmuHarness.Create(code, memorySize: Size))
        {
            guest.Memory.Write(new GuestAddress(0x1A_0000), [1, 2, 3]);
            Assert.Equal(VcpuExitKind.Halt, guest.Vcpu.Run().Kind);
            Assert.Equal(0xABABABABUL, guest.Memory.Read<uint>(new GuestAddress(Data + 0x4000)));
            Assert.Equal(0x55UL, guest.Memory.Read<ulong>(new GuestAddress(Data + 0x8000)));
        }

        using var again = new GuestMemory(Size);
        Assert.True(again.Recycled, "the mapping was not kept");
        Assert.True(AllZero(again));
    }

    [Fact]
    public void Memory_whose_raw_host_address_was_handed_out_is_unmapped_not_kept()
    {
        const ulong Size = EmuHarness.MemorySize + 0x5000;
        using (var memory = new GuestMemory(Size))
        {
            unsafe
            {
                *(byte*)(memory.HostAddress + 0x1234) = 0x5A; // a writer that marks nothing (a hardware backend's guest)
            }
        }
        using var again = new GuestMemory(Size);
        Assert.False(again.Recycled);
        Assert.True(AllZero(again));
    }

    [Fact]
    public void Memory_with_more_pages_written_than_the_cap_is_unmapped_not_kept()
    {
        const ulong Size = (8UL << 20) + 0x7000;
        using (var memory = new GuestMemory(Size))
        {
            for (ulong page = 0; page <= GuestMemoryPool.MaxDirtyPages; page++)
            {
                memory.Write(new GuestAddress(page << 12), [0xEE]);
            }
        }
        using var again = new GuestMemory(Size);
        Assert.False(again.Recycled);
    }

    [Fact]
    public void Memory_whose_dirty_map_was_cleared_is_unmapped_not_kept()
    {
        const ulong Size = EmuHarness.MemorySize + 0x9000;
        using (var memory = new GuestMemory(Size))
        {
            memory.Write(new GuestAddress(0x3000), [0xEE]);
            memory.ClearDirtyPages(); // a snapshot: the page stays written but is no longer marked
        }
        using var again = new GuestMemory(Size);
        Assert.False(again.Recycled);
        Assert.True(AllZero(again));
    }
}
