using System.Runtime.InteropServices;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Decoded blocks shared between the VMs of one image (<see cref="SharedDecodeCache"/>): taken only when the VM's own
/// bytes are the ones decoded. Every test uses its own key object, so tests running in parallel never share.
/// </summary>
public sealed class SharedDecodeTests
{
    /// <summary>Where <see cref="Subroutine"/> lives: the same page as the main code, so the main code's stores into it are self-modifying code.</summary>
    private const ulong SubroutineAddress = EmuHarness.CodeAddress + 0x800;

    /// <summary>A loop (several blocks) that calls <c>mov eax, value; ret</c> at <see cref="SubroutineAddress"/>; the sum ends in rax.</summary>
    private static readonly byte[] SumLoop = EmuHarness.Assemble(a =>
    {
        Label top = a.CreateLabel();
        a.xor(ebx, ebx);
        a.mov(ecx, 10);
        a.Label(ref top);
        a.call(SubroutineAddress);
        a.add(ebx, eax);
        a.dec(ecx);
        a.jnz(top);
        a.mov(eax, ebx);
        a.hlt();
    });

    private static byte[] Subroutine(int value) => EmuHarness.Assemble(a =>
    {
        a.mov(eax, value);
        a.ret();
    }, SubroutineAddress);

    private static (ulong Rax, EmulatorVcpu Vcpu) RunSumLoop(object? key, int value, Action<GuestMemory>? beforeRun = null)
    {
        using EmuGuest guest = EmuHarness.Create(SumLoop, shareKey: key);
        guest.Memory.Write(new GuestAddress(SubroutineAddress), Subroutine(value));
        beforeRun?.Invoke(guest.Memory);
        Assert.Equal(VcpuExitKind.Halt, guest.Vcpu.Run().Kind);
        return (guest.Vcpu.GetRegisters().Rax, (EmulatorVcpu)guest.Vcpu);
    }

    [Fact]
    public void SecondVmOfAnImage_TakesTheFirstVmsDecodedBlocks()
    {
        object image = new();
        (ulong first, EmulatorVcpu firstVcpu) = RunSumLoop(image, 5);
        (ulong second, EmulatorVcpu secondVcpu) = RunSumLoop(image, 5);

        Assert.Equal(50UL, first);
        Assert.Equal(50UL, second);
        Assert.True(firstVcpu.BlocksDecoded >= 3, $"{firstVcpu.BlocksDecoded} blocks decoded");
        Assert.Equal(0, firstVcpu.BlocksShared);
        Assert.Equal(0, secondVcpu.BlocksDecoded);
        Assert.Equal(firstVcpu.BlocksDecoded, secondVcpu.BlocksShared);
        Assert.Equal(firstVcpu.Retired, secondVcpu.Retired);
    }

    [Fact]
    public void VmsWithoutAKey_OrWithAnotherKey_DecodeAlone()
    {
        object image = new();
        _ = RunSumLoop(image, 5);
        (_, EmulatorVcpu unkeyed) = RunSumLoop(null, 5);
        (_, EmulatorVcpu otherImage) = RunSumLoop(new object(), 5);

        Assert.Equal(0, unkeyed.BlocksShared);
        Assert.Equal(0, otherImage.BlocksShared);
    }

    [Fact]
    public void DifferentCodeAtTheSameAddress_IsNotTakenFromTheCache()
    {
        // The same key (a hostile guest of the same image may rewrite anything), other bytes at the same address.
        object image = new();
        (ulong five, _) = RunSumLoop(image, 5);
        (ulong nine, EmulatorVcpu changed) = RunSumLoop(image, 9);
        (ulong fiveAgain, EmulatorVcpu again) = RunSumLoop(image, 5);

        Assert.Equal(50UL, five);
        Assert.Equal(90UL, nine);
        Assert.Equal(50UL, fiveAgain);
        Assert.Equal(1, changed.BlocksDecoded); // only the subroutine differs; the loop's blocks are shared
        Assert.True(changed.BlocksShared >= 3, $"{changed.BlocksShared} blocks shared");
        Assert.Equal(0, again.BlocksDecoded); // both variants are kept
    }

