using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;
using static Paravirt.Scenarios.RawGuestCode;

namespace Paravirt.Hypervisor.Tests.Kvm;

/// <summary>
/// The KVM backend. Probe and kick-signal tests run everywhere; [KvmFact] tests need a working /dev/kvm (they are
/// skipped, visibly, elsewhere; tests/nested-kvm/run.sh runs the same paths for real inside a nested VM).
/// </summary>
public sealed class KvmBackendTests
{
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
        Assembler a = HypercallLoop(100, GuestLayout.HypercallPage, 0x1234, g =>
        {
            g.mov(rdi, r12);
            g.mov(rsi, 0x1111_2222_3333_4444UL);
            g.mov(rdx, 0x5555_6666_7777_8888UL);
            g.mov(r10, 0x9999_AAAA_BBBB_CCCCUL);
            g.mov(r8, 0xDDDD_EEEE_FFFF_0000UL);
        }, ExpectTwiceR12PlusOne, out Label bad);
        a.mov(eax, 0x4321);
        a.call(rbx);
        a.Label(ref bad);
        a.hlt();

        using KvmGuest guest = KvmGuest.Start(Assemble(a), 4UL << 20);
        IVcpu vcpu = guest.Vcpu;
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

    /// <summary>
    /// The entry convention's registers reach the guest's first instruction untouched, whatever ran before it (under
    /// PVM a host bootstrap stub uses rax, rcx and rdx): rip = entry, rdi = boot info, rsp as given, the other
    /// general-purpose registers 0, RFLAGS = 0x2. One difference is PVM's own: it runs the guest at hardware CPL 3
    /// with the hardware IF always set and keeps the guest's IF in the PVM vCPU struct, so <c>pushf</c> shows IF=1
    /// there (PVM spec, "Underlying RFLAGS: IOPL=VM=VIF=VIP=0, IF=1").
    /// </summary>
    [KvmFact]
    public void Guest_starts_with_the_entry_convention_registers()
    {
        var a = new Assembler(64);
        a.pushfq();
        a.pop(r9);
        a.mov(r8, rax);
        a.mov(r10, rcx);
        a.mov(rsi, r9);
        a.mov(eax, 0x77);
        a.mov(rbx, GuestLayout.HypercallPage);
        a.call(rbx); // rdi (boot info) and rdx travel unchanged
        a.hlt();
        using KvmGuest guest = KvmGuest.Start(Assemble(a), 4UL << 20);
        var (memory, _, vcpu) = guest;
        VcpuRegisters before = vcpu.GetRegisters();
        Assert.Equal(ImageBase, before.Rip);
        Assert.Equal(memory.Size, before.Rsp);
        Assert.Equal(GuestLayout.BootInfo, before.Rdi);
        Assert.Equal(0UL, before.Rax | before.Rcx | before.Rdx);

        VcpuExit exit = vcpu.Run();
        Assert.True(HypercallTrap.TryRead(vcpu, exit, out HypercallArgs h), $"{exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
        const ulong InterruptFlag = 0x200;
        Assert.Equal(new HypercallArgs(0x77, GuestLayout.BootInfo, 0x2, 0, 0, 0), h with { A2 = h.A2 & ~InterruptFlag });
        Assert.Equal(KvmPvm.ServesDevKvm() ? InterruptFlag : 0, h.A2 & InterruptFlag);
    }

    /// <summary>Compilers emit SSE in every guest; under kvm_pvm it failed until the backend bootstrapped PVM mode.</summary>
    [KvmFact]
    public void Sse_runs()
    {
        var a = new Assembler(64);
        a.mov(ecx, 20);
        a.cvtsi2sd(xmm0, rcx);
        a.mulsd(xmm0, xmm0);
        a.sqrtsd(xmm1, xmm0);
        a.addsd(xmm1, xmm0);
        a.cvttsd2si(rdi, xmm1);
        a.pxor(xmm2, xmm2);
        a.movdqu(__xmmword_ptr[rsp - 32], xmm1);
        a.mov(rsi, __qword_ptr[rsp - 32]);
        a.mov(eax, 0x78);
        a.mov(rbx, GuestLayout.HypercallPage);
        a.call(rbx);
        a.hlt();
        using KvmGuest guest = KvmGuest.Start(Assemble(a), 4UL << 20);
        IVcpu vcpu = guest.Vcpu;
        VcpuExit exit = vcpu.Run();
        Assert.True(HypercallTrap.TryRead(vcpu, exit, out HypercallArgs h), $"{exit.Kind} at 0x{exit.Rip:x}: {exit.Detail}");
        Assert.Equal(420UL, h.A1); // sqrt(400) + 400
        Assert.Equal(BitConverter.DoubleToUInt64Bits(420.0), h.A2);
    }

    [KvmFact]
    public void Interrupt_from_another_thread_stops_a_spinning_guest()
    {
        var a = new Assembler(64);
        Label spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
        using KvmGuest guest = KvmGuest.Start(Assemble(a), 4UL << 20);
        IVcpu vcpu = guest.Vcpu;
        (VcpuExit exit, TimeSpan took) = RunInterruptedAfter200Ms(vcpu);
        Assert.Equal(VcpuExitKind.Interrupted, exit.Kind);
        Assert.True(took < TimeSpan.FromSeconds(20), $"took {took}");

        // A kick that arrives before Run makes the next Run return at once, and is consumed by it.
        vcpu.Interrupt();
        Assert.Equal(VcpuExitKind.Interrupted, vcpu.Run().Kind);
    }

    /// <summary>
    /// A guest that takes the user bit out of its page tables (under PVM its code then faults at hardware CPL 3
    /// for ever, inside the kernel) still stops when the host interrupts it; on hardware KVM the bit means nothing
    /// here and the guest just spins.
    /// </summary>
    [KvmFact]
    public void Interrupt_stops_a_guest_that_broke_its_own_page_tables()
    {
        var a = new Assembler(64);
        Label spin = a.CreateLabel();
        a.mov(rax, GuestLayout.Pml4);
        a.and(__qword_ptr[rax], ~4);
        a.mov(rax, GuestLayout.Pdpt);
        a.and(__qword_ptr[rax], ~4);
        a.Label(ref spin);
        a.jmp(spin);
        using KvmGuest guest = KvmGuest.Start(Assemble(a), 4UL << 20);
        IVcpu vcpu = guest.Vcpu;
        (VcpuExit exit, TimeSpan took) = RunInterruptedAfter200Ms(vcpu);
        Assert.True(exit.Kind is VcpuExitKind.Interrupted or VcpuExitKind.Shutdown, $"{exit.Kind} at 0x{exit.Rip:x}: {exit.Detail}");
        Assert.True(took < TimeSpan.FromSeconds(20), $"took {took}");
    }

    /// <summary>
    /// The <see cref="IVcpu"/> contract for port writes on every KVM flavour: the exit and the registers show rip at
    /// the <c>out</c>; registers written back with that rip continue after it; a rip moved elsewhere stands. (Under
    /// PVM the kernel has already executed the <c>out</c> when it exits; the backend hides that.)
    /// </summary>
    [KvmFact]
    public void Port_write_exits_show_rip_at_the_out_and_continue_after_it()
    {
        var a = new Assembler(64);
        Label first = a.CreateLabel(), second = a.CreateLabel(), skipped = a.CreateLabel(), end = a.CreateLabel();
        a.mov(eax, 5);
        a.Label(ref first);
        a.@out(0xE4, al); // not 0x80: KVM lets writes to the POST port go (it is an I/O delay), they never exit
        a.mov(ebx, 1);
        a.mov(dx, 0x1234);
        a.Label(ref second);
        a.@out(dx, ax);
        a.Label(ref skipped);
        a.mov(ecx, 1);
        a.Label(ref end);
        a.hlt();
        using var stream = new MemoryStream();
        AssemblerResult assembled = a.Assemble(new StreamCodeWriter(stream), ImageBase, BlockEncoderOptions.ReturnNewInstructionOffsets);
        ulong Address(Label l) => assembled.GetLabelRIP(l);
        using KvmGuest guest = KvmGuest.Start(stream.ToArray(), 4UL << 20);
        IVcpu vcpu = guest.Vcpu;

        VcpuExit exit = vcpu.Run();
        Assert.Equal((VcpuExitKind.IoOut, 0xE4UL, (byte)1, 5UL, Address(first)), (exit.Kind, exit.Address, exit.Size, exit.Data, exit.Rip));
        VcpuRegisters regs = vcpu.GetRegisters();
        Assert.Equal(Address(first), regs.Rip);
        vcpu.SetRegisters(regs with { Rax = 0x7777 });

        exit = vcpu.Run();
        Assert.Equal((VcpuExitKind.IoOut, 0x1234UL, (byte)2, 0x7777UL, Address(second)), (exit.Kind, exit.Address, exit.Size, exit.Data, exit.Rip));
        regs = vcpu.GetRegisters();
        Assert.Equal((Address(second), 1UL), (regs.Rip, regs.Rbx));
        vcpu.SetRegisters(regs with { Rip = Address(end) });

        exit = vcpu.Run();
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        Assert.Equal(0UL, vcpu.GetRegisters().Rcx); // the moved rip skipped `mov ecx, 1`
    }

    [KvmFact]
    public void Hlt_and_unbacked_memory_are_clean_exits()
    {
        var a = new Assembler(64);
        a.mov(rax, 0x38_0000);
        a.mov(__qword_ptr[rax], 0x42);
        a.hlt();
        // 3 MiB of memory: the identity map covers whole 2 MiB pages, so 3.5 MiB is mapped but has no memory slot.
        using KvmGuest guest = KvmGuest.Start(Assemble(a), 3UL << 20);
        IVcpu vcpu = guest.Vcpu;
        VcpuExit mmio = vcpu.Run();
        Assert.Equal(VcpuExitKind.Mmio, mmio.Kind);
        Assert.Equal(0x38_0000UL, mmio.Address);
        VcpuExit hlt = vcpu.Run();
        Assert.Equal(VcpuExitKind.Halt, hlt.Kind);
    }

    /// <summary>Runs <paramref name="vcpu"/> while another thread interrupts it 200 ms in: the exit, and how long Run took.</summary>
    private static (VcpuExit Exit, TimeSpan Took) RunInterruptedAfter200Ms(IVcpu vcpu)
    {
        using var timer = new Timer(_ => vcpu.Interrupt(), null, 200, Timeout.Infinite);
        var sw = Stopwatch.StartNew();
        VcpuExit exit = vcpu.Run();
        return (exit, sw.Elapsed);
    }

    /// <summary>Memory of <paramref name="size"/> bytes with <paramref name="code"/> at the image base and the boot structures, a KVM VM and its vCPU at the code; disposes all three.</summary>
    private sealed class KvmGuest(GuestMemory memory, IVirtualMachine vm, IVcpu vcpu) : IDisposable
    {
        public static KvmGuest Start(byte[] code, ulong size)
        {
            var memory = new GuestMemory(size);
            try
            {
                memory.Write(new GuestAddress(ImageBase), code);
                GuestRunner.PrepareMemory(memory, ImageBase + (ulong)code.Length, []);
                IVirtualMachine vm = new KvmBackend().CreateVirtualMachine(memory, new VirtualMachineOptions());
                try
                {
                    return new KvmGuest(memory, vm, vm.CreateVcpu(new VcpuStartState(ImageBase, memory.Size, GuestLayout.BootInfo)));
                }
                catch
                {
                    vm.Dispose();
                    throw;
                }
            }
            catch
            {
                memory.Dispose();
                throw;
            }
        }

        public IVcpu Vcpu => vcpu;

        public void Deconstruct(out GuestMemory m, out IVirtualMachine v, out IVcpu c) => (m, v, c) = (memory, vm, vcpu);

        public void Dispose()
        {
            vcpu.Dispose();
            vm.Dispose();
            memory.Dispose();
        }
    }
}
