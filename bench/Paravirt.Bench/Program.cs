using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Memory;
using Paravirt.Hypervisor.Hypercalls;

namespace Paravirt.Bench;

/// <summary>
/// Runs a guest ELF (bench/guests/compute.c built with -DPARAVIRT_GUEST) on the emulator backend and reports its
/// exact instruction count and the emulator's speed, or on another backend (kvm) its time only (instructions=0).
/// Self-contained: a minimal PT_LOAD loader and the two hypercalls the guest uses (debug_write = 3, exit = 2), so
/// it does not depend on the full GuestRunner.
/// Usage: Paravirt.Bench GUEST.elf [runs] [emulator|kvm]
/// </summary>
internal static partial class Program
{
    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Sec;
        public long Nsec;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGettime(int clock, out Timespec ts);

    /// <summary>CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): stable when other processes share the cores.</summary>
    private static double ThreadCpuSeconds()
    {
        if (!OperatingSystem.IsLinux() || ClockGettime(3, out Timespec ts) != 0)
        {
            return double.NaN;
        }
        return ts.Sec + (ts.Nsec / 1e9);
    }

    private const ulong MemorySize = 64UL << 20;
    private const ulong HypercallPageAddress = 0x3000;

    private static int Main(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: Paravirt.Bench GUEST.elf [runs]");
            return 2;
        }
        byte[] elf = File.ReadAllBytes(args[0]);
        int runs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 2;
        IHypervisorBackend backend = args.Length > 2 && args[2] == KvmBackend.BackendName ? new KvmBackend() : new EmulatorBackend();
        string? firstOutput = null;
        ulong firstCount = 0;
        for (int run = 1; run <= runs; run++)
        {
            (string output, ulong count, double seconds, double cpu, int exits) = RunOnce(elf, backend);
            if (firstOutput is null)
            {
                firstOutput = output;
                firstCount = count;
            }
            else if (output != firstOutput || count != firstCount)
            {
                Console.Error.WriteLine($"non-deterministic run: '{output.Trim()}' {count} vs '{firstOutput.Trim()}' {firstCount}");
                return 1;
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"run={run} output=\"{output.Trim()}\" instructions={count} seconds={seconds:F3} cpu_seconds={cpu:F3} exits={exits} mips={count / seconds / 1e6:F1} cpu_mips={count / cpu / 1e6:F1}"));
        }
        return 0;
    }

    private static (string Output, ulong Count, double Seconds, double CpuSeconds, int Exits) RunOnce(byte[] elf, IHypervisorBackend backend)
    {
        using var memory = new GuestMemory(MemorySize);
        ulong entry = LoadElf(elf, memory);
        memory.Write(new GuestAddress(HypercallPageAddress), HypercallStub.Bytes);
        using IVirtualMachine vm = backend.CreateVirtualMachine(memory, new VirtualMachineOptions());
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(entry, MemorySize, 0x2000));
        var output = new StringBuilder();
        int exits = 0;
        double cpu0 = ThreadCpuSeconds();
        var sw = Stopwatch.StartNew();
        while (true)
        {
            VcpuExit exit = vcpu.Run();
            exits++;
            if (!HypercallTrap.IsHypercall(exit))
            {
                throw new InvalidOperationException($"guest stopped: {exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
            }
            HypercallArgs a = HypercallTrap.ReadArguments(vcpu.GetRegisters());
            if (a.Code == 2)
            {
                break;
            }
            if (a.Code == 3 && a.A2 <= 4096 && memory.TryGetSpan(new GuestAddress(a.A1), a.A2, out Span<byte> text))
            {
                output.Append(Encoding.UTF8.GetString(text));
                HypercallTrap.Complete(vcpu, (long)a.A2);
            }
            else
            {
                HypercallTrap.Complete(vcpu, -38);
            }
        }
        sw.Stop();
        double cpu = ThreadCpuSeconds() - cpu0;
        return (output.ToString(), vcpu.InstructionsRetired ?? 0, sw.Elapsed.TotalSeconds, cpu, exits);
    }

    /// <summary>Copies the PT_LOAD segments of a little-endian ELF64 into guest memory; returns the entry point.</summary>
    private static ulong LoadElf(byte[] elf, GuestMemory memory)
    {
        ReadOnlySpan<byte> f = elf;
        if (f.Length < 64 || BinaryPrimitives.ReadUInt32LittleEndian(f) != 0x464C457F || f[4] != 2)
        {
            throw new InvalidDataException("not an ELF64 file");
        }
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(f[24..]);
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(f[32..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(f[54..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(f[56..]);
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = f.Slice(checked((int)phoff + (i * phentsize)), 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != 1)
            {
                continue; // not PT_LOAD
            }
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
            ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[24..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
            ulong memsz = BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]);
            memory.Clear(new GuestAddress(paddr), memsz);
            memory.Write(new GuestAddress(paddr), f.Slice(checked((int)offset), checked((int)filesz)));
        }
        return entry;
    }
}