    [Fact]
    public void OneChangedByte_AtTheEndOfABlock_IsNotTakenFromTheCache()
    {
        object image = new();
        _ = RunSumLoop(image, 5);
        // The host changes the ret (the subroutine block's last byte) into int3: the cached block must not run.
        (_, EmulatorVcpu vcpu) = RunWithExit(image, memory => memory.Write(new GuestAddress(SubroutineAddress + 5), [0xCC]));
        Assert.Equal(1, vcpu.BlocksDecoded);

        static (VcpuExit Exit, EmulatorVcpu Vcpu) RunWithExit(object key, Action<GuestMemory> change)
        {
            using EmuGuest guest = EmuHarness.Create(SumLoop, shareKey: key);
            guest.Memory.Write(new GuestAddress(SubroutineAddress), Subroutine(5));
            change(guest.Memory);
            VcpuExit exit = guest.Vcpu.Run();
            Assert.Equal(VcpuExitKind.Fault, exit.Kind);
            Assert.Contains("#BP", exit.Detail, StringComparison.Ordinal);
            return (exit, (EmulatorVcpu)guest.Vcpu);
        }
    }

    [Fact]
    public void SelfModifyingCode_RunsTheBytesItWrote_InEveryVm()
    {
        // Calls the subroutine (mov eax, 5), patches its immediate to 7 (a store into a code page), calls it again.
        byte[] patcher = EmuHarness.Assemble(a =>
        {
            a.call(SubroutineAddress);
            a.mov(ebx, eax);
            a.mov(__byte_ptr[SubroutineAddress + 1], 7);
            a.call(SubroutineAddress);
            a.add(eax, ebx);
            a.hlt();
        });
        object image = new();
        for (int vm = 0; vm < 3; vm++)
        {
            using EmuGuest guest = EmuHarness.Create(patcher, shareKey: image);
            guest.Memory.Write(new GuestAddress(SubroutineAddress), Subroutine(5));
            Assert.Equal(VcpuExitKind.Halt, guest.Vcpu.Run().Kind);
            Assert.Equal(12UL, guest.Vcpu.GetRegisters().Rax);
            var vcpu = (EmulatorVcpu)guest.Vcpu;
            if (vm > 0)
            {
                Assert.Equal(0, vcpu.BlocksDecoded); // the subroutine before and after the patch: both variants shared
            }
        }
    }

