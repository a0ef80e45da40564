using System.Diagnostics;
using Iced.Intel;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Interop;
using Paravirt.Hypervisor.Memory;
using Paravirt.Hypervisor.Vcpu;
using static Iced.Intel.AssemblerRegisters;
using Paravirt.Hypervisor.Hypercalls;

namespace Paravirt.Hypervisor.Tests.Kvm;

/// <summary>
/// The KVM backend. Probe and kick-signal tests run everywhere; [KvmFact] tests need a working /dev/kvm (they are
/// skipped, visibly, elsewhere; tests/nested-kvm/run.sh runs the same paths for real inside a nested VM).
/// </summary>
public sealed class KvmBackendTests
{
    private const ulong ImageBase = EntryConvention.ImageMinAddress;

    [Fact]
    public void Probe_gives_a_one_line_reason_either_way()
    {
        var backend = new KvmBackend();
        Assert.Equal("kvm", backend.Name);
        BackendAvailability a = backend.Probe();
        Assert.False(string.IsNullOrWhiteSpace(a.Reason));
        Assert.DoesNotContain('\n', a.Reason);
        if (!OperatingSystem.IsLinux())
        {
            Assert.Equal("KVM needs Linux", a.Reason);
        }
        else if (!File.Exists(Backends.Kvm.Kvm.DevicePath))
        {
            Assert.False(a.IsAvailable);
            Assert.StartsWith("/dev/kvm does not exist: ", a.Reason, StringComparison.Ordinal);
            Assert.Contains("--backend emulator", a.Reason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void CreateVirtualMachine_without_kvm_throws_the_probe_reason()
    {
        BackendAvailability a = new KvmBackend().Probe();
        if (a.IsAvailable)
        {
            return; // covered by the [KvmFact] tests
        }
        using var memory = new GuestMemory(GuestMemory.MinSize);
        var e = Assert.Throws<BackendUnavailableException>(() => new KvmBackend().CreateVirtualMachine(memory, new VirtualMachineOptions()));
        Assert.Contains(a.Reason, e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The kick signal must be harmless wherever it lands: here a thread busy in managed code receives hundreds of
    /// kicks (a managed [UnmanagedCallersOnly] handler would abort the process here).
    /// </summary>
    [Fact]
    public void Kick_signal_landing_in_managed_code_is_harmless()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        int signal = KvmKickSignal.Signal;
        Assert.Equal(Libc.__libc_current_sigrtmin() + KvmKickSignal.OffsetFromSigRtMin, signal);
        nuint target = 0;
        using var ready = new ManualResetEventSlim();
        using var stop = new ManualResetEventSlim();
        long spins = 0;
        var thread = new Thread(() =>
        {
            Volatile.Write(ref target, Libc.pthread_self());
            ready.Set();
            while (!stop.IsSet)
            {
                spins++;
            }
        });
        thread.Start();
        ready.Wait();
        for (int i = 0; i < 500; i++)
        {
            Assert.Equal(0, Libc.pthread_kill(Volatile.Read(ref target), signal));
        }
        stop.Set();
        thread.Join();
        Assert.True(spins > 0);
    }

    [KvmFact]
    public void Hypercalls_round_trip_through_the_sync_registers()
    {
        var a = new Assembler(64);
        Label loop = a.CreateLabel(), bad = a.CreateLabel();
        a.mov(r12, 100);
        a.mov(rbx, GuestLayout.HypercallPage);
        a.Label(ref loop);
        a.mov(eax, 0x1234);
        a.mov(rdi, r12);
        a.mov(rsi, 0x1111_2222_3333_4444UL);
        a.mov(rdx, 0x5555_6666_7777_8888UL);
        a.mov(r10, 0x9999_AAAA_BBBB_CCCCUL);
        a.mov(r8, 0xDDDD_EEEE_FFFF_0000UL);
        a.call(rbx);
        a.lea(rcx, __[r12 + r12 + 1]);
        a.cmp(rax, rcx);
        a.jne(bad);
        a.dec(r12);
        a.jnz(loop);
        a.mov(eax, 0x4321);
        a.call(rbx);
        a.Label(ref bad);
        a.hlt();

        using var memory = NewMemory(Assemble(a), 4UL << 20);
        using IVirtualMachine vm = new KvmBackend().CreateVirtualMachine(memory, new VirtualMachineOptions());
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(ImageBase, memory.Size, GuestLayout.BootInfo));
        for (ulong i = 100; i > 0; i--)
        {
            VcpuExit exit = vcpu.Run();
            Assert.True(HypercallTrap.IsHypercall(exit), $"{exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
            Assert.Equal(HypercallPage.IoPort, exit.Address);
            HypercallArgs h = HypercallTrap.ReadArguments(vcpu.GetRegisters());
            Assert.Equal(new HypercallArgs(0x1234, i, 0x1111_2222_3333_4444, 0x5555_6666_7777_8888, 0x9999_AAAA_BBBB_CCCC, 0xDDDD_EEEE_FFFF_0000), h);
            HypercallTrap.Complete(vcpu, (long)(2 * i + 1));
        }
        VcpuExit last = vcpu.Run();
        Assert.True(HypercallTrap.IsHypercall(last), $"{last.Kind} {last.Detail} at 0x{last.Rip:x}");
        Assert.Equal(0x4321UL, HypercallTrap.ReadArguments(vcpu.GetRegisters()).Code);
        Assert.Equal(0UL, vcpu.GetRegisters().R12);
    }

    [KvmFact]
    public void Interrupt_from_another_thread_stops_a_spinning_guest()
    {
        var a = new Assembler(64);
        Label spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
        using var memory = NewMemory(Assemble(a), 4UL << 20);
        using IVirtualMachine vm = new KvmBackend().CreateVirtualMachine(memory, new VirtualMachineOptions());
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(ImageBase, memory.Size, GuestLayout.BootInfo));
        using var timer = new Timer(_ => vcpu.Interrupt(), null, 200, Timeout.Infinite);
        var sw = Stopwatch.StartNew();
        VcpuExit exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Interrupted, exit.Kind);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"took {sw.Elapsed}");

        // A kick that arrives before Run makes the next Run return at once, and is consumed by it.
        vcpu.Interrupt();
        Assert.Equal(VcpuExitKind.Interrupted, vcpu.Run().Kind);
    }

    [KvmFact]
    public void Hlt_and_unbacked_memory_are_clean_exits()
    {
        var a = new Assembler(64);
        a.mov(rax, 0x38_0000);
        a.mov(__qword_ptr[rax], 0x42);
        a.hlt();
        // 3 MiB of memory: the identity map covers whole 2 MiB pages, so 3.5 MiB is mapped but has no memory slot.
        using var memory = NewMemory(Assemble(a), 3UL << 20);
        using IVirtualMachine vm = new KvmBackend().CreateVirtualMachine(memory, new VirtualMachineOptions());
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(ImageBase, memory.Size, GuestLayout.BootInfo));
        VcpuExit mmio = vcpu.Run();
        Assert.Equal(VcpuExitKind.Mmio, mmio.Kind);
        Assert.Equal(0x38_0000UL, mmio.Address);
        VcpuExit hlt = vcpu.Run();
        Assert.Equal(VcpuExitKind.Halt, hlt.Kind);
    }

    private static GuestMemory NewMemory(byte[] code, ulong size)
    {
        var memory = new GuestMemory(size);
        memory.Write(new GuestAddress(ImageBase), code);
        GuestRunner.PrepareMemory(memory, ImageBase + (ulong)code.Length, []);
        return memory;
    }

    private static byte[] Assemble(Assembler a)
    {
        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), ImageBase);
        return stream.ToArray();
    }
}
