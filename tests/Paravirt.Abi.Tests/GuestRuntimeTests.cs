using System.Buffers.Binary;
using System.Text;

namespace Paravirt.Abi.Tests;

/// <summary>
/// The C guest runtime builds with the SDK's flags into an image of the shape the host expects (ELF64 x86-64 EXEC,
/// linked at or above 1 MiB, ABI note and manifest note in a PT_NOTE segment), and its formatter prints what libc
/// prints. Images are built through native/paravirt.mk, which uses the same flags as the MSBuild targets.
/// </summary>
public sealed class GuestRuntimeTests
{
    private const string ManifestGuest = """
        #include <paravirt/paravirt.h>
        PV_DEVICE_MANIFEST(PV_DEVICE(PV_DEVICE_KIND_BLOCK, "disk0"), PV_DEVICE_OPTIONAL(PV_DEVICE_KIND_NET, "net0"));
        int main(void) { pv_printf("%d\n", 42); return 7; }
        """;

    [Fact]
    public void Image_IsElf64ExecWithAbiAndManifestNotes()
    {
        using var tmp = new TempDirectory("abi");
        byte[] elf = BuildGuest(tmp.Path, ManifestGuest);

        Assert.Equal([0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1], elf[..6]);
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(16)));    // ET_EXEC
        Assert.Equal(62, BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(18)));   // EM_X86_64
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan(24));
        Assert.True(entry >= EntryConvention.ImageMinAddress, $"entry 0x{entry:X} is below 1 MiB");

        var notes = new List<(string Name, uint Type, byte[] Desc)>();
        int loads = 0;
        foreach ((uint type, ulong offset, ulong vaddr, ulong fileSize, ulong memSize) in ProgramHeaders(elf))
        {
            if (type == 1)
            {
                loads++;
                Assert.True(vaddr >= EntryConvention.ImageMinAddress, $"PT_LOAD at 0x{vaddr:X} is below 1 MiB");
                Assert.True(fileSize <= memSize);
            }
            else if (type == 4)
            {
                notes.AddRange(ParseNotes(elf.AsSpan(checked((int)offset), checked((int)fileSize))));
            }
        }
        Assert.True(loads >= 2, "expected text and data PT_LOAD segments");

        var abi = Assert.Single(notes, n => n.Name == ElfNote.Name && n.Type == ElfNote.TypeAbi);
        Assert.Equal([1, 0, 1, 0, 0, 0, 0, 0], abi.Desc);   // pv_abi_note { major 1, minor 1, flags 0 }
        Assert.Equal(AbiVersionConstants.Major, BinaryPrimitives.ReadUInt16LittleEndian(abi.Desc));
        Assert.Equal(AbiVersionConstants.Minor, BinaryPrimitives.ReadUInt16LittleEndian(abi.Desc.AsSpan(2)));

        var manifest = Assert.Single(notes, n => n.Name == ElfNote.Name && n.Type == ElfNote.TypeManifest);
        Assert.Equal(8 + 2 * 32, manifest.Desc.Length);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(manifest.Desc));
        Assert.Equal((uint)DeviceKind.Block, BinaryPrimitives.ReadUInt32LittleEndian(manifest.Desc.AsSpan(8)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(manifest.Desc.AsSpan(12)));
        Assert.Equal("disk0", Encoding.ASCII.GetString(manifest.Desc, 16, 24).TrimEnd('\0'));
        Assert.Equal((uint)DeviceKind.Net, BinaryPrimitives.ReadUInt32LittleEndian(manifest.Desc.AsSpan(40)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(manifest.Desc.AsSpan(44)));
        Assert.Equal("net0", Encoding.ASCII.GetString(manifest.Desc, 48, 24).TrimEnd('\0'));
    }

    [Fact]
    public void TwoManifests_AreALinkError()
    {
        using var tmp = new TempDirectory("abi");
        File.WriteAllText(Path.Combine(tmp.Path, "a.c"), ManifestGuest);
        File.WriteAllText(Path.Combine(tmp.Path, "b.c"), "#include <paravirt/paravirt.h>\nPV_REQUIRE_DEVICE(PV_DEVICE_KIND_NET, \"net1\");\n");
        var r = Make(tmp.Path, "a.c b.c");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("pv_device_manifest_note", r.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Formatter_MatchesLibc()
    {
        using var tmp = new TempDirectory("abi");
        string exe = Path.Combine(tmp.Path, "printf_host");
        string harness = Path.Combine(AppContext.BaseDirectory, "native", "printf_host.c");
        ProcessResult build = Gcc.Run(tmp.Path, "-O2", "-fno-builtin", "-Wall", "-Wno-format", "-I", RepoPaths.GuestIncludeDir, "-o", exe,
            harness, Path.Combine(RepoPaths.GuestNativeDir, "runtime", "printf.c"));
        Assert.True(build.ExitCode == 0, $"gcc failed to build the formatter harness:\n{build.StdErr}");

        ProcessResult run = ProcessRunner.Run(exe, [], limit: TimeSpan.FromSeconds(30));
        Assert.True(run.ExitCode == 0, run.Describe("printf_host"));
        Assert.EndsWith("0 failures\n", run.StdOut, StringComparison.Ordinal);
    }

    [LinuxX64Fact]
    public void Hello_RunsOnTheHostCpu_GreetsAndExitsWith7()
    {
        using var tmp = new TempDirectory("abi");
        string hello = Path.Combine(RepoPaths.Root, "samples", "hello", "hello.c");
        var build = Make(tmp.Path, hello);
        Assert.True(build.ExitCode == 0, $"building samples/hello failed:\n{build.Output}");

        (int exit, string stdout, string stderr) = RunNatively(tmp.Path, Path.Combine(tmp.Path, "guest.elf"));

        Assert.True(exit == 7, $"hello exited with {exit}; stdout:\n{stdout}\nstderr:\n{stderr}");
        string[] lines = stdout.Split('\n');
        Assert.Equal("Hello from a Paravirt unikernel!", lines[0]);
        Assert.Equal("hello: ABI 1.1 (host 1.1)", lines[1]);
        Assert.StartsWith("hello: wall clock ", lines[2], StringComparison.Ordinal);
        DateTime wall = DateTime.ParseExact(lines[2]["hello: wall clock ".Length..], "yyyy-MM-dd'T'HH:mm:ss'Z'",
            System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal);
        Assert.True(Math.Abs((wall - DateTime.UtcNow).TotalMinutes) < 5, $"guest wall clock {wall:O} is far from the host's {DateTime.UtcNow:O}");
        Assert.Equal("hello: exiting with status 7", lines[3]);
        Assert.Equal("", lines[4]);
        Assert.Equal(5, lines.Length);
    }

    [LinuxX64Fact]
    public void RuntimeSelfTest_PassesAndPanicsWith255()
    {
        using var tmp = new TempDirectory("abi");
        string selftest = Path.Combine(AppContext.BaseDirectory, "native", "runtime_selftest.c");
        var build = Make(tmp.Path, selftest);
        Assert.True(build.ExitCode == 0, $"building the runtime self-test failed:\n{build.Output}");

        (int exit, string stdout, string stderr) = RunNatively(tmp.Path, Path.Combine(tmp.Path, "guest.elf"));

        Assert.Matches(@"^selftest: \d+ checks, 0 failed\n$", stdout);
        Assert.Equal("panic: selftest done 42\n", stderr);
        Assert.Equal(255, exit);
    }

    /// <summary>Builds native/native_runner.c and runs <paramref name="image"/> with it.</summary>
    private static (int Exit, string StdOut, string StdErr) RunNatively(string dir, string image)
    {
        string runner = Path.Combine(dir, "native_runner");
        ProcessResult build = Gcc.Run(dir, "-O2", "-Wall", "-Wextra", "-Werror", "-I", RepoPaths.GuestIncludeDir, "-o", runner,
            Path.Combine(AppContext.BaseDirectory, "native", "native_runner.c"));
        Assert.True(build.ExitCode == 0, $"gcc failed to build native_runner:\n{build.StdErr}");

        ProcessResult run = ProcessRunner.Run(runner, [image], dir, limit: TimeSpan.FromSeconds(30));
        return (run.ExitCode, run.StdOut, run.StdErr);
    }

    private static byte[] BuildGuest(string dir, string source)
    {
        File.WriteAllText(Path.Combine(dir, "guest.c"), source);
        var r = Make(dir, "guest.c");
        Assert.True(r.ExitCode == 0, $"building a guest with paravirt.mk failed:\n{r.Output}");
        return File.ReadAllBytes(Path.Combine(dir, "guest.elf"));
    }

    private static (int ExitCode, string Output) Make(string dir, string sources)
    {
        ProcessResult r = GuestBuilder.Make(dir, sources, "guest.elf");
        return (r.ExitCode, r.StdOut + r.StdErr);
    }

    private static IEnumerable<(uint Type, ulong Offset, ulong VAddr, ulong FileSize, ulong MemSize)> ProgramHeaders(byte[] elf)
    {
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(54));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(56));
        Assert.Equal(56, phentsize);
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = elf.AsSpan(checked((int)phoff + (i * phentsize)), phentsize);
            yield return (
                BinaryPrimitives.ReadUInt32LittleEndian(ph),
                BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]),
                BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]),
                BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]));
        }
    }

    private static List<(string Name, uint Type, byte[] Desc)> ParseNotes(ReadOnlySpan<byte> segment)
    {
        var notes = new List<(string, uint, byte[])>();
        int pos = 0;
        while (pos + 12 <= segment.Length)
        {
            int namesz = checked((int)BinaryPrimitives.ReadUInt32LittleEndian(segment[pos..]));
            int descsz = checked((int)BinaryPrimitives.ReadUInt32LittleEndian(segment[(pos + 4)..]));
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(segment[(pos + 8)..]);
            pos += 12;
            string name = Encoding.ASCII.GetString(segment.Slice(pos, namesz)).TrimEnd('\0');
            pos += (namesz + 3) & ~3;
            byte[] desc = segment.Slice(pos, descsz).ToArray();
            pos += (descsz + 3) & ~3;
            notes.Add((name, type, desc));
        }
        return notes;
    }
}
