using Paravirt.Cli;

namespace Paravirt.Hypervisor.Tests.Cli;

/// <summary>A user's bad input gets exactly one clear line on stderr and the documented exit code.</summary>
public sealed class CliErrorTests() : TestWithTempDirectory("cli")
{
    internal static (int Code, string Stdout, string Stderr, byte[] Guest) Run(params string[] args)
    {
        using var guest = new MemoryStream();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(args, guest, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString(), guest.ToArray());
    }

    /// <summary>A user's mistake is reported as exactly one line, "paravirt: error: ...", that contains each of <paramref name="mustContain"/>.</summary>
    internal static void AssertOneErrorLine(string stderr, params string[] mustContain)
    {
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{stderr}");
        Assert.StartsWith("paravirt: error: ", lines[0], StringComparison.Ordinal);
        foreach (string s in mustContain)
        {
            Assert.Contains(s, lines[0], StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--memory", "64\nM")]
    [InlineData("--timeout", "1\u001b[2J")]
    [InlineData("--disk", "a.img,b\nad")]
    [InlineData("--bogus\nline", null)]
    public void A_value_with_control_characters_is_quoted_on_one_line(string flag, string? value)
    {
        // Found by the cli fuzz harness (fuzz/corpus/cli/finding-control-chars-*): the error quoted the value raw.
        (int code, _, string err, _) = value is null ? Run("run", "x.elf", flag) : Run("run", "x.elf", flag, value);
        Assert.Equal(64, code);
        AssertOneErrorLine(err, "\\x");
        Assert.DoesNotContain('\u001b', err);
    }

    [Fact]
    public void Missing_image_is_one_line_and_exit_65()
    {
        (int code, _, string err, _) = Run("run", Path.Combine(Dir, "nope.elf"));
        Assert.Equal(65, code);
        AssertOneErrorLine(err, "nope.elf");
    }

    [Fact]
    public void Image_that_is_not_elf_is_one_line_and_exit_65()
    {
        string path = Path.Combine(Dir, "text.elf");
        File.WriteAllText(path, "this is not an ELF file, just some text that is long enough to have a header's size.");
        (int code, _, string err, _) = Run("run", path);
        Assert.Equal(65, code);
        AssertOneErrorLine(err, "ELF");
    }

    [Fact]
    public void Directory_as_image_is_one_line_and_exit_65()
    {
        (int code, _, string err, _) = Run("run", Dir);
        Assert.Equal(65, code);
        AssertOneErrorLine(err, Dir);
    }

    [Theory]
    [InlineData(new[] { "run" }, "Required argument")]
    [InlineData(new[] { "run", "x.elf", "--bogus" }, "--bogus")]
    [InlineData(new[] { "frobnicate" }, "frobnicate")]
    [InlineData(new[] { "run", "x.elf", "--memory", "12Q" }, "--memory")]
    [InlineData(new[] { "run", "x.elf", "--memory", "1M" }, "out of range")]
    [InlineData(new[] { "run", "x.elf", "--memory", "100000000G" }, "--memory")]
    [InlineData(new[] { "run", "x.elf", "--timeout", "soon" }, "--timeout")]
    [InlineData(new[] { "run", "x.elf", "--timeout", "-5s" }, "--timeout")]
    [InlineData(new[] { "run", "x.elf", "--budget", "0" }, "--budget")]
    [InlineData(new[] { "run", "x.elf", "--gdb", "not an address" }, "--gdb")]
    [InlineData(new[] { "run", "x.elf", "--gdb", "127.0.0.1:99999" }, "--gdb")]
    [InlineData(new[] { "run", "x.elf", "y.elf", "--gdb", "1234" }, "one image")]
    [InlineData(new[] { "run", "x.elf", "y.elf", "--core", "c.core" }, "one image")]
    public void Bad_arguments_are_one_line_and_exit_64(string[] args, string mustContain)
    {
        (int code, _, string err, _) = Run(args);
        Assert.Equal(64, code);
        AssertOneErrorLine(err, mustContain);
    }

    [Fact]
    public void Gdb_on_a_backend_without_guest_debugging_is_one_line_and_exit_69()
    {
        string image = RepoPaths.GuestImage("hello");
        (int code, _, string err, _) = Run("run", image, "--backend", "whp", "--gdb", "127.0.0.1:0");
        Assert.Equal(69, code); // unavailable here, or unable to debug on Windows: either way the same exit code
        AssertOneErrorLine(err, "whp");
    }

    [Theory]
    [InlineData("1234", "127.0.0.1:1234")]
    [InlineData(":1234", "127.0.0.1:1234")]
    [InlineData("localhost:1234", "127.0.0.1:1234")]
    [InlineData("0.0.0.0:0", "0.0.0.0:0")]
    [InlineData("[::1]:1234", "[::1]:1234")]
    public void Gdb_addresses_parse_as_documented(string text, string expected)
    {
        Assert.True(Hypervisor.Debugging.Gdb.GdbStub.TryParseEndPoint(text, out System.Net.IPEndPoint? endPoint));
        Assert.Equal(expected, endPoint!.ToString());
    }

    [Fact]
    public void A_stub_bound_beyond_loopback_says_it_is_exposed()
    {
        using var exposed = Hypervisor.Debugging.Gdb.GdbStub.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Any, 0));
        Assert.True(exposed.IsExposed);
        Assert.NotEqual(0, exposed.EndPoint.Port);
        using var local = Hypervisor.Debugging.Gdb.GdbStub.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        Assert.False(local.IsExposed);
    }

    /// <summary>--help lists examples and the exit codes; backends lists every backend (with a reason).</summary>
    [Theory]
    [InlineData("--help", "paravirt run", "Exit codes")]
    [InlineData("backends", "emulator", "kvm", "whp")]
    public void Informational_commands_exit_0_and_print_what_they_list(string command, params string[] mustContain)
    {
        (int code, string stdout, _, _) = Run(command);
        Assert.Equal(0, code);
        foreach (string s in mustContain)
        {
            Assert.Contains(s, stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void An_available_backend_says_whether_it_runs_Linux_executables()
    {
        (_, string stdout, _, _) = Run("backends");
        Assert.Matches(@"(?m)^emulator +available .*\[Linux executables: (yes|no)\]$", stdout);
    }

    [Fact]
    public void Size_and_duration_parsers_accept_the_documented_forms()
    {
        Assert.True(SizeParser.TryParseSize("64M", out ulong a) && a == 64UL << 20);
        Assert.True(SizeParser.TryParseSize("1GiB", out ulong b) && b == 1UL << 30);
        Assert.True(SizeParser.TryParseSize("4096", out ulong c) && c == 4096);
        Assert.False(SizeParser.TryParseSize("", out _));
        Assert.False(SizeParser.TryParseSize("M", out _));
        Assert.True(SizeParser.TryParseDuration("500ms", out TimeSpan d) && d == TimeSpan.FromMilliseconds(500));
        Assert.True(SizeParser.TryParseDuration("2m", out TimeSpan e) && e == TimeSpan.FromMinutes(2));
        Assert.True(SizeParser.TryParseDuration("30", out TimeSpan f) && f == TimeSpan.FromSeconds(30));
        Assert.False(SizeParser.TryParseDuration("0s", out _));
        Assert.False(SizeParser.TryParseDuration("NaN", out _));
    }
}
