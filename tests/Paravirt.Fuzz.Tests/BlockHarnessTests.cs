using Paravirt.Fuzz.Harnesses;

namespace Paravirt.Fuzz.Tests;

/// <summary>The block harness's own rules, pinned by the campaign findings that were the harness's mistakes.</summary>
public sealed class BlockHarnessTests
{
    /// <summary>
    /// The block campaign of 2026-11-26 recorded findings that never replayed: "an honest ring with 44 requests got 55
    /// responses". Each input reads sectors into its ring's own header, so req_prod becomes whatever the disk holds
    /// halfway through the doorbell, and the host serves that many requests, as it should; the disk held 55s written
    /// by earlier inputs of the same process. The image now starts fresh for every input, and such a round no longer
    /// counts as an honest ring. Each case gives the image (every 32-bit word <paramref name="reqProd"/>) that made
    /// its input fail before the fix: -0 to -2 are the campaign's three, -3 the same failure caught again by a short
    /// campaign that logged the exception; -0 has 55 requests of its own, so it needed a larger req_prod.
    /// </summary>
    [Theory]
    [InlineData("finding-read-over-own-ring-0", 64u)]
    [InlineData("finding-read-over-own-ring-1", 55u)]
    [InlineData("finding-read-over-own-ring-2", 55u)]
    [InlineData("finding-read-over-own-ring-3", 55u)]
    public void A_read_over_the_rings_own_header_is_not_an_honest_ring(string finding, uint reqProd)
    {
        byte[] image = new byte[64 * 1024];
        for (int i = 0; i < image.Length; i += 4)
        {
            BitConverter.TryWriteBytes(image.AsSpan(i), reqProd);
        }
        using var harness = new BlockHarness(image);
        harness.Run(File.ReadAllBytes(Path.Combine(RepoPaths.Root, "fuzz", "corpus", "block", finding)));
        Assert.True(harness.Exercised > 0);
    }
}