    [Fact]
    public void BreakpointsSet_TheVmNeitherTakesNorPublishes()
    {
        object image = new();
        _ = RunSumLoop(image, 5);
        using EmuGuest guest = EmuHarness.Create(SumLoop, shareKey: image);
        guest.Memory.Write(new GuestAddress(SubroutineAddress), Subroutine(5));
        var vcpu = (EmulatorVcpu)guest.Vcpu;
        vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { Breakpoints = [SubroutineAddress + 5] });
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Debug, exit.Kind);
        Assert.Equal(SubroutineAddress + 5, exit.Rip);
        Assert.Equal(0, vcpu.BlocksShared);
    }

    [Fact]
    public void ConcurrentVmsOfOneImage_WithTwoVariants_EachRunTheirOwnCode()
    {
        object image = new();
        const int Threads = 8, Runs = 25;
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        int shared = 0;
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            for (int i = 0; i < Runs; i++)
            {
                int value = (t + i) % 2 == 0 ? 5 : 9;
                (ulong rax, EmulatorVcpu vcpu) = RunSumLoop(image, value);
                if (rax != (ulong)(10 * value))
                {
                    failures.Enqueue($"thread {t} run {i}: {rax} for {value}");
                }
                Interlocked.Add(ref shared, vcpu.BlocksShared);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Empty(failures);
        Assert.True(shared > Threads * Runs, $"{shared} blocks shared over {Threads * Runs} VMs");
    }

    /// <summary>Where <see cref="StoreThroughPointer"/> reads its store's address, and where it stores when that is not its own code.</summary>
    private const ulong PointerAddress = EmuHarness.CodeAddress + 0x4_0000, DataAddress = PointerAddress + 0x1000;

    /// <summary>
    /// One straight-line block: stores 7 through the pointer at <see cref="PointerAddress"/> (the host sets it: the
    /// immediate of the block's own next instruction, or <see cref="DataAddress"/>), then <c>mov eax, 1</c>; halts.
    /// </summary>
    private static readonly byte[] StoreThroughPointer = EmuHarness.Assemble(a =>
    {
        Label imm = a.CreateLabel();
        a.mov(rdx, __qword_ptr[PointerAddress]);
        a.mov(__dword_ptr[rdx], 7);
        MovEaxWithLabelledImmediate(a, ref imm, 1);
        a.hlt();
    });

    /// <summary>The address of <see cref="StoreThroughPointer"/>'s <c>mov eax</c> immediate.</summary>
    private static ulong OwnImmediate => EmuHarness.AddressOf(StoreThroughPointer, [0xB8, 1, 0, 0, 0]) + 1;

    private static void MovEaxWithLabelledImmediate(Iced.Intel.Assembler a, ref Label imm, uint value)
    {
        a.db(0xB8);
        a.Label(ref imm);
        a.dd(value);
    }

    private static EmuGuest StoreThroughPointerGuest(object key, ulong target)
    {
        EmuGuest guest = EmuHarness.Create(StoreThroughPointer, budget: 10_000, shareKey: key);
        guest.Memory.Write(new GuestAddress(PointerAddress), BitConverter.GetBytes(target));
        ((EmulatorVcpu)guest.Vcpu).JitThreshold = 0; // the interpreter runs every block
        return guest;
    }

    private static Block CachedBlock(EmuGuest guest) =>
        ((EmulatorVcpu)guest.Vcpu).Code.Find(EmuHarness.CodeAddress, EmuHarness.CodeAddress) ?? throw new InvalidOperationException("the block is not cached");

    [Fact]
    public void VmsOfAnImage_RunOneOpArray_AndAStoreIntoTheRunningBlock_ChangesOnlyTheWritersCode()
    {
        object image = new();
        // The first VM decodes and publishes the block (its store goes to data).
        using EmuGuest first = StoreThroughPointerGuest(image, DataAddress);
        Assert.Equal(VcpuExitKind.Halt, first.Vcpu.Run().Kind);
        Assert.Equal(1UL, first.Vcpu.GetRegisters().Rax);
        MicroOp[] ops = CachedBlock(first).Ops;
        byte[] opBytes = MemoryMarshal.AsBytes(ops.AsSpan()).ToArray();

        // The writer takes the same ops, stores into the very block it is running: the next instruction is its new code.
        using EmuGuest writer = StoreThroughPointerGuest(image, OwnImmediate);
        var writerVcpu = (EmulatorVcpu)writer.Vcpu;
        Assert.Equal(VcpuExitKind.Halt, writer.Vcpu.Run().Kind);
        Assert.Equal(7UL, writer.Vcpu.GetRegisters().Rax);
        Assert.Equal(1, writerVcpu.BlocksShared);

        // The op array is untouched, and a third VM of the image runs it as decoded (the writer's block alone was dropped).
        Assert.True(MemoryMarshal.AsBytes(ops.AsSpan()).SequenceEqual(opBytes), "a VM's store changed the shared ops");
        Assert.True(CachedBlock(first).Valid);
        using EmuGuest other = StoreThroughPointerGuest(image, DataAddress);
        Assert.Equal(VcpuExitKind.Halt, other.Vcpu.Run().Kind);
        Assert.Equal(1UL, other.Vcpu.GetRegisters().Rax);
        Assert.Same(ops, CachedBlock(other).Ops);
        Assert.Equal(0, ((EmulatorVcpu)other.Vcpu).BlocksDecoded);

        // The first VM, still alive, runs its block again: unchanged; then the host patches that VM's code (a device
        // or a snapshot writing guest memory): its next run sees the new bytes, the others' ops stay as decoded.
        first.Vcpu.SetRegisters(first.Vcpu.GetRegisters() with { Rip = EmuHarness.CodeAddress, Rax = 0 });
        Assert.Equal(VcpuExitKind.Halt, first.Vcpu.Run().Kind);
        Assert.Equal(1UL, first.Vcpu.GetRegisters().Rax);
        first.Memory.Write(new GuestAddress(OwnImmediate), BitConverter.GetBytes(9));
        first.Vcpu.SetRegisters(first.Vcpu.GetRegisters() with { Rip = EmuHarness.CodeAddress, Rax = 0 });
        Assert.Equal(VcpuExitKind.Halt, first.Vcpu.Run().Kind);
        Assert.Equal(9UL, first.Vcpu.GetRegisters().Rax);
        Assert.True(MemoryMarshal.AsBytes(ops.AsSpan()).SequenceEqual(opBytes), "a host write changed the shared ops");
        Assert.Same(ops, CachedBlock(other).Ops);
    }

    [Fact]
    public void VmsOfAnImage_ShareTheOpArrays_WhileEachHasItsOwnBlock()
    {
        object image = new();
        using EmuGuest a = EmuHarness.Create(SumLoop, shareKey: image);
        using EmuGuest b = EmuHarness.Create(SumLoop, shareKey: image);
        foreach (EmuGuest guest in new[] { a, b })
        {
            guest.Memory.Write(new GuestAddress(SubroutineAddress), Subroutine(5));
            Assert.Equal(VcpuExitKind.Halt, guest.Vcpu.Run().Kind);
        }
        Block blockA = CachedBlock(a), blockB = CachedBlock(b);
        Assert.NotSame(blockA, blockB); // validity, hit count, links and translation stay per VM
        Assert.Same(blockA.Ops, blockB.Ops);
        Assert.Same(blockA.Texts, blockB.Texts);
    }

    /// <summary>64 blocks of 12 instructions, each ending in a jump to the next; the last halts.</summary>
    private static readonly byte[] ManyBlocks = EmuHarness.Assemble(a =>
    {
        for (int k = 0; k < 64; k++)
        {
            Label next = a.CreateLabel();
            for (int j = 0; j < 11; j++)
            {
                a.add(eax, (k * 16) + j);
            }
            a.jmp(next);
            a.Label(ref next);
        }
        a.hlt();
    });

    [Fact]
    public void AVmOfAnImage_InTheSteadyState_AllocatesNoCopyOfTheSharedOps()
    {
        object image = new();
        var allocated = new List<long>();
        for (int vm = 0; vm < 12; vm++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            using (EmuGuest guest = EmuHarness.Create(ManyBlocks, shareKey: image))
            {
                Assert.Equal(VcpuExitKind.Halt, guest.Vcpu.Run().Kind);
                Assert.Equal(vm == 0 ? 0 : 65, ((EmulatorVcpu)guest.Vcpu).BlocksShared);
            }
            allocated.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }
        // Measured: 15,352 bytes a VM here (memory, VM, vCPU, 65 blocks and the code cache's page lists; the vCPU's
        // large arrays and its block map are pooled), 59,976 with a private copy of the ops per VM (65 blocks, 769
        // ops). The smallest of the steady-state VMs, so that a stray allocation elsewhere on this thread cannot fail
        // the test.
        long steady = allocated.Skip(4).Min();
        Assert.True(steady < 24_000, $"{steady} bytes allocated by a steady-state VM ({string.Join(", ", allocated)})");
    }

    [Fact]
    public void Cache_StaysUnderItsByteLimit()
    {
        var cache = new SharedDecodeCache { ByteLimit = 16 << 10 };
        byte[] code = [0x90, 0xC3];
        long scope = cache.ScopeOf(new object());
        unsafe
        {
            fixed (byte* host = code)
            {
                for (ulong k = 0; k < 1000; k++)
                {
                    var block = new Block(0x1000 + (k * 16), 0x1000 + (k * 16) + 2, [default, default], [], 0x1000 + (k * 16));
                    cache.Publish(scope, block, host, code.Length);
                    Assert.True(cache.Bytes <= cache.ByteLimit, $"{cache.Bytes} bytes");
                }
                Assert.True(cache.CapacityFlushes > 0);
                Assert.NotNull(cache.Find(scope, 0x1000 + (999 * 16), 0x1000 + (999 * 16), host, code.Length));
                Assert.Null(cache.Find(scope, 0x1000 + (999 * 16), 0x1000 + (999 * 16), host, 1)); // the bytes would run past what may be read
            }
        }
    }
    [Fact]
    public void Table_UnderCollisionsAndGrowth_FindsEachKeysOwnEntry_AndNothingElse()
    {
        // A 2-slot table: every key collides at first, then the table grows 2 -> 2048 slots under the probes.
        var cache = new SharedDecodeCache(initialSlots: 2);
        long scopeA = cache.ScopeOf(new object()), scopeB = cache.ScopeOf(new object());
        byte[] codeA = [0x90, 0xC3], codeB = [0x90, 0x90, 0xC3];
        unsafe
        {
            fixed (byte* a = codeA)
            fixed (byte* b = codeB)
            {
                var published = new List<(long Scope, ulong Linear, ulong Physical, Block Block)>();
                for (ulong k = 0; k < 1000; k++)
                {
                    // Keys that differ in one of the three parts only: same linear on two physical pages, same physical
                    // at two linear addresses, the same pair in two scopes.
                    ulong linear = 0x40_0000 + ((k / 2) * 16), physical = 0x1000 + ((k / 2) * 16) + ((k % 2) << 12);
                    long scope = k % 3 == 0 ? scopeB : scopeA;
                    var block = new Block(linear, linear + 2, [default, default], [], physical);
                    cache.Publish(scope, block, scope == scopeA ? a : b, scope == scopeA ? codeA.Length : codeB.Length);
                    published.Add((scope, linear, physical, block));
                }
                Assert.Equal(2048, cache.TableSlots); // 1,000 keys: at most half the slots taken
                foreach ((long scope, ulong linear, ulong physical, Block block) in published)
                {
                    byte* own = scope == scopeA ? a : b;
                    int length = scope == scopeA ? codeA.Length : codeB.Length;
                    SharedBlock found = cache.Find(scope, linear, physical, own, 8) ?? throw new InvalidOperationException($"0x{linear:x}/0x{physical:x} not found");
                    Assert.Same(block.Ops, found.Instantiate(linear, physical).Ops);
                    Assert.Equal(length, found.Code.Length);
                    // The same address in the other scope, another physical or another linear address: nothing.
                    Assert.Null(cache.Find(scope == scopeA ? scopeB : scopeA, linear, physical, own, 8));
                    Assert.Null(cache.Find(scope, linear, physical + 0x10_0000, own, 8));
                    Assert.Null(cache.Find(scope, linear + 0x10_0000, physical, own, 8));
                    Assert.Null(cache.Find(scope, linear, physical, scope == scopeA ? b : a, 8)); // other bytes
                }
                // The same key in the other scope is another entry; other bytes at one key are a variant of it; a
                // flush empties the table back to its first size.
                (long s1, ulong l1, ulong p1, Block b1) = published[1];
                Assert.Equal(scopeA, s1);
                var inB = new Block(l1, l1 + 3, [default, default, default], [], p1);
                cache.Publish(scopeB, inB, b, codeB.Length);
                Assert.Same(inB.Ops, cache.Find(scopeB, l1, p1, b, 8)!.Instantiate(l1, p1).Ops);
                Assert.Same(b1.Ops, cache.Find(scopeA, l1, p1, a, 8)!.Instantiate(l1, p1).Ops);
                Assert.Null(cache.Find(scopeA, l1, p1, b, 8));
                var variant = new Block(l1, l1 + 3, [default, default, default], [], p1);
                cache.Publish(scopeA, variant, b, codeB.Length);
                Assert.Same(variant.Ops, cache.Find(scopeA, l1, p1, b, 8)!.Instantiate(l1, p1).Ops);
                Assert.Same(b1.Ops, cache.Find(scopeA, l1, p1, a, 8)!.Instantiate(l1, p1).Ops);
                cache.Clear();
                Assert.Equal(2, cache.TableSlots);
                Assert.Null(cache.Find(scopeA, l1, p1, a, 8));
            }
        }
    }

    [Fact]
    public void Table_ReadersWhilePublishing_SeeOnlyCompleteEntries()
    {
        // Lock-free readers against a publisher growing a small table: every hit is the entry of the key asked for.
        var cache = new SharedDecodeCache(initialSlots: 2);
        long scope = cache.ScopeOf(new object());
        byte[] code = [0x90, 0xC3];
        const int Keys = 4000;
        var blocks = new Block[Keys];
        for (int k = 0; k < Keys; k++)
        {
            blocks[k] = new Block(0x40_0000 + ((ulong)k * 16), 0x40_0002 + ((ulong)k * 16), [default, default], [], 0x1000 + ((ulong)k * 16));
        }
        int wrong = 0;
        using var done = new ManualResetEventSlim();
        Thread reader = new(() =>
        {
            unsafe
            {
                fixed (byte* host = code)
                {
                    var random = new Random(7);
                    while (!done.IsSet)
                    {
                        int k = random.Next(Keys);
                        if (cache.Find(scope, blocks[k].Start, blocks[k].PhysicalStart, host, 8) is { } found
                            && (found.Linear != blocks[k].Start || !ReferenceEquals(found.Instantiate(found.Linear, found.Physical).Ops, blocks[k].Ops)))
                        {
                            Interlocked.Increment(ref wrong);
                        }
                    }
                }
            }
        });
        reader.Start();
        unsafe
        {
            fixed (byte* host = code)
            {
                foreach (Block block in blocks)
                {
                    cache.Publish(scope, block, host, code.Length);
                }
            }
        }
        done.Set();
        reader.Join();
        Assert.Equal(0, wrong);
        Assert.Equal(Keys, cache.Published);
    }

    [Fact]
    public void Table_AKeyThatDiffersInOnePart_NeverFindsTheEntry()
    {
        // One entry in a 2-slot table: about half of all other keys probe its slot first and must compare all three parts.
        var cache = new SharedDecodeCache(initialSlots: 2);
        long scope = cache.ScopeOf(new object()), otherScope = cache.ScopeOf(new object());
        byte[] code = [0x90, 0xC3];
        unsafe
        {
            fixed (byte* host = code)
            {
                cache.Publish(scope, new Block(0x40_0000, 0x40_0002, [default, default], [], 0x5000), host, code.Length);
                Assert.Equal(2, cache.TableSlots);
                Assert.NotNull(cache.Find(scope, 0x40_0000, 0x5000, host, 8));
                for (ulong k = 1; k <= 64; k++)
                {
                    Assert.Null(cache.Find(scope, 0x40_0000, 0x5000 + (k * 0x1000), host, 8));
                    Assert.Null(cache.Find(scope, 0x40_0000 + (k * 0x10), 0x5000, host, 8));
                    Assert.Null(cache.Find(scope + (long)k, 0x40_0000, 0x5000, host, 8));
                }
                Assert.Null(cache.Find(otherScope, 0x40_0000, 0x5000, host, 8));
            }
        }
    }
}
