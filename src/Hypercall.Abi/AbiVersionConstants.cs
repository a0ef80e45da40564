namespace Paravirt.Abi;

/// <summary>The current ABI version as constants (exported to C as <c>PV_ABI_VERSION_MAJOR</c>/<c>_MINOR</c>).</summary>
[AbiExport("PV_ABI_VERSION")]
public static class AbiVersionConstants
{
    /// <summary>Major version: changes only with an incompatible change.</summary>
    public const ushort Major = 1;
    /// <summary>Minor version: bumped for every append-only addition.</summary>
    public const ushort Minor = 1;
}
