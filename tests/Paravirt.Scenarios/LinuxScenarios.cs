using Paravirt.Hypervisor.Devices.Console;

namespace Paravirt.Scenarios;

/// <summary>
/// Static Linux executables (samples/linux-*, built into artifacts/guests/linux/) on the Linux personality: each runs
/// natively inside the nested VM and as a guest on KVM, with the same arguments, environment and standard input, and
/// the two runs must print the same bytes and end with the same status.
/// </summary>
internal static class LinuxScenarios
{
    // TODO(console-eof): feed real input ("first line of input\nsecond line\nthe end\n") through a console device once
    // the console end-of-input flag is in the ABI; until then the guest gets no console device (standard input at end
    // of file at once), and the native run an empty standard input.
    internal const string StandardInput = "";

    private const int DiskSize = 1 << 20;

    internal static IEnumerable<(string Name, Func<string> Run)> All(string guestDir)
    {
        string dir = Path.Combine(guestDir, "linux");
        if (!Directory.Exists(dir))
        {
            return [];
        }
        var all = Directory.GetFiles(dir).Order(StringComparer.Ordinal)
            .Select(path => ($"kvm-{Path.GetFileName(path)}", (Func<string>)(() => CompareWithNative(path))))
            .ToList();
        string edge = Path.Combine(dir, "linux-edge");
        if (File.Exists(edge))
        {
            all.Add(("kvm-linux-edge-refused", () => Refused(edge)));
            all.Add(("kvm-linux-hypercall", () => UserHypercalls(edge)));
            all.Add(("kvm-linux-oom", () => OutOfMemory(edge)));
            all.Add(("kvm-linux-stdin", () => Stdin(edge)));
            all.Add(("kvm-linux-fuzz", () => Fuzz(edge)));
        }
        string dotnet = Path.Combine(dir, "linux-dotnet");
        if (File.Exists(dotnet))
        {
            all.Add(("kvm-linux-dotnet-hypercall", () => DotnetHypercalls(dotnet)));
        }
        return all;
    }

    /// <summary>An application that touches more memory than the guest has is killed as by the OOM killer (137), with the advice.</summary>
    private static string OutOfMemory(string path)
    {
        (RunResult result, string output) = RunGuest(path, ["oom"], [], UseEmulator ? new EmulatorBackend() : new KvmBackend(), memory: 32UL << 20);
        if (result.Outcome != RunOutcome.Exited || result.ExitStatus != 137 || result.TerminatingSignal != 9 || !output.Contains("--memory", StringComparison.Ordinal))
        {
            throw new ScenarioFailedException($"{result.Outcome} {result.ExitStatus} ({result.Message}): {output.ReplaceLineEndings(" | ")}");
        }
        return $"status 137; {output.Trim()}; {result.Message}";
    }

