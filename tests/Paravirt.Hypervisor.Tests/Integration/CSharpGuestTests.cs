using System.Text;
using Paravirt.Abi;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Tests.Cli;
using Paravirt.Hypervisor.Vcpu;

namespace Paravirt.Hypervisor.Tests.Integration;

/// <summary>
/// Boots the C# unikernels (samples/hello-cs, samples/subset-cs: C# compiled by NativeAOT against the guest core
/// library, built by the normal build) on the emulator, with the same expectations as their C counterparts.
/// </summary>
public sealed class CSharpGuestTests
{
    private static (RunResult Result, string Output) Run(string guest, string commandLine = "", ulong memory = 64UL << 20)
    {
        GuestImage image = ElfLoader.LoadFile(TestPaths.GuestImage(guest), AbiVersion.Current);
        using var console = new MemoryStream();
        RunResult result = HelloGuestTests.EmulatorRunner().Run(image, new GuestRunOptions
        {
            Backend = "emulator",
            ConsoleOutput = console,
            CommandLine = commandLine,
            MemorySize = memory,
            Timeout = TimeSpan.FromSeconds(60),
        });
        return (result, Encoding.UTF8.GetString(console.ToArray()));
    }

    [Fact]
    public void Hello_cs_greets_checks_the_abi_through_the_version_hypercall_and_exits_with_7()
    {
        (RunResult result, string output) = Run("hello-cs");

        Assert.True(result.Outcome == RunOutcome.Exited, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.Equal(7, result.ExitStatus);
        Assert.Contains("Hello from a C# Paravirt unikernel!", output, StringComparison.Ordinal);
        Assert.Contains($"hello-cs: ABI {AbiVersion.Current} (host {AbiVersion.Current})", output, StringComparison.Ordinal);
        Assert.Contains($"wall clock {DateTime.UtcNow:yyyy-MM-dd}", output, StringComparison.Ordinal);
        Assert.Contains("hello-cs: exiting with status 7", output, StringComparison.Ordinal);
        Assert.True(result.Statistics.Hypercalls.ContainsKey((uint)HypercallCode.Version), "hello-cs checks the ABI version through a hypercall");
        Assert.True(result.Statistics.Hypercalls.ContainsKey((uint)HypercallCode.ConsoleWrite), "hello-cs writes through the console hypercall");
    }

    [Fact]
    public void Hello_cs_is_a_freestanding_elf_linked_at_one_mebibyte_with_the_abi_note()
    {
        string path = TestPaths.GuestImage("hello-cs");
        byte[] elf = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }, elf[..4]);
        Assert.Equal(2, BitConverter.ToUInt16(elf, 16));    // ET_EXEC
        Assert.Equal(62, BitConverter.ToUInt16(elf, 18));   // EM_X86_64
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        Assert.True(image.Entry >= EntryConvention.ImageMinAddress, $"entry 0x{image.Entry:x}");
        Assert.Equal(AbiVersion.Current, image.AbiVersion);
    }

    [Fact]
    public void Subset_cs_passes_every_check_of_the_supported_csharp_subset()
    {
        (RunResult result, string output) = Run("subset-cs");

        Assert.True(result.Outcome == RunOutcome.Exited, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.DoesNotContain("FAIL", output, StringComparison.Ordinal);
        foreach (string check in new[] { "statics", "structs", "classes-virtual", "static-objects", "static-object-assigned", "casts", "strings", "arrays", "unsafe", "generics", "span", "enums-switch", "int64", "nullable-abi", "interfaces", "function-pointers", "hypercalls" })
        {
            Assert.Contains($"ok {check}\n", output, StringComparison.Ordinal);
        }
        Assert.Contains("subset-cs: 0 failures", output, StringComparison.Ordinal);
        Assert.Equal(0, result.ExitStatus);
    }

    [Theory]
    [InlineData("fail-index", "panic: IndexOutOfRangeException")]
    [InlineData("fail-oom", "panic: out of memory: C# allocation of")]
    public void A_runtime_error_in_a_csharp_guest_fails_fast_with_a_message_and_status_255(string commandLine, string message)
    {
        (RunResult result, string output) = Run("subset-cs", commandLine);

        Assert.True(result.Outcome == RunOutcome.Exited, $"{result.Outcome}: {result.Message}\n{output}");
        Assert.Equal(255, result.ExitStatus);
        Assert.Contains(message, output, StringComparison.Ordinal);
    }

    [Fact]
    public void Hello_cs_through_the_cli_exits_with_7()
    {
        (int code, _, string stderr, byte[] guest) = CliErrorTests.Run("run", TestPaths.GuestImage("hello-cs"), "--backend", "emulator");
        string output = Encoding.UTF8.GetString(guest);
        Assert.True(code == 7, $"exit {code}\n{stderr}\n{output}");
        Assert.Contains("Hello from a C# Paravirt unikernel!", output, StringComparison.Ordinal);
    }
}
