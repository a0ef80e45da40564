using System.Diagnostics.CodeAnalysis;

namespace Paravirt.Abi;

/// <summary>
/// The ABI version, <c>major.minor</c>. Compatibility rule: a host of version H runs a guest built for version G
/// when <c>G.Major == H.Major</c> and <c>G.Minor &lt;= H.Minor</c>. A minor bump only appends (new codes, new
/// boot-info fields at the end, new feature bits); anything else is a major bump.
/// </summary>
public readonly record struct AbiVersion(ushort Major, ushort Minor)
{
    /// <summary>The version this assembly defines.</summary>
    public static AbiVersion Current => new(AbiVersionConstants.Major, AbiVersionConstants.Minor);

    /// <summary>Packed form used in hypercall results and registers: <c>(major &lt;&lt; 16) | minor</c>.</summary>
    public uint Packed => ((uint)Major << 16) | Minor;

    /// <summary>Unpacks a value produced by <see cref="Packed"/>.</summary>
    public static AbiVersion FromPacked(uint packed) => new((ushort)(packed >> 16), (ushort)packed);

    /// <summary>True when a host of this version can run a guest built for <paramref name="guest"/>.</summary>
    public bool CanRun(AbiVersion guest) => guest.Major == Major && guest.Minor <= Minor;

    /// <summary>Explains why a host of this version refuses <paramref name="guest"/>, or returns false when it does not.</summary>
    public bool TryExplainRefusal(AbiVersion guest, [NotNullWhen(true)] out string? reason)
    {
        if (guest.Major != Major)
        {
            reason = $"the image was built for Paravirt ABI {guest}, but this host implements ABI {this}; major versions must match (rebuild the guest against Paravirt.Guest.Sdk {Major}.x)";
            return true;
        }
        if (guest.Minor > Minor)
        {
            reason = $"the image was built for Paravirt ABI {guest}, which is newer than this host's ABI {this}; update the host (Paravirt.Hypervisor.Core) or rebuild the guest against an older SDK";
            return true;
        }
        reason = null;
        return false;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Major}.{Minor}";
}
