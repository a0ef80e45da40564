using System.Text;
using System.Text.RegularExpressions;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Devices;
using Paravirt.Hypervisor.Devices.Block;
using Paravirt.Hypervisor.Vcpu;

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
    ];

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
