using Paravirt.Bench.Interop;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Running;

namespace Paravirt.Bench;

/// <summary>
/// <c>coldstart IMAGE COUNT BACKEND</c>: how long it takes to get a guest's answer, in process, against the cost of
/// starting a process. Prints key=value lines:
///   first_vm_ms    the first VM of this process: parse the image file, create memory and the VM, load, run to exit
///                  (includes .NET's JIT of that whole path, as a program's first guest pays it; the dotnet host's
///                  own start-up is not included);
///   second_vm_ms   the next VM of the same parsed image (memory, VM and vCPU created, image loaded, run to exit);
///   vm_best_ms, vm_median_ms  over COUNT further VMs; vm_allocated_bytes: bytes this thread allocated per VM (median);
///   empty_vm_median_ms  guest memory, VM and vCPU created and disposed without loading or running anything;
///   instructions   the guest's instruction count (emulator; 0 elsewhere);
///   process_start_* and posix_spawn_*: spawning /bin/true and waiting for it, COUNT times, with .NET's
///                  Process.Start and with posix_spawn + waitpid (after one untimed warm-up each).
/// Every VM must exit with the first one's status and print the same first line.
/// </summary>
internal static class ColdStartBench
{
    public static int Run(string imagePath, int count, string backend)
    {
        GuestRunner runner = KernelBench.CreateRunner();
        BackendChoice choice;
        try
        {
            choice = runner.Backends.Select(backend);
        }
        catch (BackendUnavailableException e)
        {
            Console.WriteLine($"unavailable=\"{e.Message}\"");
            return 0;
        }

        long started = Stopwatch.GetTimestamp();
        GuestImage image = ElfLoader.LoadFile(imagePath, AbiVersion.Current);
        (RunResult first, string firstLine) = RunOnce(runner, image, choice);
        double firstMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (first.Outcome != RunOutcome.Exited)
        {
            Console.Error.WriteLine($"{imagePath} on {backend}: {first.Outcome}: {first.Message}");
            return 1;
        }

        var times = new List<double>(count + 1);
        var allocated = new List<double>(count + 1);
        for (int i = 0; i <= count; i++)
        {
            long bytes = GC.GetAllocatedBytesForCurrentThread();
            long t0 = Stopwatch.GetTimestamp();
            (RunResult r, string line) = RunOnce(runner, image, choice);
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            allocated.Add(GC.GetAllocatedBytesForCurrentThread() - bytes);
            if (r.Outcome != RunOutcome.Exited || r.ExitStatus != first.ExitStatus || line != firstLine)
            {
                Console.Error.WriteLine($"VM {i + 2} differs from the first: {r.Outcome} {r.ExitStatus} '{line}' vs {first.ExitStatus} '{firstLine}'");
                return 1;
            }
        }
        double second = times[0];
        times.RemoveAt(0);
        allocated.RemoveAt(0);

        // The fixed part: guest memory, the VM and its vCPU created and destroyed, nothing loaded or run.
        List<double> emptyVm = Repeat(count, () =>
        {
            using var memory = new GuestMemory(runner.DefaultOptions.MemorySize);
            using IVirtualMachine vm = choice.Backend.CreateVirtualMachine(memory, new VirtualMachineOptions());
            using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(image.Entry, memory.Size, GuestLayout.BootInfo));
        });

        List<double> processStart = Repeat(count, static () =>
        {
            using Process p = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!;
            p.WaitForExit();
        });
        List<double> posixSpawn = PosixSpawnTrue(count);

        var c = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(c, $"backend={choice.Backend.Name} output=\"{firstLine}\" status={first.ExitStatus}"));
        Console.WriteLine(string.Create(c, $"first_vm_ms={firstMs:F3}"));
        Console.WriteLine(string.Create(c, $"second_vm_ms={second:F4}"));
        Console.WriteLine(string.Create(c, $"vm_best_ms={times.Min():F4} vm_median_ms={Median(times):F4} vm_allocated_bytes={Median(allocated):F0} vms={times.Count}"));
        Console.WriteLine(string.Create(c, $"empty_vm_median_ms={Median(emptyVm):F4} instructions={first.Statistics.InstructionsRetired ?? 0}"));
        Console.WriteLine(string.Create(c, $"process_start_best_ms={processStart.Min():F4} process_start_median_ms={Median(processStart):F4}"));
        Console.WriteLine(string.Create(c, $"posix_spawn_best_ms={posixSpawn.Min():F4} posix_spawn_median_ms={Median(posixSpawn):F4}"));
        return 0;
    }

    private static (RunResult Result, string FirstLine) RunOnce(GuestRunner runner, GuestImage image, BackendChoice choice)
    {
        using var console = new MemoryStream();
        RunResult r = runner.Run(image, runner.DefaultOptions with { ConsoleOutput = console }, choice);
        string text = Encoding.UTF8.GetString(console.GetBuffer(), 0, (int)console.Length);
        int newline = text.IndexOf('\n', StringComparison.Ordinal);
        return (r, newline < 0 ? text : text[..newline]);
    }

    private static List<double> Repeat(int count, Action action)
    {
        action(); // warm-up: JIT and page cache
        var ms = new List<double>(count);
        for (int i = 0; i < count; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            action();
            ms.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        return ms;
    }

    private static unsafe List<double> PosixSpawnTrue(int count)
    {
        // argv = { "/bin/true", NULL }, envp = { NULL }, in native memory for the whole loop.
        byte* path = (byte*)Marshal.StringToCoTaskMemUTF8("/bin/true");
        byte** vectors = (byte**)NativeMemory.AllocZeroed(3, (nuint)sizeof(byte*));
        vectors[0] = path;
        try
        {
            return Repeat(count, () => SpawnAndWait(path, vectors, vectors + 2));
        }
        finally
        {
            NativeMemory.Free(vectors);
            Marshal.FreeCoTaskMem((nint)path);
        }
    }

    private static unsafe void SpawnAndWait(byte* path, byte** argv, byte** envp)
    {
        int error = Libc.posix_spawn(out int pid, path, 0, 0, argv, envp);
        if (error != 0)
        {
            throw new InvalidOperationException($"posix_spawn /bin/true failed: errno {error}");
        }
        if (Libc.waitpid(pid, out int status, 0) != pid || status != 0)
        {
            throw new InvalidOperationException($"waitpid for /bin/true: status {status}, errno {Marshal.GetLastPInvokeError()}");
        }
    }

    internal static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n == 0 ? double.NaN : n % 2 == 1 ? sorted[n / 2] : (sorted[(n / 2) - 1] + sorted[n / 2]) / 2;
    }
}
