namespace Paravirt.Fuzz;

/// <summary>
/// Byte-level mutations in the style of afl-fuzz's havoc stage (bit flips, interesting values, inserts, deletes,
/// splices), driven by a seeded <see cref="Random"/> so that the smoke run in <c>make test</c> is deterministic.
/// </summary>
internal static class Mutator
{
    private static readonly long[] InterestingValues = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, long.MaxValue, long.MinValue];

    public static byte[] Mutate(byte[] seed, Random random)
    {
        var data = new List<byte>(seed.Length == 0 ? [(byte)random.Next(256)] : seed);
        int rounds = 1 + random.Next(8);
        for (int i = 0; i < rounds; i++)
        {
            if (data.Count == 0)
            {
                data.Add((byte)random.Next(256));
            }
            int at = random.Next(data.Count);
            switch (random.Next(6))
            {
                case 0:
                    data[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    data[at] = (byte)random.Next(256);
                    break;
                case 2:
                    long v = InterestingValues[random.Next(InterestingValues.Length)];
                    for (int b = 0; b < 8 && at + b < data.Count; b++)
                    {
                        data[at + b] = (byte)(v >> (8 * b));
                    }
                    break;
                case 3:
                    data.InsertRange(at, Enumerable.Range(0, 1 + random.Next(16)).Select(_ => (byte)random.Next(256)));
                    break;
                case 4:
                    if (data.Count > 1)
                    {
                        data.RemoveRange(at, Math.Min(1 + random.Next(16), data.Count - at));
                    }
                    break;
                default:
                    int from = random.Next(data.Count);
                    int length = Math.Min(1 + random.Next(32), data.Count - from);
                    data.InsertRange(at, data.GetRange(from, length));
                    break;
            }
        }
        return [.. data];
    }
}
