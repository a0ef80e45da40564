using Xunit.Abstractions;

namespace Paravirt.Hypervisor.Tests.Loading;

/// <summary>
/// Seeded mutation testing: thousands of corrupted variants of valid images. Whatever the bytes, the loader either
/// refuses with <see cref="ImageFormatException"/> or returns an image whose every segment is inside the limits.
/// </summary>
public sealed class ElfLoaderFuzzTests(ITestOutputHelper output)
{
    private const int Iterations = 5000;

    private static readonly ulong[] Interesting =
    [
        0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
        EntryConvention.ImageMinAddress - 1, EntryConvention.ImageMinAddress, GuestMemory.MaxSize, GuestMemory.MaxSize - 1,
        long.MaxValue, ulong.MaxValue, ulong.MaxValue - 0xFFF, ulong.MaxValue - 55,
    ];

    public static TheoryData<string> Seeds => ["builder", "gnu-ld"];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void MutatedImagesAreRefusedCleanlyOrStayInsideTheLimits(string source)
    {
        byte[] original = source == "builder" ? ElfBuilder.Valid().Build() : ReadFixture();
        ElfLoader.Parse(original, AbiVersion.Current); // the starting point is valid
        var random = new Random(source == "builder" ? 20261124 : 424242);
        using var memory = new GuestMemory(4UL << 20);
        int parsed = 0, refused = 0;

        for (int i = 0; i < Iterations; i++)
        {
            byte[] file = Mutate(original, random);
            GuestImage image;
            try
            {
                image = ElfLoader.Parse(file, AbiVersion.Current);
            }
            catch (ImageFormatException ex)
            {
                Assert.False(string.IsNullOrWhiteSpace(ex.Message));
                Assert.DoesNotContain('\n', ex.Message);
                refused++;
                continue;
            }
            catch (Exception ex)
            {
                Assert.Fail($"iteration {i}: {ex.GetType().Name} escaped the loader: {ex.Message}");
                throw;
            }
            parsed++;
            AssertInsideLimits(image, file, i);
            try
            {
                ulong end = ElfLoader.LoadInto(image, memory);
                Assert.Equal(image.End, end);
            }
            catch (ImageFormatException)
            {
                // does not fit into 4 MiB, or a Linux executable (loaded by the Linux personality): a clean refusal
            }
        }

        output.WriteLine($"{source}: {parsed} mutated images parsed, {refused} refused");
        Assert.Equal(Iterations, parsed + refused);
        Assert.True(refused > Iterations / 10, "the mutations should break most images");
        Assert.True(parsed > 0, "some mutations (padding, code bytes) leave a valid image");
    }

    private static void AssertInsideLimits(GuestImage image, byte[] file, int iteration)
    {
        string at = $"iteration {iteration}";
        Assert.NotEmpty(image.Segments);
        ulong previousEnd = 0;
        bool entryOk = false;
        bool linux = image.Kind == GuestImageKind.LinuxExecutable;
        Assert.True(linux || AbiVersion.Current.CanRun(image.AbiVersion), at);
        foreach (ImageSegment s in image.Segments)
        {
            // A Linux executable (the mutation removed the Paravirt note) lives in the user half of the address
            // space; a static-pie one anywhere (it is moved), so only its size is bounded.
            Assert.True(linux || s.Address >= EntryConvention.ImageMinAddress, at);
            Assert.True(s.MemorySize > 0 && s.MemorySize <= (linux ? ulong.MaxValue - s.Address : GuestMemory.MaxSize - s.Address), at);
            Assert.True(s.FileSize <= s.MemorySize, at);
            Assert.True(s.FileSize == 0 || (s.FileOffset <= (ulong)file.Length && s.FileSize <= (ulong)file.Length - s.FileOffset), at);
            Assert.True(s.Address >= previousEnd, $"{at}: segments overlap or are unsorted");
            previousEnd = s.Address + s.MemorySize;
            entryOk |= (s.Flags & 1) != 0 && image.Entry >= s.Address && image.Entry - s.Address < s.FileSize;
        }
        Assert.True(entryOk, $"{at}: entry point outside an executable segment");
        Assert.Equal(previousEnd, image.End);
        Assert.True(image.Manifest.Count <= (int)ElfNote.ManifestMaxEntries, at);
    }

    private static byte[] Mutate(byte[] original, Random random)
    {
        byte[] file = (byte[])original.Clone();
        int kind = random.Next(5);
        // Most of the interesting structure is in the first bytes (header, program headers, notes of the builder image).
        int hot = Math.Min(file.Length, 512);
        switch (kind)
        {
            case 0: // flip a few random bits
                for (int n = random.Next(1, 4); n > 0; n--)
                {
                    int pos = random.Next(random.Next(2) == 0 ? hot : file.Length);
                    file[pos] ^= (byte)(1 << random.Next(8));
                }
                return file;
            case 1: // random bytes
                for (int n = random.Next(1, 8); n > 0; n--)
                {
                    file[random.Next(hot)] = (byte)random.Next(256);
                }
                return file;
            case 2: // an interesting 64-, 32- or 16-bit value at an aligned offset in the header area
            {
                ulong value = Interesting[random.Next(Interesting.Length)];
                int width = new[] { 2, 4, 8 }[random.Next(3)];
                int pos = random.Next(Math.Max(1, (hot - 8) / width)) * width;
                Span<byte> s = file.AsSpan(pos);
                if (width == 8)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(s, value);
                }
                else if (width == 4)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(s, (uint)value);
                }
                else
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)value);
                }
                return file;
            }
            case 3: // truncation
                return file[..random.Next(file.Length)];
            default: // truncation plus a flip
            {
                byte[] cut = file[..random.Next(1, file.Length)];
                cut[random.Next(Math.Min(cut.Length, hot))] ^= (byte)random.Next(1, 256);
                return cut;
            }
        }
    }

    private static byte[] ReadFixture()
    {
        using Stream s = typeof(ElfLoaderFuzzTests).Assembly.GetManifestResourceStream("minimal-guest.elf")!;
        var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }
}
