using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The vCPU's TLBs and direct-mapped block caches are kept for the next vCPU (<see cref="VcpuArrayPool"/>): what is
/// taken holds nothing of another VM, and a disposed vCPU refuses every entry point, so it can never write into arrays
/// that another VM now uses. Other tests take and return arrays in parallel: every check here holds whichever arrays
/// this test gets.
/// </summary>
public sealed unsafe class VcpuArrayPoolTests
{
    private const ulong DataAddress = 0x30_0000;

    /// <summary>Reads the qword at <see cref="DataAddress"/> into rax, stores it back (a write translation), halts.</summary>
    private static readonly byte[] ReadData = EmuHarness.Assemble(a =>
    {
        a.mov(rax, __qword_ptr[DataAddress]);
        a.mov(__qword_ptr[DataAddress], rax);
        a.hlt();
    });

    private static EmuGuest GuestWithData(ulong value, ulong memorySize = 4UL << 20)
    {
        EmuGuest guest = EmuHarness.Create(ReadData, memorySize: memorySize);
        guest.Memory.Write(new GuestAddress(DataAddress), value);
        return guest;
    }

    [Fact]
    public void ATakenTlb_HasEveryEntryInvalid_WhateverItsLastOwnerEntered()
    {
        var tlbs = new Tlb[VcpuArrayPool.MaxKept];
        for (int i = 0; i < tlbs.Length; i++)
        {
            tlbs[i] = VcpuArrayPool.TakeTlb();
            for (int e = 0; e < Tlb.Size; e++)
            {
                ulong linear = (ulong)e << 12;
                tlbs[i].Fill(linear, (byte*)0x1000_0000 + linear, linear, read: true, write: true, execute: true, global: true, largeShift: 0);
            }
        }
        foreach (Tlb tlb in tlbs)
        {
            VcpuArrayPool.Return(tlb);
        }

        for (int i = 0; i < tlbs.Length; i++)
        {
            Tlb taken = VcpuArrayPool.TakeTlb();
            for (int e = 0; e < Tlb.Size; e++)
            {
                TlbEntry entry = taken.Entries[e];
                Assert.True(entry.ReadTag == Tlb.Invalid && entry.WriteTag == Tlb.Invalid && entry.ExecTag == Tlb.Invalid,
                    $"TLB entry {e} still maps 0x{entry.ReadTag:x}");
            }
            tlbs[i] = taken;
        }
        foreach (Tlb tlb in tlbs)
        {
            VcpuArrayPool.Return(tlb);
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(40, 40)]
    [InlineData(Tlb.MaxTrackedFills, 7)] // the list full, with indexes repeated
    [InlineData(Tlb.MaxTrackedFills + 1, Tlb.MaxTrackedFills + 1)] // one past the list: every entry is rewritten
    [InlineData(3 * Tlb.MaxTrackedFills, 2 * Tlb.MaxTrackedFills)]
    public void AFlushedTlb_HasEveryEntryInvalid_HoweverManyFillsItTracked(int fills, int distinctPages)
    {
        var tlb = new Tlb();
        for (int round = 0; round < 2; round++) // the second round starts from a tracked flush
        {
            for (int k = 0; k < fills; k++)
            {
                ulong linear = (ulong)((k % distinctPages) + (round * 5000)) << 12;
                tlb.Fill(linear, (byte*)0x1000_0000 + linear, linear, read: true, write: true, execute: true, global: k % 2 == 0, largeShift: 0);
            }
            tlb.FlushAll();
            for (int e = 0; e < Tlb.Size; e++)
            {
                TlbEntry entry = tlb.Entries[e];
                Assert.True(entry.ReadTag == Tlb.Invalid && entry.WriteTag == Tlb.Invalid && entry.ExecTag == Tlb.Invalid,
                    $"round {round}: TLB entry {e} still maps 0x{entry.ReadTag:x} after {fills} fills");
            }
        }
    }

    [Fact]
    public void ATakenBlockCache_IsEmpty_WhateverItsLastOwnerHeld()
    {
        var block = new Block(0x1000, 0x1001, [], []);
        var caches = new Block?[VcpuArrayPool.MaxKept][];
        for (int i = 0; i < caches.Length; i++)
        {
            caches[i] = VcpuArrayPool.TakeBlockCache();
            Array.Fill(caches[i], block);
        }
        foreach (Block?[] cache in caches)
        {
            VcpuArrayPool.Return(cache);
        }

        for (int i = 0; i < caches.Length; i++)
        {
            caches[i] = VcpuArrayPool.TakeBlockCache();
            Assert.Equal(CodeCache.FastSize, caches[i].Length);
            Assert.All(caches[i], Assert.Null);
        }
        foreach (Block?[] cache in caches)
        {
            VcpuArrayPool.Return(cache);
        }
    }

    [Fact]
    public void ATakenBlockMap_IsEmpty_AndOneThatComesBackHoldingBlocksIsNotKept()
    {
        var maps = new BlockMap[VcpuArrayPool.MaxKept];
        for (int i = 0; i < maps.Length; i++)
        {
            maps[i] = VcpuArrayPool.TakeBlockMap();
            for (ulong k = 0; k < 100; k++)
            {
                maps[i].Set(new Block(k << 12, (k << 12) + 1, [], [], k << 12));
            }
        }
        // Returned holding blocks: refused. (Other tests return maps in parallel, so the check is on what comes back.)
        foreach (BlockMap map in maps)
        {
            VcpuArrayPool.Return(map);
        }
        for (int i = 0; i < maps.Length; i++)
        {
            BlockMap taken = VcpuArrayPool.TakeBlockMap();
            Assert.Equal(0, taken.Count);
            Assert.Null(taken.Find(0, 0));
            var block = new Block(0x1000, 0x1001, [], [], 0x1000);
            taken.Set(block); // used, then emptied as CodeCache.Release does: kept, and still empty when taken
            taken.InvalidateAll();
            Assert.False(block.Valid);
            VcpuArrayPool.Return(taken);
            BlockMap again = VcpuArrayPool.TakeBlockMap();
            Assert.Equal(0, again.Count);
            Assert.Null(again.Find(0x1000, 0x1000));
        }
    }

    [Fact]
    public void ATakenCodePageMap_IsZero_WhateverItsLastOwnerMarked()
    {
        const int length = 4097; // 16 MiB of guest memory, a size no other test uses
        var maps = new byte[VcpuArrayPool.MaxKept][];
        for (int i = 0; i < maps.Length; i++)
        {
            maps[i] = VcpuArrayPool.TakeCodePageMap(length);
            Array.Fill(maps[i], (byte)1);
        }
        foreach (byte[] map in maps)
        {
            VcpuArrayPool.Return(map);
        }

        for (int i = 0; i < maps.Length; i++)
        {
            maps[i] = VcpuArrayPool.TakeCodePageMap(length);
            Assert.Equal(length, maps[i].Length);
            Assert.True(maps[i].AsSpan().IndexOfAnyExcept((byte)0) < 0, "a taken code page map still marks a page");
        }
        foreach (byte[] map in maps)
        {
            VcpuArrayPool.Return(map);
        }
    }

    [Fact]
    public void AVmAfterAnother_ReadsItsOwnMemory_NotThroughTheFirstVmsTranslations()
    {
        // The first VM's memory stays alive (only its vCPU is disposed), so a stale translation would read 0xAAAA
        // from it instead of faulting.
        using EmuGuest first = GuestWithData(0xAAAA);
        Assert.Equal(VcpuExitKind.Halt, first.Vcpu.Run().Kind);
        Assert.Equal(0xAAAAUL, first.Vcpu.GetRegisters().Rax);
        first.Vcpu.Dispose();

        for (int i = 0; i < VcpuArrayPool.MaxKept; i++)
        {
            using EmuGuest next = GuestWithData(0xB000UL + (ulong)i);
            Assert.Equal(VcpuExitKind.Halt, next.Vcpu.Run().Kind);
            Assert.Equal(0xB000UL + (ulong)i, next.Vcpu.GetRegisters().Rax);
        }
    }

    [Fact]
    public void ADisposedVcpu_RefusesEveryEntryPoint()
    {
        EmuGuest guest = GuestWithData(1);
        IVcpu vcpu = guest.Vcpu;
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        VcpuState state = vcpu.GetState();
        VcpuRegisters registers = vcpu.GetRegisters();
        vcpu.Dispose();
        try
        {
            Assert.Throws<ObjectDisposedException>(() => vcpu.Run());
            Assert.Throws<ObjectDisposedException>(() => vcpu.GetRegisters());
            Assert.Throws<ObjectDisposedException>(() => vcpu.SetRegisters(registers));
            Assert.Throws<ObjectDisposedException>(() => vcpu.GetState());
            Assert.Throws<ObjectDisposedException>(() => vcpu.SetState(state));
            Assert.Throws<ObjectDisposedException>(() => vcpu.SetInstructionBudget(100));
            IVcpuDebug debug = vcpu.Debug!;
            Assert.Throws<ObjectDisposedException>(() => debug.SetGuestDebug(new GuestDebugSettings { Watchpoints = [new GuestWatchpoint(DataAddress, 8, WatchpointKind.Write)] }));
            Assert.Throws<ObjectDisposedException>(() => debug.CodeWritten(EmuHarness.CodeAddress, 16));
            Assert.Throws<ObjectDisposedException>(() => ((EmulatorVcpu)vcpu).Reset(new VcpuStartState(EmuHarness.CodeAddress, 0x2000, 0)));

            // Kicks and interrupt requests come from other threads (a timer, a cancellation) and may race with the
            // dispose: they stay harmless no-ops on the vCPU's own state, never an exception on that thread. The
            // hypercall path's register accessors touch only the vCPU's own register file too (never pooled) and
            // stay unchecked: they are on every round trip.
            vcpu.Interrupt();
            ((EmulatorVcpu)vcpu).RequestInterrupt(0x40);
            var general = (IGeneralRegisters)vcpu;
            general.SetGeneralRegister(0, 7);
            Assert.Equal(7UL, general.GetGeneralRegister(0));
            vcpu.Dispose(); // twice is fine
        }
        finally
        {
            guest.Dispose();
        }
    }
}
