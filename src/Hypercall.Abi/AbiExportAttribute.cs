namespace Paravirt.Abi;

/// <summary>
/// Marks an ABI type (enum, struct or constants class) for export to the generated C header
/// <c>paravirt/abi.h</c>. The C header is produced from these definitions by <c>tools/Paravirt.AbiGen</c>
/// and is never edited by hand.
/// </summary>
[AttributeUsage(AttributeTargets.Enum | AttributeTargets.Struct | AttributeTargets.Class, Inherited = false)]
public sealed class AbiExportAttribute : Attribute
{
    /// <summary>Creates the attribute.</summary>
    /// <param name="cName">The C name: a type name for enums and structs (<c>pv_boot_info</c>), a macro prefix for constants (<c>PV_HYPERCALL_PAGE</c>).</param>
    public AbiExportAttribute(string cName) => CName = cName;

    /// <summary>The C name or macro prefix.</summary>
    public string CName { get; }
}
