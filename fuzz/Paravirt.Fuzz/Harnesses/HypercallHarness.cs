namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// Hypercall dispatch, every handler: the input fills part of guest memory and then names up to 32 calls, each a
/// registered code (or any code) with arguments a hostile guest would pick (addresses near the end of memory,
/// wrapping values, page-aligned rings...). Devices: a console, a block device on a scratch image and a net device on
/// a switch. No handler may throw; results are values or statuses.
/// </summary>
internal sealed class HypercallHarness : Harness
{
    private static readonly byte[] DiskImage = new byte[64 * 1024];
    private readonly GuestMemory _memory = new(FuzzGuest.MemorySize);
    private readonly Hypervisor.Hypercalls.HypercallDispatcher _dispatcher = FuzzGuest.NewDispatcher();
    private readonly uint[] _codes;
    private readonly string _disk = Path.Combine(Directory.CreateTempSubdirectory("paravirt-fuzz-hc-").FullName, "disk.img");

    public HypercallHarness() => _codes = [.. _dispatcher.Registrations.Select(r => r.Code).Order()];

    public override void Run(ReadOnlySpan<byte> data)
    {
        var r = new FuzzReader(data);
        _memory.Clear(new GuestAddress(0), FuzzGuest.MemorySize);
        File.WriteAllBytes(_disk, DiskImage); // what earlier inputs wrote must not decide this one (a finding replays alone)
        ReadOnlySpan<byte> fill = r.Bytes((r.U8() % 64) * 16);
        _memory.Write(new GuestAddress(0x10000 + (ulong)(r.U8() * 4096)), fill);
        var sw = new NetSwitch();
        using var guest = new FuzzGuest(_memory, _dispatcher,
            new ConsoleDevice("console0", Stream.Null),
            new BlockDevice("disk0", _disk, readOnly: (r.U8() & 1) != 0),
            new NetDevice("net0", sw.CreatePort()));
        for (int i = 0; i < 32 && !r.AtEnd; i++)
        {
            Exercised++;
            byte pick = r.U8();
            ulong code = pick < 0xF0 ? _codes[pick % _codes.Length] : r.U64();
            guest.Call(code, r.Interesting(FuzzGuest.MemorySize), r.Interesting(FuzzGuest.MemorySize), r.Interesting(FuzzGuest.MemorySize),
                r.Interesting(FuzzGuest.MemorySize), r.Interesting(FuzzGuest.MemorySize));
            if (guest.Session.ExitRequested)
            {
                break;
            }
        }
        guest.Stop();
        if (new FileInfo(_disk).Length != DiskImage.Length)
        {
            throw new FuzzFindingException("the guest changed the size of its disk image");
        }
    }

    public override void Dispose()
    {
        _memory.Dispose();
        Directory.Delete(Path.GetDirectoryName(_disk)!, recursive: true);
    }
}
