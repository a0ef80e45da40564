using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>Small helpers to assemble code into guest memory and run it on the emulator.</summary>
internal static class EmuHarness
{
    public const ulong CodeAddress = 0x10_0000;
    public const ulong MemorySize = 2UL << 20;

    /// <summary>Where a test guest that loads its own IDT keeps it (256 gates, below the code).</summary>
    public const ulong IdtAddress = 0x8000;

    public static byte[] Assemble(Action<Assembler> build, ulong rip = CodeAddress)
    {
        var asm = new Assembler(64);
        build(asm);
        using var ms = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(ms), rip);
        return ms.ToArray();
    }

    /// <summary>Where <paramref name="instruction"/>'s bytes first occur in <paramref name="code"/> assembled at <see cref="CodeAddress"/>.</summary>
    public static ulong AddressOf(byte[] code, ReadOnlySpan<byte> instruction)
    {
        int at = code.AsSpan().IndexOf(instruction);
        Assert.True(at >= 0, "the instruction is not in the code");
        return CodeAddress + (ulong)at;
    }

    /// <summary>Binds <paramref name="idtr"/> to a <c>lidt</c> operand for the IDT at <see cref="IdtAddress"/> (limit 0xFFF: 256 gates); emit it where it is not run.</summary>
    public static void Idtr(Assembler a, ref Label idtr)
    {
        a.Label(ref idtr);
        a.dw(0xFFF);
        a.dq(IdtAddress);
    }

    /// <summary>Writes a present 64-bit interrupt gate (DPL 0, selector 0x08, no IST) for <paramref name="vector"/> to the IDT at <paramref name="idt"/>.</summary>
    public static void WriteInterruptGate(GuestMemory memory, int vector, ulong handler, ulong idt = IdtAddress)
    {
        ulong low = (handler & 0xFFFF) | (0x08UL << 16) | (0x8EUL << 40) | (((handler >> 16) & 0xFFFF) << 48);
        memory.WriteUInt64(new GuestAddress(idt + (ulong)(vector * 16)), low);
        memory.WriteUInt64(new GuestAddress(idt + (ulong)(vector * 16) + 8), handler >> 32);
    }

    /// <summary>Guest code: sets CR4 bit <paramref name="bit"/> (through rax).</summary>
    public static void SetCr4Bit(Assembler a, byte bit)
    {
        a.mov(rax, cr4);
        a.bts(rax, bit);
        a.mov(cr4, rax);
    }

    /// <summary>Guest code: cpuid of <paramref name="leaf"/>, then each (result register, destination) pair copied so the test can read it after the run.</summary>
    public static void Cpuid(Assembler a, uint leaf, params (AssemblerRegister64 Result, AssemblerRegister64 Into)[] keep)
    {
        a.mov(eax, leaf);
        a.cpuid();
        foreach ((AssemblerRegister64 result, AssemblerRegister64 into) in keep)
        {
            a.mov(into, result);
        }
    }

    /// <summary><see cref="Cpuid(Assembler, uint, ValueTuple{AssemblerRegister64, AssemblerRegister64}[])"/> of a leaf with sub-leaves (ecx = <paramref name="subleaf"/>).</summary>
    public static void Cpuid(Assembler a, uint leaf, uint subleaf, params (AssemblerRegister64 Result, AssemblerRegister64 Into)[] keep)
    {
        a.mov(ecx, subleaf);
        Cpuid(a, leaf, keep);
    }

    /// <summary>An endless loop that counts its rounds in rax (<c>inc rax; jmp</c> back): only a kick or a budget stops it.</summary>
    public static byte[] CountingSpin() => Assemble(a =>
    {
        Label spin = a.CreateLabel();
        a.Label(ref spin);
        a.inc(rax);
        a.jmp(spin);
    });

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
