// Keeps its own imports: fuzz/Paravirt.Fuzz compiles this file too.
using System.Buffers.Binary;
using System.Text;
using Paravirt.Abi;

namespace Paravirt.Hypervisor.Tests.Loading;

/// <summary>
/// Builds ELF64 images in memory, field by field, so each test can produce exactly the broken (or valid) image it
/// needs. Every header and program header field can be overridden after the layout is computed.
/// </summary>
internal sealed class ElfBuilder
{
    public const uint PtLoad = 1, PtInterp = 3, PtNote = 4, PtGnuStack = 0x6474e551;
    public const uint PfX = 1, PfW = 2, PfR = 4;
    public const ulong TextAddress = 0x10_0000, DataAddress = 0x10_1000;

    // e_ident and header fields.
    public byte[] Magic { get; set; } = [0x7F, (byte)'E', (byte)'L', (byte)'F'];
    public byte Class { get; set; } = 2;
    public byte Data { get; set; } = 1;
    public byte IdentVersion { get; set; } = 1;
    public byte OsAbi { get; set; }
    public ushort Type { get; set; } = 2;
    public ushort Machine { get; set; } = 62;
    public uint Version { get; set; } = 1;
    public ulong Entry { get; set; } = TextAddress;
    public ulong? PhOff { get; set; }
    public ulong ShOff { get; set; }
    public uint Flags { get; set; }
    public ushort EhSize { get; set; } = 64;
    public ushort PhEntSize { get; set; } = 56;
    public ushort? PhNum { get; set; }
    public ushort ShEntSize { get; set; }
    public ushort ShNum { get; set; }

    public List<Segment> Segments { get; } = [];

    /// <summary>One program header and its file bytes; the null fields are computed by <see cref="Build"/>.</summary>
    internal sealed class Segment
    {
        public uint Type { get; set; }
        public uint Flags { get; set; }
        public byte[] Bytes { get; set; } = [];
        public ulong VAddr { get; set; }
        public ulong? PAddr { get; set; }
        public ulong? MemSize { get; set; }
        public ulong Align { get; set; } = 16;
        public ulong? Offset { get; set; }
        public ulong? FileSize { get; set; }
    }

    /// <summary>A valid image: text (RX, 32 bytes) at 1 MiB, data (RW, 16 bytes of 0x100) at 1 MiB + 4 KiB, ABI note 1.0 and a two-device manifest.</summary>
    public static ElfBuilder Valid()
    {
        var b = new ElfBuilder();
        b.AddLoad(TextAddress, Pattern(32, 0x90), 32, PfR | PfX);
        b.AddLoad(DataAddress, Pattern(16, 0x40), 0x100, PfR | PfW);
        b.AddNotes(AbiNote(AbiVersion.Current.Major, AbiVersion.Current.Minor),
            ManifestNote((DeviceKind.Console, "console", false), (DeviceKind.Block, "disk0", true)));
        return b;
    }

