using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Running;

namespace Paravirt.Bench;

/// <summary>
/// <c>kernel IMAGE RUNS [BACKEND] [SCALE]</c>: runs one kernel of the benchmark suite (bench/guests/suite, a real
/// Paravirt image) RUNS times in this process through <see cref="GuestRunner"/>, each in a new VM, and prints one
/// line per run: the guest's output, its exact instruction count (emulator), wall seconds, the vCPU thread's CPU
/// seconds, the whole process's CPU seconds, and the bytes the vCPU thread allocated. Run 1 includes .NET's own
/// warm-up; every run decodes and translates the guest's code afresh (a new VM has an empty block cache).
/// </summary>
internal static class KernelBench
{
    /// <summary>Guest memory for the kernels: the largest (sort at its maximum scale) needs about 33 MiB.</summary>
    internal const ulong MemorySize = 64UL << 20;

    internal static GuestRunner CreateRunner() =>
        new(new BackendSelector([new KvmBackend(), new EmulatorBackend()]), HypercallDispatcher.WithBuiltIns());

    public static int Run(string imagePath, int runs, string backend, string scale)
    {
        GuestImage image = ElfLoader.LoadFile(imagePath, AbiVersion.Current);
        GuestRunner runner = CreateRunner();
        var same = new SameEveryRun();
        for (int run = 1; run <= runs; run++)
        {
            using var console = new MemoryStream();
            GuestRunOptions options = runner.DefaultOptions with { Backend = backend, MemorySize = MemorySize, ConsoleOutput = console, CommandLine = scale };
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            double thread = CpuClock.ThreadSeconds(), process = CpuClock.ProcessSeconds();
            long started = Stopwatch.GetTimestamp();
            RunResult result = runner.Run(image, options);
            double wall = Stopwatch.GetElapsedTime(started).TotalSeconds;
            double threadCpu = CpuClock.ThreadSeconds() - thread, processCpu = CpuClock.ProcessSeconds() - process;
            long bytes = GC.GetAllocatedBytesForCurrentThread() - allocated;
            string output = Encoding.UTF8.GetString(console.ToArray()).Trim();
            if (result.Outcome != RunOutcome.Exited || result.ExitStatus != 0)
            {
                Console.Error.WriteLine($"{Path.GetFileName(imagePath)} on {backend}: {result.Outcome} (status {result.ExitStatus}): {result.Message}; output: {output}");
                return 1;
            }
            ulong count = result.Statistics.InstructionsRetired ?? 0;
            if (!same.Check(run, output, count))
            {
                return 1;
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"run={run} output=\"{output}\" instructions={count} seconds={wall:F4} thread_cpu_seconds={threadCpu:F4} process_cpu_seconds={processCpu:F4} allocated_bytes={bytes}"));
        }
        return 0;
    }
}
