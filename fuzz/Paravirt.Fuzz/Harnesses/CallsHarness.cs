using System.Buffers;
using MessagePack;
using Paravirt.Hypervisor.Sandboxes;
using Paravirt.Hypervisor.Tests.Sandboxes;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The MessagePack call boundary: the bytes a sandbox guest hands the host. Each input goes first to
/// <see cref="MessagePackValidator"/> (a pure verdict, which must agree with MessagePack-CSharp's own reader on what
/// it accepts), then through the real entry points of a real sandbox on the emulator: planted in the memory of a
/// guest that returns them as its function's result (<c>sandbox_return</c>, then the host's copy, validation and
/// typed decoding), or that passes them to <c>host_call</c> (validation, lookup, argument decoding, the host
/// function, the response). Allowed outcomes are the documented ones: a result, a
/// <see cref="SandboxCallFailedException"/> for a protocol violation (the results sandbox restores itself:
/// <see cref="SandboxOptions.RestoreAfterEachCall"/>; the host-call sandbox must never be poisoned), a <see cref="GuestFunctionException"/> for a result that is
/// not the requested type, an error status and message for a bad host call.
/// </summary>
/// <remarks>
/// Input: byte 0 selects the route (bit 0: host call; bit 1: the guest lies about the length, taken from bytes 1-4;
/// bit 2: the result is decoded as <c>object</c> instead of returned raw); the rest is the payload (at most
/// <see cref="MaxPayload"/> bytes, what fits in the guest's planted area).
/// </remarks>
internal sealed class CallsHarness : Harness
{
    /// <summary>Bytes between the planted payload and the guest's length word.</summary>
    public const int MaxPayload = (int)(PlantedBytesGuests.Nil - PlantedBytesGuests.Payload);

    private const int ResponseCapacity = 0x100;

    private static readonly MessagePackLimits Limits = MessagePackLimits.Default;

    private Sandbox? _results;
    private Sandbox? _hostCalls;

    public override void Run(ReadOnlySpan<byte> data)
    {
        var input = new FuzzReader(data);
        byte route = input.U8();
        uint? lie = (route & 2) != 0 ? input.U32() : null;
        ReadOnlySpan<byte> payload = input.Bytes(MaxPayload);

        CheckValidator(payload);
        Exercised++;
        if ((route & 1) == 0)
        {
            Result(payload, lie, decode: (route & 4) != 0);
        }
        else
        {
            HostCall(payload, lie);
        }
    }

    /// <summary>The verdicts never throw, stay inside the payload, and what they accept MessagePack-CSharp reads as exactly that.</summary>
    private static void CheckValidator(ReadOnlySpan<byte> payload)
    {
        MessagePackCheck value = MessagePackValidator.Validate(payload, Limits);
        if (value.Offset < 0 || value.Offset > payload.Length || value.IsValid != (value.Message is null))
        {
            throw new FuzzFindingException($"Validate gave an inconsistent verdict {value} for {payload.Length} bytes");
        }
        byte[] bytes = payload.ToArray();
        if (value.IsValid && EndOfOneValue(bytes, 0) != bytes.Length)
        {
            throw new FuzzFindingException("Validate accepted what MessagePack-CSharp does not read as exactly one value");
        }
        MessagePackCheck call = MessagePackValidator.ValidateCall(payload, Limits, out string name, out int argumentsOffset, out int argumentCount);
        if (!call.IsValid)
        {
            return;
        }
        if (!value.IsValid || argumentsOffset <= 0 || argumentsOffset >= bytes.Length || argumentCount < 0)
        {
            throw new FuzzFindingException($"ValidateCall accepted a call that Validate refused or with arguments at {argumentsOffset} of {bytes.Length}");
        }
        var reader = new MessagePackReader(bytes);
        if (reader.ReadArrayHeader() != 2 || reader.ReadString() != name || reader.Consumed != argumentsOffset
            || reader.ReadArrayHeader() != argumentCount)
        {
            throw new FuzzFindingException("ValidateCall's name, arguments offset or count differ from what MessagePack-CSharp reads");
        }
    }

    /// <summary>Where the one value at <paramref name="offset"/> ends as MessagePack-CSharp reads it (-1: it cannot).</summary>
    private static long EndOfOneValue(byte[] bytes, int offset)
    {
        try
        {
            var reader = new MessagePackReader(new ReadOnlySequence<byte>(bytes, offset, bytes.Length - offset));
            reader.Skip();
            return offset + reader.Consumed;
        }
        catch (MessagePackSerializationException)
        {
            return -1;
        }
        catch (EndOfStreamException)
        {
            return -1;
        }
    }

