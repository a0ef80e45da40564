using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Paravirt.Abi;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The smoke test of the emulator benchmark suite (bench/emulator-suite.sh): bench/guests/build-suite.sh builds
/// every kernel of bench/guests/suite once, and each, at scale 1, must print on the emulator (a real Paravirt run
/// through GuestRunner) exactly the line it prints as a native Linux process: its name, scale and checksum. The
/// kernels check themselves against known answers (FIPS vectors, published benchmark outputs), so a kernel that
/// is wrong on both sides fails too ("NAME FAIL ..."). Correctness only; the suite's timings live in bench/RESULTS.md.
/// </summary>
public sealed partial class BenchSuiteTests
{
    [GeneratedRegex(@"^[a-z0-9-]+ scale=1 checksum=[0-9a-f]{16}$")]
    private static partial Regex ResultLine();

    [NativeToolFact("gcc")]
    public void EveryKernel_AtScale1_PrintsTheSameChecksumNativelyAndOnTheEmulator()
    {
        string script = RepoPaths.File("bench/guests/build-suite.sh");
        string[] sources = Directory.GetFiles(Path.GetDirectoryName(RepoPaths.File("bench/guests/suite/runtime.c"))!, "*.c");
        string dir = Directory.CreateTempSubdirectory("paravirt-bench-suite-").FullName;
        try
        {
            string[] kernels = ProcessRunner.RunChecked("bash", [script, dir]).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(sources.Length - 1, kernels.Length); // every kernel but runtime.c
            var runner = new GuestRunner(new BackendSelector([new EmulatorBackend()]), new HypercallDispatcher([new CoreHypercalls()]));
            var failures = new List<string>();
            foreach (string kernel in kernels)
            {
                string elf = Path.Combine(dir, kernel + ".elf");
                string native = ProcessRunner.RunChecked(elf, ["1"]).Trim();
                using var console = new MemoryStream();
                RunResult r = runner.Run(ElfLoader.LoadFile(elf, AbiVersion.Current), runner.DefaultOptions with
                {
                    Backend = EmulatorBackend.BackendName,
                    CommandLine = "1",
                    ConsoleOutput = console,
                    InstructionBudget = 1_000_000_000,
                });
                string emulated = Encoding.UTF8.GetString(console.ToArray()).Trim();
                if (!ResultLine().IsMatch(native) || r.Outcome != RunOutcome.Exited || r.ExitStatus != 0 || emulated != native)
                {
                    failures.Add($"{kernel}: native '{native}', emulator '{emulated}' ({r.Outcome}, status {r.ExitStatus}: {r.Message})");
                }
            }
            Assert.True(failures.Count == 0, string.Join('\n', failures));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
