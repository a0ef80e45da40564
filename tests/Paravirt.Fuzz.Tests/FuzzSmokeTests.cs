namespace Paravirt.Fuzz.Tests;

/// <summary>
/// The short, deterministic part of fuzzing that runs in every <c>make test</c>: each harness replays its committed
/// corpus (fuzz/corpus/NAME: the seeds, and every finding kept as a regression) and then a fixed number of inputs
/// mutated from it with a fixed seed. The long coverage-guided campaigns run under afl-fuzz (fuzz/run-campaign.sh).
/// </summary>
public sealed class FuzzSmokeTests
{
    /// <summary>Mutated inputs per harness; a few seconds each on a loaded 2-core machine.</summary>
    private const int Iterations = 400;

    public static TheoryData<string> Harnesses() => [.. Harness.All.Keys];

    [Theory]
    [MemberData(nameof(Harnesses))]
    public void Corpus_replays_and_seeded_mutations_find_nothing(string name)
    {
        string dir = Path.Combine(RepoPaths.Root, "fuzz", "corpus", name);
        string[] files = Directory.Exists(dir) ? [.. Directory.GetFiles(dir).Order(StringComparer.Ordinal)] : [];
        Assert.True(files.Length > 0, $"{dir} has no seed inputs");
        using Harness harness = Harness.All[name]();
        var corpus = new List<byte[]>();
        foreach (string file in files)
        {
            byte[] input = File.ReadAllBytes(file);
            corpus.Add(input);
            Run(harness, input, $"{name}: corpus file {Path.GetFileName(file)}");
        }
        var random = new Random(name.Aggregate(0x5eed, (h, c) => (h * 31) + c)); // string.GetHashCode differs per process
        for (int i = 0; i < Iterations; i++)
        {
            byte[] input = Mutator.Mutate(corpus[random.Next(corpus.Count)], random);
            Run(harness, input, $"{name}: mutation {i} ({Convert.ToHexString(input.AsSpan(0, Math.Min(64, input.Length)))}...)");
        }
        bool canRun = harness is not Harnesses.EmulatorDifferentialHarness e || e.Available;
        Assert.True(!canRun || harness.Exercised >= Iterations / 10, $"{name}: the target was exercised only {harness.Exercised} times in {files.Length + Iterations} inputs");
    }

    private static void Run(Harness harness, byte[] input, string what)
    {
        try
        {
            harness.Run(input);
        }
        catch (Exception ex)
        {
            Assert.Fail($"{what}: {ex}");
        }
    }
}
