using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Memory;
using Paravirt.Hypervisor.Hypercalls;

namespace Paravirt.Emulator.Tests;

/// <summary>A fact that is skipped, with the reason shown, when a compiler is not installed.</summary>
public sealed class RequiresCompilerFactAttribute : FactAttribute
{
    public RequiresCompilerFactAttribute(string compiler)
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
        {
            Skip = "the native half of this test runs a Linux x86-64 program";
        }
        else if (CompiledGuestTests.FindTool(compiler) is null)
        {
            Skip = $"{compiler} is not installed (apt-get install {(compiler.StartsWith("clang", StringComparison.Ordinal) ? "clang-14" : "gcc")})";
        }
    }
}

/// <summary>
/// End to end: bench/guests/compute.c (CRC32, SHA-256, integer mix) compiled by gcc and clang at -O0..-O3/-Os, once as
/// a freestanding Paravirt guest run on the emulator and once as a static Linux program run natively; the checksums
/// must be equal. This catches any instruction those compilers emit that the emulator lacks or gets wrong.
/// </summary>
public sealed class CompiledGuestTests
{
    private const ulong MemorySize = 8UL << 20;

    internal static string? FindTool(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            string p = Path.Combine(dir, name);
            if (File.Exists(p))
            {
                return p;
            }
        }
        return null;
    }

    private static string RepoFile(string relative)
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, relative);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");
    }

    private static string Run(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using Process p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {args} failed ({p.ExitCode}): {stderr}");
        return stdout;
    }

    private static void CheckCompiler(string compiler)
    {
        string cc = FindTool(compiler)!;
        string src = RepoFile("bench/guests/compute.c");
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

    [RequiresCompilerFact("gcc")]
    public void GccGuest_AtEveryOptimizationLevel_MatchesNative() => CheckCompiler("gcc");

    [RequiresCompilerFact("clang-14")]
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