    private void Result(ReadOnlySpan<byte> payload, uint? lie, bool decode)
    {
        Sandbox sandbox = _results ??= Create(PlantedBytesGuests.ReturnsPlantedBytes, [], restoreAfterEachCall: true);
        PlantedBytesGuests.Plant(sandbox, payload, lie);
        bool honest = lie is null || lie == (uint)payload.Length;
        bool valid = MessagePackValidator.Validate(payload, Limits).IsValid;
        try
        {
            if (decode)
            {
                _ = sandbox.Call<object?>("F");
            }
            else
            {
                byte[] result = sandbox.CallRaw("F", [0x90]);
                if (honest && !result.AsSpan().SequenceEqual(payload))
                {
                    throw new FuzzFindingException("the host returned other bytes than the guest's result");
                }
            }
            if (honest && !valid)
            {
                throw new FuzzFindingException("the host accepted a result the validator refuses");
            }
        }
        catch (SandboxCallFailedException e) when (e.Failure == SandboxFailure.ProtocolViolation)
        {
            if (honest && valid)
            {
                throw new FuzzFindingException($"the host refused a valid result: {e.Message}");
            }
        }
        catch (GuestFunctionException e) when (decode && e.Status == HypercallStatus.Protocol)
        {
            // A valid document that is not an object graph MessagePack-CSharp decodes (e.g. an unknown extension).
        }
        CheckReady(sandbox);
    }

    private void HostCall(ReadOnlySpan<byte> payload, uint? lie)
    {
        Sandbox sandbox = _hostCalls ??= Create(PlantedBytesGuests.CallsHostWithPlantedBytes, new HostFunctionCollection()
            .Add("Add", (long a, long b) => a + b)
            .Add("Greet", (string name) => $"Hello, {name}!")
            .Add("Echo", (object? value) => value)
            .Add("Throw", (int code) => code < 0 ? throw new InvalidOperationException("a host function bug") : code),
            restoreAfterEachCall: false); // the status and response are read from guest memory after the call
        PlantedBytesGuests.Plant(sandbox, payload, lie);
        GuestMemory memory = sandbox.Machine.Memory;
        memory.Write(new GuestAddress(PlantedBytesGuests.Status), long.MinValue);
        object? nil = sandbox.Call<object?>("F");
        if (nil is not null)
        {
            throw new FuzzFindingException("the host-calling guest's nil result came back as something else");
        }
        long status = memory.Read<long>(new GuestAddress(PlantedBytesGuests.Status));
        byte[] response = new byte[ResponseCapacity];
        memory.Read(new GuestAddress(PlantedBytesGuests.Response), response);
        if (status >= 0)
        {
            if (status > ResponseCapacity || !MessagePackValidator.Validate(response.AsSpan(0, (int)status), Limits).IsValid)
            {
                throw new FuzzFindingException($"host_call answered {status} bytes that are not one MessagePack value within the response buffer");
            }
            if ((lie is null || lie == (uint)payload.Length) && !MessagePackValidator.ValidateCall(payload, Limits, out _, out _, out _).IsValid)
            {
                throw new FuzzFindingException("host_call ran a function for a call the validator refuses");
            }
        }
        else if (!Enum.IsDefined((HypercallStatus)status))
        {
            throw new FuzzFindingException($"host_call answered {status}, which is not a status");
        }
        else if (status is not ((long)HypercallStatus.Fault or (long)HypercallStatus.TooBig) && response[0] is not (>= 0xa0 and <= 0xbf or 0xd9))
        {
            throw new FuzzFindingException($"host_call answered {(HypercallStatus)status} without a MessagePack string message");
        }
        CheckReady(sandbox);
    }

    private static Sandbox Create(byte[] code, HostFunctionCollection functions, bool restoreAfterEachCall) =>
        Sandbox.Create(PlantedBytesGuests.Image(code), new SandboxOptions
        {
            Backend = "emulator",
            RestoreAfterEachCall = restoreAfterEachCall,
            HostFunctions = functions,
            CallInstructionBudget = 100_000,
            PayloadLimits = Limits,
        });

    private static void CheckReady(Sandbox sandbox)
    {
        if (sandbox.State != SandboxState.Ready)
        {
            throw new FuzzFindingException($"the sandbox is {sandbox.State} after a call ({sandbox.PoisonReason})");
        }
    }

    public override void Dispose()
    {
        _results?.Dispose();
        _hostCalls?.Dispose();
    }
}
