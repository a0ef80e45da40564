// Keeps its own imports: fuzz/Paravirt.Fuzz compiles this file too.
using System.Buffers.Binary;
using Paravirt.Abi;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Memory;
using Paravirt.Hypervisor.Sandboxes;
using Paravirt.Hypervisor.Tests.Loading;

namespace Paravirt.Hypervisor.Tests.Sandboxes;

/// <summary>
/// Two sandbox guests in machine code that hand the host whatever bytes the host planted in their memory: one returns
/// them as its function's result (<c>sandbox_return</c>), one passes them to <c>host_call</c> and keeps the status.
/// Shared by the hostile-guest tests and the <c>calls</c> fuzz harness (fuzz/Paravirt.Fuzz links this file).
/// </summary>
internal static class PlantedBytesGuests
{
    public const ulong Buffer = 0x20_0000, Payload = 0x20_0800, Length = 0x20_0FF0, Status = 0x20_0FE8, Nil = 0x20_0FE0, Response = 0x20_1000;

    // sandbox_ready(0x200000, 0x1000); then forever: sandbox_return(0, 0x200800, [0x200ff0])
    public static readonly byte[] ReturnsPlantedBytes =
    [
        0xB8, 0x00, 0x05, 0x00, 0x00, 0xBF, 0x00, 0x00, 0x20, 0x00, 0xBE, 0x00, 0x10, 0x00, 0x00,
        0x41, 0xBB, 0x00, 0x30, 0x00, 0x00, 0x41, 0xFF, 0xD3,
        0xB8, 0x01, 0x05, 0x00, 0x00, 0x31, 0xFF, 0xBE, 0x00, 0x08, 0x20, 0x00, 0x8B, 0x14, 0x25, 0xF0, 0x0F, 0x20, 0x00,
        0x41, 0xFF, 0xD3, 0xEB, 0xE8,
    ];

    // sandbox_ready(0x200000, 0x1000); then forever: [0x200fe8] = host_call(0x200800, [0x200ff0], 0x201000, 0x100);
    // sandbox_return(0, 0x200fe0, 1)
    public static readonly byte[] CallsHostWithPlantedBytes =
    [
        0xB8, 0x00, 0x05, 0x00, 0x00, 0xBF, 0x00, 0x00, 0x20, 0x00, 0xBE, 0x00, 0x10, 0x00, 0x00,
        0x41, 0xBB, 0x00, 0x30, 0x00, 0x00, 0x41, 0xFF, 0xD3,
        0xB8, 0x02, 0x05, 0x00, 0x00, 0xBF, 0x00, 0x08, 0x20, 0x00, 0x8B, 0x34, 0x25, 0xF0, 0x0F, 0x20, 0x00,
        0xBA, 0x00, 0x10, 0x20, 0x00, 0x41, 0xBA, 0x00, 0x01, 0x00, 0x00, 0x41, 0xFF, 0xD3,
        0x48, 0x89, 0x04, 0x25, 0xE8, 0x0F, 0x20, 0x00,
        0xB8, 0x01, 0x05, 0x00, 0x00, 0x31, 0xFF, 0xBE, 0xE0, 0x0F, 0x20, 0x00, 0xBA, 0x01, 0x00, 0x00, 0x00,
        0x41, 0xFF, 0xD3, 0xEB, 0xC3,
    ];

    /// <summary>An image of <paramref name="code"/> at 1 MiB that declares one guest function, <c>F</c>.</summary>
    public static GuestImage Image(byte[] code)
    {
        var b = new ElfBuilder();
        b.AddLoad(ElfBuilder.TextAddress, code, (ulong)code.Length, ElfBuilder.PfR | ElfBuilder.PfX);
        byte[] decl = new byte[64];
        BinaryPrimitives.WriteUInt32LittleEndian(decl, (uint)SandboxDeclarationKind.Function);
        "F"u8.CopyTo(decl.AsSpan(16));
        b.AddNotes(ElfBuilder.AbiNote(AbiVersion.Current.Major, AbiVersion.Current.Minor), ElfBuilder.Note(ElfNote.Name, ElfNote.TypeSandbox, decl));
        return ElfLoader.Parse(b.Build(), AbiVersion.Current);
    }

    /// <summary>Puts <paramref name="payload"/> where the guest reads it, with its length (or <paramref name="length"/>: a lie).</summary>
    public static void Plant(Sandbox sandbox, ReadOnlySpan<byte> payload, uint? length = null)
    {
        GuestMemory memory = sandbox.Machine.Memory;
        memory.Write(new GuestAddress(Payload), payload);
        memory.Write(new GuestAddress(Length), length ?? (uint)payload.Length);
        memory.Write(new GuestAddress(Nil), (byte)0xc0);
    }
}
