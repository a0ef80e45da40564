using MessagePack;

namespace Paravirt.Hypervisor.Tests.Sandboxes;

/// <summary>The host's MessagePack validator: a pure function from untrusted bytes to a verdict.</summary>
public sealed class MessagePackValidatorTests
{
    private static readonly MessagePackLimits Limits = new(1 << 16, 8);

    [Fact]
    public void Well_formed_values_of_every_family_are_accepted()
    {
        object?[] values =
        [
            null, true, 0, -1, 255, -129, long.MinValue, ulong.MaxValue, 1.5f, 2.5, "", "héllo", new string('x', 300),
            new byte[] { 1, 2 }, new object?[] { 1, "a", new object?[] { null } }, new Dictionary<string, int> { ["k"] = 1 },
            new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc),
        ];
        foreach (object? v in values)
        {
            byte[] bytes = MessagePackSerializer.Serialize(v, SandboxOptions.DefaultSerializerOptions);
            MessagePackCheck check = MessagePackValidator.Validate(bytes, Limits);
            Assert.True(check.IsValid, $"{v}: {check.Message}");
        }
    }

    public static TheoryData<byte[], MessagePackError> Hostile => new()
    {
        { [], MessagePackError.Truncated },
        { [0xc1], MessagePackError.InvalidFormat },
        { [0x01, 0x02], MessagePackError.TrailingBytes },
        { [0xcd, 0x01], MessagePackError.Truncated },                          // uint16 cut off
        { [0xa5, (byte)'a', (byte)'b'], MessagePackError.Truncated },          // fixstr of 5 with 2 bytes
        { [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], MessagePackError.Truncated },  // str32 claiming 4 GiB
        { [0xc6, 0x7f, 0xff, 0xff, 0xff], MessagePackError.Truncated },        // bin32 claiming 2 GiB
        { [0xdd, 0xff, 0xff, 0xff, 0xff], MessagePackError.Truncated },        // array32 of 4G elements, no bytes
        { [0xdf, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02, 0x03], MessagePackError.Truncated }, // map of 2 pairs, 3 bytes
        { [0xa2, 0xc3, 0x28], MessagePackError.InvalidUtf8 },                  // invalid UTF-8 in a string
        { [0xd6, 0xff, 0x00, 0x00], MessagePackError.Truncated },              // fixext 4 cut off
        { [0xc7, 0x03, 0xff, 0x00, 0x00, 0x00], MessagePackError.InvalidTimestamp }, // timestamp of 3 bytes
        { [0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x00], MessagePackError.TooDeep }, // 9 levels, limit 8
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void Hostile_payloads_get_a_typed_error_never_an_exception(byte[] payload, MessagePackError expected)
    {
        MessagePackCheck check = MessagePackValidator.Validate(payload, Limits);
        Assert.Equal(expected, check.Error);
        Assert.False(string.IsNullOrEmpty(check.Message));
    }

    [Fact]
    public void Size_is_checked_before_anything_is_decoded()
    {
        Assert.Equal(MessagePackError.TooLarge, MessagePackValidator.Validate(new byte[(1 << 16) + 1], Limits).Error);
    }

    [Fact]
    public void Deep_nesting_up_to_the_limit_is_fine_and_a_million_levels_do_not_overflow_the_host_stack()
    {
        byte[] ok = [.. Enumerable.Repeat((byte)0x91, 8), 0x00];
        Assert.True(MessagePackValidator.Validate(ok, Limits).IsValid);
        byte[] bomb = [.. Enumerable.Repeat((byte)0x91, 1_000_000), 0x00];
        Assert.Equal(MessagePackError.TooDeep, MessagePackValidator.Validate(bomb, new MessagePackLimits(2_000_000, 10_000)).Error);
    }

    [Fact]
    public void Calls_must_be_a_name_and_an_argument_array()
    {
        byte[] call = MessagePackSerializer.Serialize(new object[] { "Add", new object[] { 1, 2 } });
        MessagePackCheck ok = MessagePackValidator.ValidateCall(call, Limits, out string name, out int offset, out int count);
        Assert.True(ok.IsValid, ok.Message);
        Assert.Equal("Add", name);
        Assert.Equal(2, count);
        Assert.Equal(0x92, call[offset]);

        foreach (object bad in new object[] { 1, new object[] { "Add" }, new object[] { 1, new object[0] }, new object[] { "Add", 1 }, new object[] { "", new object[0] }, new object[] { new string('n', 48), new object[0] } })
        {
            byte[] bytes = MessagePackSerializer.Serialize(bad);
            Assert.Equal(MessagePackError.UnexpectedType, MessagePackValidator.ValidateCall(bytes, Limits, out _, out _, out _).Error);
        }
    }

    [Fact]
    public void Random_bytes_never_throw()
    {
        var random = new Random(12345);
        for (int i = 0; i < 20_000; i++)
        {
            byte[] bytes = new byte[random.Next(0, 64)];
            random.NextBytes(bytes);
            _ = MessagePackValidator.Validate(bytes, Limits);
            _ = MessagePackValidator.ValidateCall(bytes, Limits, out _, out _, out _);
        }
    }
}
