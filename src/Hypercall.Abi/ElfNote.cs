using System.Runtime.InteropServices;

namespace Paravirt.Abi;

/// <summary>
/// The guest image carries ELF notes (section <c>.note.paravirt</c>, in a <c>PT_NOTE</c> segment) with name
/// <see cref="Name"/>: one of type <see cref="TypeAbi"/> (the ABI version it was built for, an <see cref="AbiNote"/>)
/// and optionally one of type <see cref="TypeManifest"/> (the devices it needs: a <see cref="ManifestHeader"/>
/// followed by <c>Count</c> <see cref="ManifestEntry"/>), and any number of type <see cref="TypeSandbox"/> (a
/// <see cref="SandboxDeclaration"/> each: the guest functions a sandbox serves, the guard page below the stack). The host reads them before running anything.
/// </summary>
[AbiExport("PV_NOTE")]
public static class ElfNote
{
    /// <summary>The note owner name (the ELF note's name field, NUL-terminated in the file).</summary>
    public const string Name = "Paravirt";
    /// <summary>Note type of the ABI version note.</summary>
    public const uint TypeAbi = 1;
    /// <summary>Note type of the device manifest note.</summary>
    public const uint TypeManifest = 2;
    /// <summary>Note type of a sandbox declaration (a guest function or the stack's guard page): one <see cref="SandboxDeclaration"/> per note.</summary>
    public const uint TypeSandbox = 3;
    /// <summary>Most manifest entries a host accepts.</summary>
    public const uint ManifestMaxEntries = 64;
}

/// <summary>Descriptor of the ABI note: the version the guest was built against.</summary>
[AbiExport("pv_abi_note")]
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct AbiNote
{
    /// <summary>ABI major version the guest was built against.</summary>
    [FieldOffset(0)] public ushort AbiMajor;
    /// <summary>ABI minor version the guest was built against.</summary>
    [FieldOffset(2)] public ushort AbiMinor;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(4)] public uint Flags;
}

/// <summary>Header of the manifest note descriptor.</summary>
[AbiExport("pv_manifest_header")]
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct ManifestHeader
{
    /// <summary>Number of <see cref="ManifestEntry"/> that follow.</summary>
    [FieldOffset(0)] public uint Count;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(4)] public uint Reserved;
}

/// <summary>One device the guest needs.</summary>
[AbiExport("pv_manifest_entry")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public unsafe struct ManifestEntry
{
    /// <summary>A <see cref="DeviceKind"/>.</summary>
    [FieldOffset(0)] public uint Kind;
    /// <summary>Flags; bit 0 = optional (the guest runs without it).</summary>
    [FieldOffset(4)] public uint Flags;
    /// <summary>Device name, NUL-padded ASCII (e.g. "disk0", "net0").</summary>
    [FieldOffset(8)] public fixed byte Name[24];
}

/// <summary>Kinds of paravirtual device. Append-only.</summary>
[AbiExport("pv_device_kind")]
public enum DeviceKind : uint
{
    /// <summary>Not a device.</summary>
    None = 0,
    /// <summary>Console byte streams.</summary>
    Console = 1,
    /// <summary>Block device (512-byte sectors).</summary>
    Block = 2,
    /// <summary>Network interface (Ethernet frames).</summary>
    Net = 3,
}
