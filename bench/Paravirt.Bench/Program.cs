using System.Buffers.Binary;

namespace Paravirt.Bench;

/// <summary>
/// The host side of bench/emulator-suite.sh (and of bench/kvm-pvm.sh's compute row):
///   kernel IMAGE RUNS [BACKEND] [SCALE]   a kernel of the benchmark suite (bench/guests/suite), see <see cref="KernelBench"/>
///   coldstart IMAGE COUNT [BACKEND]       first and next VM of an image vs spawning /bin/true, see <see cref="ColdStartBench"/>
///   hypercall COUNT RUNS [BACKEND]        hypercall round trip vs a .NET interface call, see <see cref="HypercallBench"/>
///   GUEST.elf [RUNS] [BACKEND]            bench/guests/compute.c's guest build (no ABI note, so a minimal PT_LOAD
///                                         loader below and only the debug_write and exit hypercalls); prints the
///                                         exact instruction count (emulator; 0 on kvm) and times.
/// BACKEND is emulator (the default) or kvm.
/// </summary>
internal static class Program
{
    private const ulong MemorySize = 64UL << 20;
    private const ulong HypercallPageAddress = 0x3000;

    private static int Main(string[] args)
    {
        string Arg(int i, string fallback) => args.Length > i ? args[i] : fallback;
        int Int(int i, int fallback) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : fallback;
        switch (args.Length > 0 ? args[0] : "")
        {
            case "kernel" when args.Length >= 3:
                return KernelBench.Run(args[1], Int(2, 3), Arg(3, EmulatorBackend.BackendName), Arg(4, ""));
            case "coldstart" when args.Length >= 3:
                return ColdStartBench.Run(args[1], Int(2, 100), Arg(3, EmulatorBackend.BackendName));
            case "hypercall" when args.Length >= 3:
                return HypercallBench.Run(Int(1, 1_000_000), Int(2, 5), Arg(3, EmulatorBackend.BackendName));
            case "" or "kernel" or "coldstart" or "hypercall":
                Console.Error.WriteLine("usage: Paravirt.Bench kernel IMAGE RUNS [BACKEND] [SCALE] | coldstart IMAGE COUNT [BACKEND] | hypercall COUNT RUNS [BACKEND] | GUEST.elf [RUNS] [BACKEND]");
                return 2;
            default:
                return RunComputeGuest(args[0], Int(1, 2), Arg(2, EmulatorBackend.BackendName));
        }
    }

    private static int RunComputeGuest(string path, int runs, string backendName)
    {
        byte[] elf = File.ReadAllBytes(path);
        IHypervisorBackend backend = backendName == KvmBackend.BackendName ? new KvmBackend() : new EmulatorBackend();
        var same = new SameEveryRun();
        for (int run = 1; run <= runs; run++)
        {
            (string output, ulong count, double seconds, double cpu, int exits) = RunOnce(elf, backend);
            if (!same.Check(run, output, count))
            {
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
        double cpu0 = CpuClock.ThreadSeconds();
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
        double cpu = CpuClock.ThreadSeconds() - cpu0;
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
