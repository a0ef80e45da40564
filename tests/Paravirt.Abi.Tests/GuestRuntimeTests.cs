using System.Buffers.Binary;
using System.Diagnostics;
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
        using var tmp = new Gcc.TempDir();
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
        using var tmp = new Gcc.TempDir();
        File.WriteAllText(Path.Combine(tmp.Path, "a.c"), ManifestGuest);
        File.WriteAllText(Path.Combine(tmp.Path, "b.c"), "#include <paravirt/paravirt.h>\nPV_REQUIRE_DEVICE(PV_DEVICE_KIND_NET, \"net1\");\n");
        var r = Make(tmp.Path, "a.c b.c");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("pv_device_manifest_note", r.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Formatter_MatchesLibc()
    {
        using var tmp = new Gcc.TempDir();
        string exe = Path.Combine(tmp.Path, "printf_host");
        string harness = Path.Combine(AppContext.BaseDirectory, "native", "printf_host.c");
        Gcc.Result build = Gcc.Run(tmp.Path, "-O2", "-fno-builtin", "-Wall", "-Wno-format", "-I", RepoPaths.IncludeDir, "-o", exe,
            harness, Path.Combine(RepoPaths.NativeDir, "runtime", "printf.c"));
        Assert.True(build.ExitCode == 0, $"gcc failed to build the formatter harness:\n{build.StdErr}");

        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, UseShellExecute = false };
        using Process p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.True(p.ExitCode == 0, output);
        Assert.EndsWith("0 failures\n", output, StringComparison.Ordinal);
    }

    [LinuxX64Fact]
    public void Hello_RunsOnTheHostCpu_GreetsAndExitsWith7()
    {
        using var tmp = new Gcc.TempDir();
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
        using var tmp = new Gcc.TempDir();
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
        Gcc.Result build = Gcc.Run(dir, "-O2", "-Wall", "-Wextra", "-Werror", "-I", RepoPaths.IncludeDir, "-o", runner,
            Path.Combine(AppContext.BaseDirectory, "native", "native_runner.c"));
        Assert.True(build.ExitCode == 0, $"gcc failed to build native_runner:\n{build.StdErr}");

        var psi = new ProcessStartInfo(runner) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(image);
        using Process p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            p.Kill();
            Assert.Fail("the guest did not exit within 30 seconds");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
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
        var psi = new ProcessStartInfo("make")
        {
            WorkingDirectory = dir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "-f", Path.Combine(RepoPaths.NativeDir, "paravirt.mk"), "PV_GUEST=guest.elf", "PV_SRCS=" + sources, "guest.elf" })
        {
            psi.ArgumentList.Add(a);
        }
        if (Environment.GetEnvironmentVariable("PARAVIRT_CC") is { } cc)
        {
            psi.ArgumentList.Add("PV_CC=" + cc);
        }
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"make not found: install make and gcc (apt-get install make gcc) [{e.Message}]");
            throw;
        }
        using (p)
        {
            Task<string> err = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "make did not finish within 2 minutes");
            return (p.ExitCode, output + err.Result);
        }
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
