namespace Paravirt.Hypervisor.Tests.Sandboxes;

/// <summary>
/// Guests written in machine code that break the call protocol on purpose: malformed results and host-function
/// calls (bytes the test plants in guest memory), impossible buffers. The host answers with error statuses or
/// poisons the sandbox; it never throws anything else or trusts a length.
/// </summary>
public sealed class HostileGuestSandboxTests
{
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
        using Sandbox sandbox = Sandbox.Create(PlantedBytesGuests.Image(PlantedBytesGuests.ReturnsPlantedBytes), new SandboxOptions { Backend = "emulator" });
        using SandboxSnapshot clean = sandbox.Snapshot();
        PlantedBytesGuests.Plant(sandbox, payload, length);
        SandboxCallFailedException ex = Assert.Throws<SandboxCallFailedException>(() => sandbox.Call<object>("F"));
        Assert.Equal(SandboxFailure.ProtocolViolation, ex.Failure);
        Assert.Equal(SandboxState.Poisoned, sandbox.State);
        sandbox.Restore(clean);
        PlantedBytesGuests.Plant(sandbox, [0x2a]);
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
        using Sandbox sandbox = Sandbox.Create(PlantedBytesGuests.Image(PlantedBytesGuests.CallsHostWithPlantedBytes), options);
        PlantedBytesGuests.Plant(sandbox, request);
        Assert.Null(sandbox.Call<object>("F"));
        GuestMemory memory = sandbox.Machine.Memory;
        Assert.Equal((long)expected, memory.Read<long>(new GuestAddress(PlantedBytesGuests.Status)));
        byte[] message = new byte[0x100];
        memory.Read(new GuestAddress(PlantedBytesGuests.Response), message);
        Assert.True(message[0] is >= 0xa0 and <= 0xbf or 0xd9, "the host wrote its message as a MessagePack string");
        Assert.Equal(SandboxState.Ready, sandbox.State);
    }

    [Fact]
    public void An_over_long_host_function_call_gets_TooBig_before_anything_is_copied()
    {
        using Sandbox sandbox = Sandbox.Create(PlantedBytesGuests.Image(PlantedBytesGuests.CallsHostWithPlantedBytes), new SandboxOptions { Backend = "emulator" });
        PlantedBytesGuests.Plant(sandbox, [0x90], length: 0x7FFF_FFFF);
        Assert.Null(sandbox.Call<object>("F"));
        Assert.Equal((long)HypercallStatus.TooBig, sandbox.Machine.Memory.Read<long>(new GuestAddress(PlantedBytesGuests.Status)));
    }
}
