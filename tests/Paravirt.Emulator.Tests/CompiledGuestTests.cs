using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// End to end: bench/guests/compute.c (CRC32, SHA-256, integer mix) compiled by gcc and clang at -O0..-O3/-Os, once as
/// a freestanding Paravirt guest run on the emulator and once as a static Linux program run natively; the checksums
/// must be equal. This catches any instruction those compilers emit that the emulator lacks or gets wrong.
/// </summary>
public sealed class CompiledGuestTests
{
    private const ulong MemorySize = 8UL << 20;

    // The compiler lines below are written as one string each, the way they would be typed; no path has a space.
    private static string Run(string file, string args) =>
        ProcessRunner.RunChecked(file, args.Split(' ', StringSplitOptions.RemoveEmptyEntries));

    private static void CheckCompiler(string compiler)
    {
        string cc = ProcessRunner.FindOnPath(compiler)!;
        string src = RepoPaths.File("bench/guests/compute.c");
        string dir = Directory.CreateTempSubdirectory("paravirt-emu-").FullName;
        try
        {
            foreach (string opt in new[] { "-O0", "-O1", "-O2", "-O3", "-Os" })
            {
                string common = $"{opt} -DROUNDS=2 -DBUF_SIZE=4096 -fno-pie -no-pie -static -fno-builtin -fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables";
                string guest = Path.Combine(dir, $"guest{opt}.elf");
                string linux = Path.Combine(dir, $"linux{opt}");
                Run(cc, $"{common} -DPARAVIRT_GUEST -ffreestanding -nostdlib -Wl,-Ttext-segment=0x100000 -Wl,--build-id=none -Wl,-e,_start -o {guest} {src}");
                Run(cc, $"{common} -o {linux} {src}");
                string native = Run(linux, "").Trim();
                (string emulated, ulong count) = RunGuest(File.ReadAllBytes(guest));
                Assert.True(native == emulated.Trim(), $"{compiler} {opt}: native '{native}', emulator '{emulated.Trim()}'");
                Assert.True(count > 10_000, $"{compiler} {opt}: only {count} instructions");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// tests/Paravirt.Emulator.Tests/Guests/fpmix.c (n-body, spectral norm, FFT, Mandelbrot, float and long double
    /// kernels, SSE and x87 rounding modes switched at run time, libm-style functions, formatting and parsing) at
    /// -O0..-O3 for baseline x86-64 (SSE2 and x87 only) and -O2 for x86-64-v2 (SSE4.1 rounding...): the emulator's
    /// output must be identical to the native run's, bit for bit (every value is printed with its bits).
    /// </summary>
    private static void CheckFloatingPoint(string compiler)
    {
        string cc = ProcessRunner.FindOnPath(compiler)!;
        string src = RepoPaths.File("tests/Paravirt.Emulator.Tests/Guests/fpmix.c");
        string dir = Directory.CreateTempSubdirectory("paravirt-emu-fp-").FullName;
        try
        {
            foreach ((string march, string[] opts) in new[] { ("", new[] { "-O0", "-O1", "-O2", "-O3" }), ("-march=x86-64-v2", new[] { "-O2" }) })
            {
                foreach (string opt in opts)
                {
                    string common = $"{opt} {march} -fno-pie -no-pie -static -fno-builtin -fno-math-errno -fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables -Wno-unused-command-line-argument";
                    string tag = $"{opt}{march}";
                    string guest = Path.Combine(dir, $"guest{tag}.elf");
                    string linux = Path.Combine(dir, $"linux{tag}");
                    Run(cc, $"{common} -DPARAVIRT_GUEST -ffreestanding -nostdlib -Wl,-Ttext-segment=0x100000 -Wl,--build-id=none -Wl,-e,_start -o {guest} {src} -lgcc");
                    Run(cc, $"{common} -o {linux} {src} -lm");
                    string native = Run(linux, "");
                    (string emulated, ulong count) = RunGuest(File.ReadAllBytes(guest));
                    Assert.True(native.Length > 1000, $"{compiler} {tag}: native output too short");
                    if (native != emulated)
                    {
                        string[] n = native.Split('\n'), e = emulated.Split('\n');
                        int line = 0;
                        while (line < n.Length && line < e.Length && n[line] == e[line])
                        {
                            line++;
                        }
                        Assert.Fail($"{compiler} {tag}: output differs at line {line + 1}: native '{(line < n.Length ? n[line] : "")}', emulator '{(line < e.Length ? e[line] : "")}'");
                    }
                    Assert.True(count > 100_000, $"{compiler} {tag}: only {count} instructions");
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [NativeToolFact("gcc")]
    public void GccFloatingPointGuest_AtEveryOptimizationLevel_IsBitIdenticalToNative() => CheckFloatingPoint("gcc");

    [NativeToolFact("clang-14")]
    public void ClangFloatingPointGuest_AtEveryOptimizationLevel_IsBitIdenticalToNative() => CheckFloatingPoint("clang-14");

    [NativeToolFact("gcc")]
    public void GccGuest_AtEveryOptimizationLevel_MatchesNative() => CheckCompiler("gcc");

    [NativeToolFact("clang-14")]
    public void ClangGuest_AtEveryOptimizationLevel_MatchesNative() => CheckCompiler("clang-14");

    /// <summary>Loads the ELF's PT_LOAD segments, runs it with the debug_write (3) and exit (2) hypercalls; returns the output and instruction count.</summary>
    internal static (string Output, ulong Instructions) RunGuest(byte[] elf)
    {
        using var memory = new GuestMemory(MemorySize);
        ReadOnlySpan<byte> f = elf;
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(f[24..]);
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(f[32..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(f[54..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(f[56..]);
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = f.Slice((int)phoff + (i * phentsize), 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) == 1)
            {
                ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
                ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[24..]);
                ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
                memory.Write(new GuestAddress(paddr), f.Slice((int)offset, (int)filesz));
            }
        }
        memory.Write(new GuestAddress(GuestLayout.HypercallPage), HypercallStub.Bytes);
        using IVirtualMachine vm = new EmulatorBackend().CreateVirtualMachine(memory, new VirtualMachineOptions { InstructionBudget = 2_000_000_000 });
        using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(entry, MemorySize, GuestLayout.BootInfo));
        var output = new StringBuilder();
        while (true)
        {
            VcpuExit exit = vcpu.Run();
            Assert.True(HypercallTrap.IsHypercall(exit), $"guest stopped: {exit.Kind} {exit.Detail} at 0x{exit.Rip:x}");
            HypercallArgs a = HypercallTrap.ReadArguments(vcpu.GetRegisters());
            if (a.Code == 2)
            {
                return (output.ToString(), vcpu.InstructionsRetired!.Value);
            }
            Assert.Equal(3UL, a.Code);
            output.Append(Encoding.UTF8.GetString(memory.GetSpan(new GuestAddress(a.A1), a.A2)));
            HypercallTrap.Complete(vcpu, (long)a.A2);
        }
    }
}
