using System.Runtime.InteropServices;

namespace Paravirt.Abi;

/// <summary>
/// Sandboxes: a guest that serves typed calls. The image declares its guest functions (and the guard page below its
/// stack) in ELF notes of type <see cref="ElfNote.TypeSandbox"/>, one <see cref="SandboxDeclaration"/> per note, so
/// the host lists them before running anything. After its initialization the guest calls
/// <see cref="HypercallCode.SandboxReady"/> with its call buffer; the host then delivers calls into that buffer and
/// the guest answers each with <see cref="HypercallCode.SandboxReturn"/>, calling host functions with
/// <see cref="HypercallCode.HostCall"/> meanwhile. Every payload is MessagePack (the msgpack.org specification):
/// <list type="bullet">
/// <item>a call (host to guest, in the call buffer): <c>[name: str, args: array]</c>;</item>
/// <item>a host-function call (guest to host): <c>[name: str, args: array]</c>;</item>
/// <item>a result: one MessagePack value; an error: a negative <see cref="HypercallStatus"/> plus a MessagePack
/// <c>str</c> message in the result buffer.</item>
/// </list>
/// The host validates every payload (size, nesting, well-formedness) before it decodes anything.
/// </summary>
[AbiExport("PV_SANDBOX")]
public static class SandboxConstants
{
    /// <summary>Longest guest-function name in bytes (the 48-byte name field keeps a NUL).</summary>
    public const uint NameMax = 47;
    /// <summary>Most guest functions an image may declare.</summary>
    public const uint MaxFunctions = 256;
    /// <summary>Smallest call buffer <see cref="HypercallCode.SandboxReady"/> accepts.</summary>
    public const uint MinCallBuffer = 4096;
    /// <summary>Largest call buffer <see cref="HypercallCode.SandboxReady"/> accepts (16 MiB).</summary>
    public const uint MaxCallBuffer = 16u << 20;
    /// <summary>Size of the guard page the image declares below its stack.</summary>
    public const uint GuardPageSize = 4096;
}

/// <summary>What a <see cref="SandboxDeclaration"/> declares. Append-only.</summary>
[AbiExport("pv_sandbox_decl_kind")]
public enum SandboxDeclarationKind : uint
{
    /// <summary>Not a declaration.</summary>
    None = 0,
    /// <summary>A guest function the host may call: <see cref="SandboxDeclaration.Name"/> is its name.</summary>
    Function = 1,
    /// <summary>A guard page: <see cref="SandboxDeclaration.Address"/> is the page-aligned guest-physical address of a page below the stack that nothing may touch (a write there is a stack overflow).</summary>
    StackGuard = 2,
}

/// <summary>The descriptor of one <see cref="ElfNote.TypeSandbox"/> note.</summary>
[AbiExport("pv_sandbox_decl")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public unsafe struct SandboxDeclaration
{
    /// <summary>A <see cref="SandboxDeclarationKind"/>.</summary>
    [FieldOffset(0)] public uint Kind;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(4)] public uint Flags;
    /// <summary><see cref="SandboxDeclarationKind.StackGuard"/>: the guard page's address; otherwise zero.</summary>
    [FieldOffset(8)] public ulong Address;
    /// <summary><see cref="SandboxDeclarationKind.Function"/>: the function's name, 1 to 47 printable ASCII characters, NUL-padded; otherwise zeros.</summary>
    [FieldOffset(16)] public fixed byte Name[48];
}
