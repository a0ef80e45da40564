using System.Buffers.Binary;
using Paravirt.Abi;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;
using Paravirt.Hypervisor.Sandboxes;
using Paravirt.Hypervisor.Tests.Loading;

namespace Paravirt.Hypervisor.Tests.Sandboxes;

/// <summary>
/// Guests written in machine code that break the call protocol on purpose: malformed results and host-function
/// calls (bytes the test plants in guest memory), impossible buffers. The host answers with error statuses or
/// poisons the sandbox; it never throws anything else or trusts a length.
/// </summary>
public sealed class HostileGuestSandboxTests
{
    private const ulong Buffer = 0x20_0000, Payload = 0x20_0800, Length = 0x20_0FF0, Status = 0x20_0FE8, Nil = 0x20_0FE0, Response = 0x20_1000;

    // sandbox_ready(0x200000, 0x1000); then forever: sandbox_return(0, 0x200800, [0x200ff0])
    private static readonly byte[] ReturnsPlantedBytes =
    [
        0xB8, 0x00, 0x05, 0x00, 0x00, 0xBF, 0x00, 0x00, 0x20, 0x00, 0xBE, 0x00, 0x10, 0x00, 0x00,
        0x41, 0xBB, 0x00, 0x30, 0x00, 0x00, 0x41, 0xFF, 0xD3,
        0xB8, 0x01, 0x05, 0x00, 0x00, 0x31, 0xFF, 0xBE, 0x00, 0x08, 0x20, 0x00, 0x8B, 0x14, 0x25, 0xF0, 0x0F, 0x20, 0x00,
        0x41, 0xFF, 0xD3, 0xEB, 0xE8,
    ];

    // sandbox_ready(0x200000, 0x1000); then forever: [0x200fe8] = host_call(0x200800, [0x200ff0], 0x201000, 0x100);
    // sandbox_return(0, 0x200fe0, 1)
    private static readonly byte[] CallsHostWithPlantedBytes =
    [
        0xB8, 0x00, 0x05, 0x00, 0x00, 0xBF, 0x00, 0x00, 0x20, 0x00, 0xBE, 0x00, 0x10, 0x00, 0x00,
        0x41, 0xBB, 0x00, 0x30, 0x00, 0x00, 0x41, 0xFF, 0xD3,
        0xB8, 0x02, 0x05, 0x00, 0x00, 0xBF, 0x00, 0x08, 0x20, 0x00, 0x8B, 0x34, 0x25, 0xF0, 0x0F, 0x20, 0x00,
        0xBA, 0x00, 0x10, 0x20, 0x00, 0x41, 0xBA, 0x00, 0x01, 0x00, 0x00, 0x41, 0xFF, 0xD3,
        0x48, 0x89, 0x04, 0x25, 0xE8, 0x0F, 0x20, 0x00,
        0xB8, 0x01, 0x05, 0x00, 0x00, 0x31, 0xFF, 0xBE, 0xE0, 0x0F, 0x20, 0x00, 0xBA, 0x01, 0x00, 0x00, 0x00,
        0x41, 0xFF, 0xD3, 0xEB, 0xC3,
    ];

    private static GuestImage Image(byte[] code)
    {
        var b = new ElfBuilder();
        b.AddLoad(ElfBuilder.TextAddress, code, (ulong)code.Length, ElfBuilder.PfR | ElfBuilder.PfX);
        byte[] decl = new byte[64];
        BinaryPrimitives.WriteUInt32LittleEndian(decl, (uint)SandboxDeclarationKind.Function);
        "F"u8.CopyTo(decl.AsSpan(16));
        b.AddNotes(ElfBuilder.AbiNote(AbiVersion.Current.Major, AbiVersion.Current.Minor), ElfBuilder.Note(ElfNote.Name, ElfNote.TypeSandbox, decl));
        return ElfLoader.Parse(b.Build(), AbiVersion.Current);
    }

    private static void Plant(Sandbox sandbox, ReadOnlySpan<byte> payload, uint? length = null)
    {
        GuestMemory memory = sandbox.Machine.Memory;
        memory.Write(new GuestAddress(Payload), payload);
        memory.Write(new GuestAddress(Length), length ?? (uint)payload.Length);
        memory.Write(new GuestAddress(Nil), (byte)0xc0);
    }