    public static byte[] Pattern(int length, byte seed)
    {
        byte[] bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = (byte)(seed + i);
        }
        return bytes;
    }

    public Segment AddLoad(ulong address, byte[] bytes, ulong memSize, uint flags)
    {
        var s = new Segment { Type = PtLoad, Flags = flags, Bytes = bytes, VAddr = address, MemSize = memSize };
        Segments.Add(s);
        return s;
    }

    public Segment AddNotes(params byte[][] notes) => AddNoteSegment(4, notes);

    public Segment AddNoteSegment(ulong align, params byte[][] notes)
    {
        var s = new Segment { Type = PtNote, Flags = PfR, Bytes = [.. notes.SelectMany(n => n)], Align = align };
        Segments.Add(s);
        return s;
    }

    public ElfBuilder RemoveNotes()
    {
        Segments.RemoveAll(s => s.Type == PtNote);
        return this;
    }

    /// <summary>Encodes one note: namesz, descsz, type, name (NUL-terminated unless <paramref name="nameBytes"/> is given), desc, each padded to <paramref name="align"/>.</summary>
    public static byte[] Note(string owner, uint type, byte[] desc, int align = 4, byte[]? nameBytes = null, uint? descSize = null)
    {
        byte[] name = nameBytes ?? [.. Encoding.ASCII.GetBytes(owner), 0];
        var ms = new MemoryStream();
        Span<byte> h = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(h, (uint)name.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], descSize ?? (uint)desc.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], type);
        ms.Write(h);
        ms.Write(name);
        Pad(ms, align);
        ms.Write(desc);
        Pad(ms, align);
        return ms.ToArray();
    }

    public static byte[] AbiNote(ushort major, ushort minor) => Note(ElfNote.Name, ElfNote.TypeAbi, AbiDesc(major, minor));

    public static byte[] AbiDesc(ushort major, ushort minor)
    {
        byte[] d = new byte[8];
        BinaryPrimitives.WriteUInt16LittleEndian(d, major);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(2), minor);
        return d;
    }

    public static byte[] ManifestNote(params (DeviceKind Kind, string Name, bool Optional)[] devices) =>
        Note(ElfNote.Name, ElfNote.TypeManifest, ManifestDesc(devices));

    public static byte[] ManifestDesc(params (DeviceKind Kind, string Name, bool Optional)[] devices)
    {
        var entries = devices.Select(d => ManifestEntry((uint)d.Kind, d.Optional ? 1u : 0u, Encoding.ASCII.GetBytes(d.Name))).ToArray();
        return ManifestDescRaw((uint)entries.Length, entries);
    }

    public static byte[] ManifestDescRaw(uint count, params byte[][] entries)
    {
        var ms = new MemoryStream();
        Span<byte> h = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(h, count);
        ms.Write(h);
        foreach (byte[] e in entries)
        {
            ms.Write(e);
        }
        return ms.ToArray();
    }

    /// <summary>A 32-byte manifest entry; <paramref name="name"/> is copied into the 24-byte name field as given (not validated).</summary>
    public static byte[] ManifestEntry(uint kind, uint flags, byte[] name)
    {
        byte[] e = new byte[32];
        BinaryPrimitives.WriteUInt32LittleEndian(e, kind);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(4), flags);
        name.AsSpan(0, Math.Min(name.Length, 24)).CopyTo(e.AsSpan(8));
        return e;
    }

    /// <summary>Lays out header, program headers and segment bytes, then applies overrides.</summary>
    public byte[] Build()
    {
        var file = new MemoryStream();
        file.Write(new byte[64 + 56 * Segments.Count]);
        var offsets = new ulong[Segments.Count];
        for (int i = 0; i < Segments.Count; i++)
        {
            Segment s = Segments[i];
            // Place the bytes so that offset == vaddr modulo the alignment (as a linker does).
            ulong align = Math.Max(s.Align, 1);
            ulong pos = (ulong)file.Length;
            while (pos % align != s.VAddr % align)
            {
                pos++;
            }
            file.SetLength((long)pos);
            file.Position = (long)pos;
            file.Write(s.Bytes);
            offsets[i] = pos;
        }
        byte[] f = file.ToArray();
        Span<byte> span = f;
        Magic.AsSpan(0, Math.Min(Magic.Length, 16)).CopyTo(span);
        span[4] = Class;
        span[5] = Data;
        span[6] = IdentVersion;
        span[7] = OsAbi;
        BinaryPrimitives.WriteUInt16LittleEndian(span[16..], Type);
        BinaryPrimitives.WriteUInt16LittleEndian(span[18..], Machine);
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(span[24..], Entry);
        BinaryPrimitives.WriteUInt64LittleEndian(span[32..], PhOff ?? 64);
        BinaryPrimitives.WriteUInt64LittleEndian(span[40..], ShOff);
        BinaryPrimitives.WriteUInt32LittleEndian(span[48..], Flags);
        BinaryPrimitives.WriteUInt16LittleEndian(span[52..], EhSize);
        BinaryPrimitives.WriteUInt16LittleEndian(span[54..], PhEntSize);
        BinaryPrimitives.WriteUInt16LittleEndian(span[56..], PhNum ?? (ushort)Segments.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(span[58..], ShEntSize);
        BinaryPrimitives.WriteUInt16LittleEndian(span[60..], ShNum);
        for (int i = 0; i < Segments.Count; i++)
        {
            Segment s = Segments[i];
            Span<byte> ph = span.Slice(64 + 56 * i, 56);
            BinaryPrimitives.WriteUInt32LittleEndian(ph, s.Type);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], s.Flags);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], s.Offset ?? offsets[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], s.VAddr);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], s.PAddr ?? s.VAddr);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], s.FileSize ?? (ulong)s.Bytes.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], s.MemSize ?? (ulong)s.Bytes.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[48..], s.Align);
        }
        return f;
    }

    private static void Pad(MemoryStream ms, int align)
    {
        while (ms.Length % align != 0)
        {
            ms.WriteByte(0);
        }
    }
}