    /// <summary>Thousands of system calls with hostile arguments: the library OS answers every one and never panics.</summary>
    private static string Fuzz(string path)
    {
        long total = 0;
        foreach (int seed in new[] { 1, 2, 3 })
        {
            (RunResult result, string output) = RunGuest(path, ["fuzz", seed.ToString(System.Globalization.CultureInfo.InvariantCulture), "20000"], [], UseEmulator ? new EmulatorBackend() : new KvmBackend());
            string last = output.TrimEnd('\n').Split('\n')[^1];
            if (result.Outcome != RunOutcome.Exited || result.ExitStatus != 0 || !last.EndsWith("the library OS stayed up", StringComparison.Ordinal) || output.Contains("panic", StringComparison.Ordinal))
            {
                throw new ScenarioFailedException($"seed {seed}: {result.Outcome} {result.ExitStatus} ({result.Message}): {output[Math.Max(0, output.Length - 600)..].ReplaceLineEndings(" | ")}");
            }
            total += long.Parse(last.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        }
        return $"{total} hostile system calls over 3 seeds answered; no panic";
    }

    /// <summary>Standard input comes from the console device: a line written by the host reaches fd 0.</summary>
    private static string Stdin(string path)
    {
        (RunResult result, string output) = RunGuest(path, ["stdin"], [], UseEmulator ? new EmulatorBackend() : new KvmBackend(), input: "typed on the host\n");
        if (result.Outcome != RunOutcome.Exited || result.ExitStatus != 0 || output != "stdin: typed on the host\n")
        {
            throw new ScenarioFailedException($"{result.Outcome} {result.ExitStatus} ({result.Message}): {output.ReplaceLineEndings(" | ")}");
        }
        return "a line from the host's console input reached the application's fd 0";
    }

    /// <summary>A Linux application reaches the host application's user-defined hypercalls through the library OS.</summary>
    private static string UserHypercalls(string path)
    {
        (RunResult result, string output) = RunGuest(path, ["hypercall"], [], UseEmulator ? new EmulatorBackend() : new KvmBackend(), new TestHypercalls());
        const string expected =
            "on paravirt: yes\n" +
            "hypercall 0x1000(20, 2) = 42\n" +
            "hypercall 0x1001 = 27 \"BUFFER TO THE HOST AND BACK\"\n" +
            "unregistered 0x1fff = -38\n" +
            "core code 0x0100 (console_write) = -22\n" +
            "oversized buffer = -7\n" +
            "wild buffer = -14\n";
        if (result.Outcome != RunOutcome.Exited || result.ExitStatus != 0 || output != expected)
        {
            throw new ScenarioFailedException($"{result.Outcome} {result.ExitStatus} ({result.Message}): {output.ReplaceLineEndings(" | ")}");
        }
        return "values and a buffer reached the host's user hypercalls and came back; core codes, oversized and wild buffers refused";
    }

    /// <summary>The same from .NET, through Paravirt.Guest.Linux's Hypercall.Call.</summary>
    private static string DotnetHypercalls(string path)
    {
        (RunResult result, string output) = RunGuest(path, ["hypercall"], [], UseEmulator ? new EmulatorBackend() : new KvmBackend(), new TestHypercalls());
        const string expected = "on paravirt: yes\nhypercall 0x1000(20, 2) = 42\nhypercall 0x1001 = 21 \"FROM .NET TO THE HOST\"\n";
        if (result.Outcome != RunOutcome.Exited || result.ExitStatus != 0 || output != expected)
        {
            throw new ScenarioFailedException($"{result.Outcome} {result.ExitStatus} ({result.Message}): {output.ReplaceLineEndings(" | ")}");
        }
        return "Hypercall.Call reached the host's user hypercalls with values and a buffer";
    }

    /// <summary>0x1000: 2 * a1 + a2. 0x1001: upper-cases the buffer (a1 = guest-physical address, a2 = length).</summary>
    private sealed class TestHypercalls : IHypercallProvider
    {
        public bool IsBuiltIn => false;

        public IEnumerable<HypercallRegistration> GetHypercalls() =>
        [
            new(0x1000, "double", static (in HypercallArgs a, GuestSession _) => (long)(2 * a.A1 + a.A2)),
            new(0x1001, "upper", static (in HypercallArgs a, GuestSession s) =>
            {
                if (a.A2 > 4096 || !s.Memory.TryGetSpan(new Hypervisor.Memory.GuestAddress(a.A1), a.A2, out Span<byte> text))
                {
                    return (long)HypercallStatus.Fault;
                }
                for (int i = 0; i < text.Length; i++)
                {
                    text[i] = (byte)char.ToUpperInvariant((char)text[i]);
                }
                return text.Length;
            }),
        ];
    }

    /// <summary>fork and execve answer -ENOSYS (one process), and the host hears of each unimplemented call.</summary>
    private static string Refused(string path)
    {
        (RunResult result, string output) = RunGuest(path, ["refused"], [], UseEmulator ? new EmulatorBackend() : new KvmBackend());
        const string expected = "fork: -1 ENOSYS\nexecve: -1 ENOSYS\nsyscall(1000): -1 ENOSYS\nrefused: 0 failure(s)\n";
        if (result.Outcome != RunOutcome.Exited || result.ExitStatus != 0 || output != expected)
        {
            throw new ScenarioFailedException($"{result.Outcome} {result.ExitStatus} ({result.Message}): {output.ReplaceLineEndings(" | ")}");
        }
        ulong[] reported = [.. result.Statistics.UnimplementedSyscalls.Keys.Order()];
        if (!reported.Contains(57UL) || !reported.Contains(59UL) || !reported.Contains(1000UL))
        {
            throw new ScenarioFailedException($"the host heard of {string.Join(",", reported)}, expected fork (57), execve (59) and 1000 among them");
        }
        return $"fork, execve and syscall 1000 got -ENOSYS; the host was told of {string.Join(", ", reported.Select(Hypervisor.Linux.LinuxSyscallNames.Describe))}";
    }

    private static bool UseEmulator =>
        string.Equals(Environment.GetEnvironmentVariable("PARAVIRT_SCENARIO_BACKEND"), "emulator", StringComparison.Ordinal);

    private static string CompareWithNative(string path)
    {
        IHypervisorBackend backend = UseEmulator ? new EmulatorBackend() : new KvmBackend();
        if (!backend.Capabilities.HasFlag(BackendCapabilities.SupervisorMode))
        {
            throw new ScenarioSkippedException($"{backend.Name}: {BackendSelector.Lacks(backend, BackendCapabilities.SupervisorMode)}");
        }
        string[] args = ["alpha", "beta gamma"];
        string[] env = ["PARAVIRT_SAMPLE=1", "LANG=C"];
        // The samples that use a disk find it in DISK: natively a file, in the guest the block device (same size, zeros).
        string disk = Path.Combine(Path.GetTempPath(), $"paravirt-linux-native-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(disk, new byte[DiskSize]);
        int nativeStatus;
        string nativeOut;
        try
        {
            (nativeStatus, nativeOut) = RunNative(path, args, [.. env, $"DISK={disk}"]);
        }
        finally
        {
            File.Delete(disk);
        }
        (RunResult result, string guestOut) = RunGuest(path, args, [.. env, "DISK=/dev/disk0"], backend);
        if (result.Outcome != RunOutcome.Exited)
        {
            throw new ScenarioFailedException($"{result.Outcome}: {result.Message}; output: {guestOut.ReplaceLineEndings(" | ")}");
        }
        if (result.ExitStatus != nativeStatus)
        {
            throw new ScenarioFailedException($"exit status {result.ExitStatus} ({result.Message}), natively {nativeStatus}; output: {guestOut.ReplaceLineEndings(" | ")}");
        }
        if (guestOut != nativeOut)
        {
            throw new ScenarioFailedException($"output differs: guest \"{guestOut.ReplaceLineEndings(" | ")}\" vs native \"{nativeOut.ReplaceLineEndings(" | ")}\"");
        }
        if (nativeStatus > 128 && (result.TerminatingSignal != nativeStatus - 128 || !result.Message.Contains("killed by", StringComparison.Ordinal)))
        {
            throw new ScenarioFailedException($"natively killed by signal {nativeStatus - 128}; the guest's result says signal {result.TerminatingSignal}: {result.Message}");
        }
        string unimplemented = result.Statistics.UnimplementedSyscalls.Count == 0 ? "none"
            : string.Join(",", result.Statistics.UnimplementedSyscalls.Keys.Order().Select(Hypervisor.Linux.LinuxSyscallNames.Describe));
        string killed = result.TerminatingSignal is not null ? $" ({result.Message})" : "";
        return $"{Path.GetFileName(path)}: same output ({Encoding.UTF8.GetByteCount(guestOut)} bytes) and status {nativeStatus}{killed} as natively; {result.Statistics.Hypercalls.Values.Sum()} hypercalls in {result.Statistics.Elapsed.TotalMilliseconds:F0} ms; -ENOSYS: {unimplemented}";
    }

    internal static (int Status, string Output) RunNative(string path, string[] args, string[] env)
    {
        var psi = new ProcessStartInfo(path)
        {
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment.Clear();
        foreach (string e in env)
        {
            int eq = e.IndexOf('=', StringComparison.Ordinal);
            psi.Environment[e[..eq]] = e[(eq + 1)..];
        }
        using Process p = Process.Start(psi)!;
        try
        {
            p.StandardInput.Write(StandardInput);
            p.StandardInput.Close();
        }
        catch (IOException)
        {
            // the program exited (or closed its input) without reading it all
        }
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(120_000))
        {
            p.Kill();
            throw new ScenarioFailedException($"{path} did not exit natively within 120 s");
        }
        return (p.ExitCode, output);
    }

    internal static (RunResult Result, string Output) RunGuest(string path, string[] args, string[] env, IHypervisorBackend backend, IHypercallProvider? extra = null, ulong memory = 256UL << 20, string? input = null)
    {
        if (!backend.Capabilities.HasFlag(BackendCapabilities.SupervisorMode))
        {
            throw new ScenarioSkippedException($"{backend.Name}: {BackendSelector.Lacks(backend, BackendCapabilities.SupervisorMode)}");
        }
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        if (image.Kind != GuestImageKind.LinuxExecutable)
        {
            throw new ScenarioFailedException($"{path} was not recognised as a Linux executable");
        }
        var runner = new GuestRunner(new BackendSelector([backend]), new HypercallDispatcher(extra is null ? [new CoreHypercalls(), new DeviceHypercalls()] : [new CoreHypercalls(), new DeviceHypercalls(), extra]));
        using var console = new MemoryStream();
        string disk = Path.Combine(Path.GetTempPath(), $"paravirt-linux-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(disk, new byte[DiskSize]);
        try
        {
            using var block = new BlockDevice("disk0", disk);
            using var stdin = input is null ? null : new ConsoleDevice("console0", console, new MemoryStream(Encoding.UTF8.GetBytes(input)));
            RunResult r = runner.Run(image, new GuestRunOptions
            {
                Backend = backend.Name,
                ConsoleOutput = console,
                Devices = stdin is null ? [block] : [stdin, block],
                MemorySize = memory,
                Arguments = [path, .. args],
                Environment = env,
                Timeout = TimeSpan.FromSeconds(30),
                CommandLine = Environment.GetEnvironmentVariable("PARAVIRT_LINUX_CMDLINE") ?? "",
            });
            return (r, Encoding.UTF8.GetString(console.ToArray()));
        }
        finally
        {
            File.Delete(disk);
        }
    }
}
