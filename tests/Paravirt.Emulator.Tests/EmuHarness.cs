namespace Paravirt.Emulator.Tests;

/// <summary>Small helpers to assemble code into guest memory and run it on the emulator.</summary>
internal static class EmuHarness
{
    public const ulong CodeAddress = 0x10_0000;
    public const ulong MemorySize = 2UL << 20;

    public static byte[] Assemble(Action<Assembler> build, ulong rip = CodeAddress)
    {
        var asm = new Assembler(64);
        build(asm);
        using var ms = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(ms), rip);
        return ms.ToArray();
    }

    /// <summary>Memory with <paramref name="code"/> at <paramref name="codeAddress"/>, an emulator VM and its vCPU; dispose to release all three.</summary>
    /// <param name="shareKey">VMs created with the same key share decoded blocks (<see cref="VirtualMachineOptions.CodeShareKey"/>); null: none.</param>
    public static EmuGuest Create(byte[] code, ulong? budget = null, ulong memorySize = MemorySize, ulong codeAddress = CodeAddress, object? shareKey = null)
    {
        var memory = new GuestMemory(memorySize);
        memory.Write(new GuestAddress(codeAddress), code);
        IVirtualMachine vm = new EmulatorBackend().CreateVirtualMachine(memory, new VirtualMachineOptions { InstructionBudget = budget, CodeShareKey = shareKey });
        IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(codeAddress, memorySize, 0x2000));
        return new EmuGuest(memory, vm, vcpu);
    }

    /// <summary>A fresh guest (<see cref="Create"/>) run until <paramref name="code"/> halts, which it must do first; its memory and registers are then the test's to read.</summary>
    public static EmuGuest RunToHalt(byte[] code)
    {
        EmuGuest guest = Create(code);
        VcpuExit exit = guest.Vcpu.Run();
        if (exit.Kind != VcpuExitKind.Halt)
        {
            guest.Dispose();
            Assert.Fail($"expected a halt, got {exit.Kind} at 0x{exit.Rip:x}: {exit.Detail}");
        }
        return guest;
    }

    /// <summary>Runs <paramref name="code"/> on a fresh guest to its first exit, asserts that the exit is a fault and returns the fault's description (what a user is told).</summary>
    public static string RunToFault(byte[] code)
    {
        using EmuGuest guest = Create(code);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Fault, exit.Kind);
        return exit.Detail ?? "";
    }
}

/// <summary>A guest on the emulator; disposes the vCPU, the VM and the memory, in that order.</summary>
internal sealed class EmuGuest(GuestMemory memory, IVirtualMachine vm, IVcpu vcpu) : IDisposable
{
    public void Deconstruct(out GuestMemory m, out IVirtualMachine v, out IVcpu c) => (m, v, c) = (memory, vm, vcpu);

    public IVcpu Vcpu => vcpu;

    public GuestMemory Memory => memory;

    public void Dispose()
    {
        vcpu.Dispose();
        vm.Dispose();
        memory.Dispose();
    }
}
