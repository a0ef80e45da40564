using Paravirt.Hypervisor.Backends.Whp;

namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>
/// The WHP backend on real hardware. Skipped (with the reason shown) everywhere but Windows with the Windows
/// Hypervisor Platform enabled: this project's CI has no such machine, so these have not been run by it. A Windows
/// user runs them with <c>dotnet test tests/Paravirt.Hypervisor.Tests --filter "FullyQualifiedName~Whp"</c>.
/// </summary>
[Collection(WhpProcessGuardCollection.Name)]
public sealed class WhpWindowsTests
{
    private const ulong Entry = 0x10_0000;

    private static (GuestMemory Memory, IVirtualMachine Vm, IVcpu Vcpu) Start(ReadOnlySpan<byte> code)
    {
        var memory = new GuestMemory(4UL << 20);
        IVirtualMachine? vm = null;
        try
        {
            memory.Write(new GuestAddress(Entry), code);
            vm = new WhpBackend().CreateVirtualMachine(memory, new VirtualMachineOptions());
            IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(Entry, memory.Size, GuestLayout.BootInfo));
            return (memory, vm, vcpu);
        }
        catch
        {
            vm?.Dispose(); // frees the process's WHP slot for the next test
            memory.Dispose();
            throw;
        }
    }

    [WindowsFact]
    public void Probe_is_available()
    {
        BackendAvailability a = new WhpBackend().Probe();
        Assert.True(a.IsAvailable, a.Reason);
    }

    [WindowsFact]
    public void Hypercall_round_trip_then_hlt()
    {
        // mov eax, 0x1234; mov edi, 0x11; mov esi, 0x22; out 0xE2, al; hlt
        byte[] code = [0xB8, 0x34, 0x12, 0x00, 0x00, 0xBF, 0x11, 0x00, 0x00, 0x00, 0xBE, 0x22, 0x00, 0x00, 0x00, 0xE6, 0xE2, 0xF4];
        (GuestMemory memory, IVirtualMachine vm, IVcpu vcpu) = Start(code);
        using (memory)
        using (vm)
        {
            VcpuExit exit = vcpu.Run();
            Assert.True(HypercallTrap.IsHypercall(exit), $"{exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
            Assert.Equal(Entry + 15, exit.Rip);
            HypercallArgs args = HypercallTrap.ReadArguments(vcpu.GetRegisters());
            Assert.Equal(0x1234UL, args.Code);
            Assert.Equal(0x11UL, args.A1);
            Assert.Equal(0x22UL, args.A2);
            HypercallTrap.Complete(vcpu, -5);
            VcpuRegisters regs = vcpu.GetRegisters();
            Assert.Equal(Entry + 17, regs.Rip);
            Assert.Equal(unchecked((ulong)-5L), regs.Rax);
            exit = vcpu.Run();
            Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        }
    }

    [WindowsFact]
    public void Interrupt_stops_a_spinning_guest()
    {
        (GuestMemory memory, IVirtualMachine vm, IVcpu vcpu) = Start([0xEB, 0xFE]); // jmp $
        using (memory)
        using (vm)
        {
            using var timer = new Timer(_ => vcpu.Interrupt(), null, 50, Timeout.Infinite);
            VcpuExit exit = vcpu.Run();
            Assert.Equal(VcpuExitKind.Interrupted, exit.Kind);
        }
    }

    [WindowsFact]
    public void A_second_concurrent_vm_in_the_process_is_refused()
    {
        (GuestMemory memory, IVirtualMachine vm, IVcpu _) = Start([0xF4]);
        using (memory)
        using (vm)
        {
            using var second = new GuestMemory(GuestMemory.MinSize);
            var e = Assert.Throws<BackendUnavailableException>(() => new WhpBackend().CreateVirtualMachine(second, new VirtualMachineOptions()));
            Assert.Equal(WhpProcessGuard.OneVmPerProcess, e.Message);
        }
        // After the first VM is gone, a new one can be created.
        (GuestMemory m2, IVirtualMachine vm2, IVcpu _) = Start([0xF4]);
        vm2.Dispose();
        m2.Dispose();
    }
}
