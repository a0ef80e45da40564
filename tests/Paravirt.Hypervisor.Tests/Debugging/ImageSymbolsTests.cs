using Paravirt.Hypervisor.Debugging.Symbols;

namespace Paravirt.Hypervisor.Tests.Debugging;

/// <summary>The symbol, unwind and line readers on real images, and on hostile ones.</summary>
public sealed class ImageSymbolsTests
{
    private static readonly byte[] Crash = File.ReadAllBytes(RepoPaths.GuestImage("crash"));

    [Fact]
    public void A_c_guest_has_symbols_unwind_tables_and_line_tables_that_agree()
    {
        ImageSymbols s = ImageSymbols.Parse(Crash);
        ulong main = s.Symbols.AddressOf("main") ?? throw new InvalidOperationException("no main");
        Assert.True(s.Symbols.TryFind(main + 1, out ElfSymbol found));
        Assert.Equal("main", found.Name);
        Assert.True(s.Frames.Covers(main));
        Assert.True(s.Frames.Covers(s.Symbols.AddressOf("_start")!.Value)); // start.S's own CFI, ending the chain
        SymbolizedAddress where = s.Lookup(main);
        Assert.Equal("main", where.Function);
        Assert.EndsWith("samples/crash/crash.c", where.Source?.File, StringComparison.Ordinal);
        Assert.False(s.Symbols.TryFind(0x10, out _));
        Assert.Null(s.Lines.Find(0x10));
    }

    [Fact]
    public void A_csharp_guest_has_its_methods_as_symbols_with_unwind_and_line_tables()
    {
        ImageSymbols s = ImageSymbols.Parse(File.ReadAllBytes(RepoPaths.GuestImage("hello-cs")));
        ulong main = s.Symbols.AddressOf("hello_cs_Program__Main") ?? throw new InvalidOperationException("no managed Main");
        Assert.True(s.Frames.Covers(main));
        Assert.EndsWith("Program.cs", s.Lookup(main + 4).Source?.File, StringComparison.Ordinal);
    }

    [Fact]
    public void Not_an_elf_file_or_an_empty_one_gives_empty_tables()
    {
        foreach (byte[] file in new[] { Array.Empty<byte>(), new byte[64], "not an elf file at all, just text"u8.ToArray() })
        {
            ImageSymbols s = ImageSymbols.Parse(file);
            Assert.Equal(0, s.Symbols.Count);
            Assert.Equal(0, s.Frames.Count);
            Assert.Equal(0, s.Lines.RowCount);
        }
    }

    /// <summary>
    /// The image is hostile input: seeded random corruptions of a real image (byte flips in the section headers and
    /// the debug sections, truncations, huge counts) never make the readers throw or run away, and an unwind over
    /// random stack memory with a corrupted image stops within its frame bound.
    /// </summary>
    [Fact]
    public void Corrupted_images_never_break_the_readers_or_the_unwinder()
    {
        var random = new Random(14);
        ElfSections clean = ElfSections.Parse(Crash);
        var targets = new List<(int Start, int Length)>();
        foreach (string name in new[] { ".eh_frame", ".debug_line", ".debug_line_str", ".symtab", ".strtab", ".shstrtab" })
        {
            if (clean.Find(name) is ElfSection section)
            {
                targets.Add((section.Offset, section.Size));
            }
        }
        int shoff = (int)BitConverter.ToUInt64(Crash, 0x28);
        targets.Add((shoff, Crash.Length - shoff));
        targets.Add((0, 64));

        using var memory = new GuestMemory(4UL << 20);
        random.NextBytes(memory.GetSpan(new GuestAddress(0), memory.Size));
        var space = new GuestAddressSpace(memory, new VcpuState(), pageTables: false);

        for (int round = 0; round < 300; round++)
        {
            byte[] image = (byte[])Crash.Clone();
            (int start, int length) = targets[random.Next(targets.Count)];
            for (int flips = random.Next(1, 32); flips > 0; flips--)
            {
                int at = start + random.Next(length);
                image[at] = random.Next(4) switch
                {
                    0 => 0xFF,
                    1 => 0x00,
                    2 => (byte)(image[at] ^ (1 << random.Next(8))),
                    _ => (byte)random.Next(256),
                };
            }
            if (random.Next(8) == 0)
            {
                Array.Resize(ref image, random.Next(image.Length));
            }
            ImageSymbols s = ImageSymbols.Parse(image);
            for (int i = 0; i < 50; i++)
            {
                _ = s.Lookup(0x10_0000 + (ulong)random.Next(0x4000));
            }
            var registers = new VcpuRegisters(0, 0, 0, 0, 0, 0, (ulong)random.Next(0x10_0000, 0x3F_0000), (ulong)random.Next(0x10_0000, 0x3F_0000),
                0, 0, 0, 0, 0, 0, 0, 0, 0x10_0000 + (ulong)random.Next(0x3000), 2);
            List<CrashFrame> frames = CrashReporter.Unwind(registers, space, s);
            Assert.InRange(frames.Count, 1, CrashReporter.MaxFrames);
            _ = CrashReporter.Disassemble(registers.Rip, space, s);
        }
    }
}
