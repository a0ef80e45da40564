using System.Text.RegularExpressions;

namespace Paravirt.Scenarios;

/// <summary>
/// The same guest gives the same console output and exit status on KVM and on the emulator: each sample runs on
/// both backends, inside the nested VM, from the same inputs, and the outputs are compared byte for byte (only the
/// wall-clock line's digits are masked: that is the one input that differs between two runs).
/// </summary>
internal static partial class CrossBackendScenarios
{
    internal static IEnumerable<(string Name, Func<string> Run)> All(string guestDir) =>
    [
        ("same-output-hello", () => Compare(guestDir, "hello", "", withDisk: false)),
        ("same-output-blk", () => Compare(guestDir, "blk", "seed=11 requests=128", withDisk: true)),
        ("same-output-kernel", CompareKernel),
        ("same-output-code-from-disk", CompareCodeFromDisk),
    ];

    /// <summary>
    /// The kernel-style guest (<see cref="KernelGuest"/>: own GDT/IDT/TSS/page tables, exceptions, SYSCALL/SYSRET,
    /// user-mode faults, IRETQ, the paravirtual timer at CPL 0 and 3, a double fault) prints the same event log on
    /// KVM and on the emulator: the emulator's system side against real hardware virtualization.
    /// </summary>
    private static string CompareKernel()
    {
        if (KvmPvm.ServesDevKvm())
        {
            throw new ScenarioSkippedException("kvm_pvm runs only PVM-aware guest kernels, and this guest loads its own GDT, IDT and page tables; tests/nested-kvm/run.sh runs it on kvm_amd");
        }
        byte[] elf = KernelGuest.Build(out _);
        (RunResult kvm, string kvmOut) = RunImage(elf, new KvmBackend(), []);
        (RunResult emu, string emuOut) = RunImage(elf, new EmulatorBackend(), []);
        if (kvm.Outcome != RunOutcome.Exited || emu.Outcome != RunOutcome.Exited || kvm.ExitStatus != 0 || emu.ExitStatus != 0)
        {
            throw new InvalidOperationException($"kvm: {kvm.Outcome} {kvm.ExitStatus} ({kvm.Message}); emulator: {emu.Outcome} {emu.ExitStatus} ({emu.Message}); kvm log | {kvmOut.ReplaceLineEndings(" | ")}");
        }
        if (kvmOut != emuOut)
        {
            string[] a = kvmOut.Split('\n'), b = emuOut.Split('\n');
            int first = Enumerable.Range(0, Math.Min(a.Length, b.Length)).FirstOrDefault(i => a[i] != b[i], Math.Min(a.Length, b.Length));
            throw new InvalidOperationException($"event logs differ at record {first}: kvm \"{(first < a.Length ? a[first] : "(end)")}\" vs emulator \"{(first < b.Length ? b[first] : "(end)")}\"; kvm log | {kvmOut.ReplaceLineEndings(" | ")}");
        }
        return $"identical event logs ({KernelGuest.ParseLog(kvmOut).Count} records: exceptions, FPU faults (#NM, #MF, #PF), syscalls, user-mode faults, timer interrupts, a double fault) on kvm and emulator";
    }

    /// <summary>A guest reads code from disk over code it already ran and runs it: both backends run the new code (exit status 12).</summary>
    private static string CompareCodeFromDisk()
    {
        byte[] elf = CodeFromDiskGuest.Build();
        var statuses = new List<long>();
        foreach (IHypervisorBackend backend in new IHypervisorBackend[] { new KvmBackend(), new EmulatorBackend() })
        {
            string disk = CodeFromDiskGuest.WriteDisk();
            try
            {
                using var device = new BlockDevice("disk0", disk);
                (RunResult r, _) = RunImage(elf, backend, [device]);
                if (r.Outcome != RunOutcome.Exited)
                {
                    throw new InvalidOperationException($"{backend.Name}: {r.Outcome} ({r.Message})");
                }
                statuses.Add(r.ExitStatus);
            }
            finally
            {
                File.Delete(disk);
            }
        }
        if (statuses[0] != 12 || statuses[1] != 12)
        {
            throw new InvalidOperationException($"exit status kvm {statuses[0]}, emulator {statuses[1]}; 12 means the new code ran");
        }
        return "both backends ran the code the block device wrote over code the guest had run (exit status 12)";
    }

    private static (RunResult Result, string Output) RunImage(byte[] elf, IHypervisorBackend backend, IReadOnlyList<VirtualDevice> devices)
    {
        var runner = new GuestRunner(new BackendSelector([backend]), new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]));
        GuestImage image = ElfLoader.Parse(elf, Paravirt.Abi.AbiVersion.Current);
        using var console = new MemoryStream();
        RunResult result = runner.Run(image, runner.DefaultOptions with { Backend = backend.Name, ConsoleOutput = console, Devices = devices, Timeout = TimeSpan.FromSeconds(120) });
        return (result, Encoding.ASCII.GetString(console.ToArray()));
    }

    private static string Compare(string guestDir, string sample, string commandLine, bool withDisk)
    {
        (RunResult kvm, string kvmOut) = Run(guestDir, sample, commandLine, withDisk, new KvmBackend());
        (RunResult emu, string emuOut) = Run(guestDir, sample, commandLine, withDisk, new EmulatorBackend());
        if (kvm.Outcome != RunOutcome.Exited || emu.Outcome != RunOutcome.Exited)
        {
            throw new InvalidOperationException($"kvm: {kvm.Outcome} ({kvm.Message}); emulator: {emu.Outcome} ({emu.Message})");
        }
        if (kvm.ExitStatus != emu.ExitStatus)
        {
            throw new InvalidOperationException($"exit status differs: kvm {kvm.ExitStatus}, emulator {emu.ExitStatus}");
        }
        string a = Mask(kvmOut), b = Mask(emuOut);
        if (a != b)
        {
            throw new InvalidOperationException($"console output differs: kvm \"{a.ReplaceLineEndings(" | ")}\" vs emulator \"{b.ReplaceLineEndings(" | ")}\"");
        }
        if (kvm.Statistics.Hypercalls.Count != emu.Statistics.Hypercalls.Count
            || kvm.Statistics.Hypercalls.Any(h => emu.Statistics.Hypercalls.GetValueOrDefault(h.Key) != h.Value))
        {
            throw new InvalidOperationException("the guests made different hypercalls on the two backends");
        }
        return $"{sample}: identical output ({Encoding.UTF8.GetByteCount(kvmOut)} bytes), status {kvm.ExitStatus} and hypercall counts on kvm and emulator";
    }

    private static (RunResult, string) Run(string guestDir, string sample, string commandLine, bool withDisk, IHypervisorBackend backend)
    {
        string? diskPath = null;
        var devices = new List<VirtualDevice>();
        try
        {
            if (withDisk)
            {
                diskPath = Path.Combine(Path.GetTempPath(), $"paravirt-same-{Guid.NewGuid():N}.img");
                File.WriteAllBytes(diskPath, new byte[4 << 20]);
                devices.Add(new BlockDevice("disk0", diskPath));
            }
            return DeviceScenarios.Run(guestDir, sample, devices, commandLine, backend);
        }
        finally
        {
            devices.ForEach(d => d.Dispose());
            if (diskPath is not null)
            {
                File.Delete(diskPath);
            }
        }
    }

    private static string Mask(string output) => WallClock().Replace(output, m => Digits().Replace(m.Value, "#"));

    [GeneratedRegex("wall clock [0-9T:Z-]+")]
    private static partial Regex WallClock();

    [GeneratedRegex("[0-9]")]
    private static partial Regex Digits();
}
