namespace Paravirt.Hypervisor.Memory;

/// <summary>A guest-physical address. Its own type so that host pointers and guest addresses never mix.</summary>
public readonly record struct GuestAddress(ulong Value)
{
    /// <summary>Adds <paramref name="offset"/>, or returns false on 64-bit overflow.</summary>
    public bool TryAdd(ulong offset, out GuestAddress result)
    {
        ulong sum = Value + offset;
        result = new GuestAddress(sum);
        return sum >= Value;
    }

    /// <inheritdoc/>
    public override string ToString() => $"0x{Value:x}";
}
