using SharpFuzz;

namespace Paravirt.Fuzz;

/// <summary>
/// <c>Paravirt.Fuzz HARNESS</c> runs one harness under afl-fuzz (SharpFuzz's fork server, input on stdin; outside
/// afl-fuzz it runs stdin once). <c>Paravirt.Fuzz HARNESS FILE...</c> replays inputs (a finding, a corpus).
/// <c>Paravirt.Fuzz --list</c> names the harnesses. See fuzz/README.md.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] == "--list")
        {
            Console.WriteLine(string.Join('\n', Harness.All.Keys));
            return args.Length == 0 ? 64 : 0;
        }
        if (!Harness.All.TryGetValue(args[0], out Func<Harness>? create))
        {
            Console.Error.WriteLine($"Paravirt.Fuzz: unknown harness '{args[0]}'; one of: {string.Join(", ", Harness.All.Keys)}");
            return 64;
        }
        if (args.Length > 1)
        {
            // Replay runs the plain build (fuzz/Paravirt.Fuzz/bin/...): instrumented assemblies only work under afl-fuzz.
            using Harness replay = create();
            foreach (string file in args.Skip(1))
            {
                replay.Run(File.ReadAllBytes(file));
                Console.WriteLine($"{file}: ok");
            }
            return 0;
        }
        // Under afl-fuzz the instrumented code may only run inside Fuzzer.Run (the coverage map is set up there),
        // so the harness is created by the first execution.
        Harness? harness = null;
        var buffer = new MemoryStream();
        Fuzzer.Run(stream =>
        {
            harness ??= create();
            buffer.SetLength(0);
            stream.CopyTo(buffer);
            try
            {
                harness.Run(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
            }
            catch (Exception e) when (Environment.GetEnvironmentVariable("PARAVIRT_FUZZ_LOG") is { Length: > 0 } log)
            {
                // afl-fuzz keeps the input but not the exception: a finding that does not replay is explained from here.
                File.AppendAllText(log, $"{DateTime.UtcNow:O} {Convert.ToHexString(buffer.GetBuffer(), 0, (int)buffer.Length)}\n{e}\n\n");
                throw;
            }
        });
        harness?.Dispose();
        return 0;
    }
}
