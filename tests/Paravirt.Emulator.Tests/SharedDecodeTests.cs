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
}