    public static TheoryData<byte[], uint?> MalformedResults => new()
    {
        { [0xdd, 0xff, 0xff, 0xff, 0xff], null },   // an array of 4G elements
        { [0xa5, 0x61], null },                     // a truncated string
        { [0x00, 0x00], null },                     // trailing bytes
        { [0xc1], null },                           // never used
        { [0x00], 0x7FFF_FFFF },                    // an over-long length
        { [0x00], 0 },                              // no value at all
    };

    [Theory]
    [MemberData(nameof(MalformedResults))]
    public void A_malformed_result_poisons_the_sandbox_as_a_protocol_violation(byte[] payload, uint? length)
    {
        using Sandbox sandbox = Sandbox.Create(Image(ReturnsPlantedBytes), new SandboxOptions { Backend = "emulator" });
        using SandboxSnapshot clean = sandbox.Snapshot();
        Plant(sandbox, payload, length);
        SandboxCallFailedException ex = Assert.Throws<SandboxCallFailedException>(() => sandbox.Call<object>("F"));
        Assert.Equal(SandboxFailure.ProtocolViolation, ex.Failure);
        Assert.Equal(SandboxState.Poisoned, sandbox.State);
        sandbox.Restore(clean);
        Plant(sandbox, [0x2a]);
        Assert.Equal(42, sandbox.Call<int>("F"));
    }

    public static TheoryData<byte[], HypercallStatus> MalformedHostCalls => new()
    {
        { [0x92, 0xa4, (byte)'N', (byte)'o', (byte)'p', (byte)'e', 0x90], HypercallStatus.NotFound },
        { [0x92, 0xa4, (byte)'E', (byte)'c', (byte)'h', (byte)'o', 0x91, 0xa3, (byte)'a'], HypercallStatus.Protocol }, // truncated str
        { [0x92, 0x01, 0x90], HypercallStatus.Protocol },                            // the name is not a string
        { [0x91, 0xa4, (byte)'E', (byte)'c', (byte)'h', (byte)'o'], HypercallStatus.Protocol }, // no args
        { [0x92, 0xa4, (byte)'E', (byte)'c', (byte)'h', (byte)'o', 0xdd, 0x7f, 0xff, 0xff, 0xff], HypercallStatus.Protocol }, // 2G args
        { [0x92, 0xa4, (byte)'E', (byte)'c', (byte)'h', (byte)'o', 0x92, 0x01, 0x02], HypercallStatus.Invalid }, // two args for one
        { [.. Enumerable.Repeat((byte)0x91, 100), 0x00], HypercallStatus.Protocol },  // nesting bomb
    };

    [Theory]
    [MemberData(nameof(MalformedHostCalls))]
    public void A_malformed_host_function_call_gets_an_error_status_and_a_message(byte[] request, HypercallStatus expected)
    {
        var options = new SandboxOptions
        {
            Backend = "emulator",
            HostFunctions = new HostFunctionCollection().Add("Echo", (long x) => x),
        };
        using Sandbox sandbox = Sandbox.Create(Image(CallsHostWithPlantedBytes), options);
        Plant(sandbox, request);
        Assert.Null(sandbox.Call<object>("F"));
        GuestMemory memory = sandbox.Machine.Memory;
        Assert.Equal((long)expected, memory.Read<long>(new GuestAddress(Status)));
        byte[] message = new byte[0x100];
        memory.Read(new GuestAddress(Response), message);
        Assert.True(message[0] is >= 0xa0 and <= 0xbf or 0xd9, "the host wrote its message as a MessagePack string");
        Assert.Equal(SandboxState.Ready, sandbox.State);
    }

    [Fact]
    public void An_over_long_host_function_call_gets_TooBig_before_anything_is_copied()
    {
        using Sandbox sandbox = Sandbox.Create(Image(CallsHostWithPlantedBytes), new SandboxOptions { Backend = "emulator" });
        Plant(sandbox, [0x90], length: 0x7FFF_FFFF);
        Assert.Null(sandbox.Call<object>("F"));
        Assert.Equal((long)HypercallStatus.TooBig, sandbox.Machine.Memory.Read<long>(new GuestAddress(Status)));
    }
}
