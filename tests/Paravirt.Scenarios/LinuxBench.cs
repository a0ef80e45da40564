using System.Globalization;

namespace Paravirt.Scenarios;

/// <summary>
/// bench/linux.sh's measurements (<c>Paravirt.Scenarios GUESTDIR --bench-linux [runs]</c>), printed as BENCH lines:
/// start-up to main (the first byte of standard output) and to exit of the three Linux samples, as guests and as the
/// same binaries run natively, and the system call round trip (getppid in a loop) both ways. Best of the runs.
/// </summary>
internal static class LinuxBench
{
    private static readonly string[] Samples = ["linux-c", "linux-musl", "linux-dotnet"];

    internal static int Run(string guestDir, int runs)
    {
        IHypervisorBackend backend = string.Equals(Environment.GetEnvironmentVariable("PARAVIRT_SCENARIO_BACKEND"), "emulator", StringComparison.Ordinal)
            ? new EmulatorBackend() : new KvmBackend();
        if (!backend.Capabilities.HasFlag(BackendCapabilities.SupervisorMode) || !backend.Probe().IsAvailable)
        {
            Console.WriteLine($"BENCH unavailable {backend.Name}: {BackendSelector.Lacks(backend, BackendCapabilities.SupervisorMode)}");
            return 2;
        }
        Console.WriteLine($"BENCH backend {backend.Name} {backend.Probe().Reason}");
        string dir = Path.Combine(guestDir, "linux");
        foreach (string sample in Samples)
        {
            string path = Path.Combine(dir, sample);
            double nm = double.MaxValue, ne = double.MaxValue, gm = double.MaxValue, ge = double.MaxValue;
            for (int i = 0; i < runs; i++)
            {
                (double m, double e) = Native(path, [path, "bench"], ["PARAVIRT_SAMPLE=1"]);
                nm = Math.Min(nm, m);
                ne = Math.Min(ne, e);
                (m, e) = Guest(path, backend, ["bench"], ["PARAVIRT_SAMPLE=1"]);
                gm = Math.Min(gm, m);
                ge = Math.Min(ge, e);
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"BENCH startup {sample} native_main_ms={nm:F2} native_exit_ms={ne:F2} guest_main_ms={gm:F2} guest_exit_ms={ge:F2}"));
        }

        string edge = Path.Combine(dir, "linux-edge");
        const long Native_Count = 2_000_000;
        long guestCount = backend is EmulatorBackend ? 200_000 : 2_000_000;
        double nativeNs = double.MaxValue, guestNs = double.MaxValue;
        for (int i = 0; i < runs; i++)
        {
            nativeNs = Math.Min(nativeNs, ParseNs(NativeOutput(edge, ["syscalls", Native_Count.ToString(CultureInfo.InvariantCulture)])));
            guestNs = Math.Min(guestNs, ParseNs(GuestOutput(edge, backend, ["syscalls", guestCount.ToString(CultureInfo.InvariantCulture)])));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"BENCH syscall getppid native_ns={nativeNs:F1} guest_ns={guestNs:F1} native_calls={Native_Count} guest_calls={guestCount}"));
        return 0;
    }

    private static double ParseNs(string output)
    {
        string[] f = output.Trim().Split(' ');
        if (f.Length != 3 || f[0] != "syscalls")
        {
            throw new InvalidOperationException($"unexpected output: {output}");
        }
        return double.Parse(f[2], CultureInfo.InvariantCulture);
    }

    /// <summary>Milliseconds from Process.Start to the first byte of standard output, and to exit.</summary>
    private static (double Main, double Exit) Native(string path, string[] argv, string[] env)
    {
        // standard input at end of file, as the guest's (no console device)
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (string a in argv.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment.Clear();
        foreach (string e in env)
        {
            int eq = e.IndexOf('=', StringComparison.Ordinal);
            psi.Environment[e[..eq]] = e[(eq + 1)..];
        }
        long start = Stopwatch.GetTimestamp();
        using Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        Stream stdout = p.StandardOutput.BaseStream;
        int first = stdout.ReadByte();
        double main = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        stdout.CopyTo(Stream.Null);
        p.WaitForExit();
        double exit = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        if (first < 0)
        {
            throw new InvalidOperationException($"{path} printed nothing");
        }
        return (main, exit);
    }

    private static string NativeOutput(string path, string[] args)
    {
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return output;
    }

    /// <summary>Records when the first byte arrives; keeps the bytes.</summary>
    private sealed class FirstWriteStream(long start) : Stream
    {
        private readonly MemoryStream _bytes = new();

        public double FirstMs { get; private set; } = double.NaN;

        public byte[] ToArray() => _bytes.ToArray();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (double.IsNaN(FirstMs) && buffer.Length > 0)
            {
                FirstMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
            _bytes.Write(buffer);
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _bytes.Length;
        public override long Position { get => _bytes.Length; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private static (RunResult Result, FirstWriteStream Output, double ExitMs) RunGuest(string path, IHypervisorBackend backend, string[] args, string[] env)
    {
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        var runner = new GuestRunner(new BackendSelector([backend]), new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]));
        string disk = Path.Combine(Path.GetTempPath(), $"paravirt-bench-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(disk, new byte[1 << 20]);
        try
        {
            using var block = new BlockDevice("disk0", disk);
            long start = Stopwatch.GetTimestamp();
            var output = new FirstWriteStream(start);
            RunResult r = runner.Run(image, new GuestRunOptions
            {
                Backend = backend.Name,
                ConsoleOutput = output,
                Devices = [block],
                MemorySize = 256UL << 20,
                Arguments = [path, .. args],
                Environment = env,
                Timeout = TimeSpan.FromMinutes(5),
            });
            double exit = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (r.Outcome != RunOutcome.Exited)
            {
                throw new InvalidOperationException($"{path}: {r.Outcome} {r.Message}");
            }
            return (r, output, exit);
        }
        finally
        {
            File.Delete(disk);
        }
    }

    private static (double Main, double Exit) Guest(string path, IHypervisorBackend backend, string[] args, string[] env)
    {
        (_, FirstWriteStream output, double exit) = RunGuest(path, backend, args, env);
        return (output.FirstMs, exit);
    }

    private static string GuestOutput(string path, IHypervisorBackend backend, string[] args)
    {
        (_, FirstWriteStream output, _) = RunGuest(path, backend, args, []);
        return Encoding.UTF8.GetString(output.ToArray());
    }
}
