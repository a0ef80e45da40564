using Paravirt.Abi;
using Paravirt.Hypervisor.Devices.Block;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The block ring: a ring of a fuzzed order is attached, then up to 16 rounds of requests straight from the input
/// (any operation, sector, length and buffer), published with an honest or a lying req_prod, and a doorbell. The
/// host must answer each request it takes exactly once, never more than were published, never grow or shrink the
/// image, and keep answering Broken once it stopped. The image starts from the same contents for every input, so a
/// finding replays alone.
/// </summary>
internal sealed class BlockHarness : Harness
{
    private const ulong Ring = 0x40000;
    private const int ImageBytes = 64 * 1024;
    private readonly GuestMemory _memory = new(FuzzGuest.MemorySize);
    private readonly Hypervisor.Hypercalls.HypercallDispatcher _dispatcher = FuzzGuest.NewDispatcher();
    private readonly string _disk = Path.Combine(Directory.CreateTempSubdirectory("paravirt-fuzz-blk-").FullName, "disk.img");
    private readonly byte[] _initialImage;

    /// <param name="initialImage">The image every input starts from (zeros; a test passes other contents).</param>
    public BlockHarness(byte[]? initialImage = null) => _initialImage = initialImage ?? new byte[ImageBytes];

    public override void Run(ReadOnlySpan<byte> data)
    {
        var r = new FuzzReader(data);
        _memory.Clear(new GuestAddress(0), 2 << 20);
        // The image is reset too: the 2026-11-26 campaign's three unreproducible findings read back what earlier
        // inputs had written, so they depended on the whole history of the process, not on their own input.
        File.WriteAllBytes(_disk, _initialImage);
        var disk = new BlockDevice("disk0", _disk, readOnly: (r.U8() & 3) == 0);
        using var guest = new FuzzGuest(_memory, _dispatcher, disk);
        int order = r.U8() % 10; // 9 is past the maximum: refused
        long port = guest.Call(HypercallCode.BlockAttach, 0, Ring, (ulong)order);
        if (port < 0)
        {
            return;
        }
        Exercised++;
        uint slots = 1u << order;
        uint reqProd = 0;
        for (int round = 0; round < 16 && !r.AtEnd; round++)
        {
            int count = r.U8() % (int)(slots + 1);
            bool readsOverOwnRing = false;
            for (int i = 0; i < count; i++)
            {
                var request = new BlockRequest
                {
                    Id = reqProd,
                    Operation = (uint)(r.U8() % 5),
                    Sector = (r.U8() & 1) == 0 ? r.U8() : r.U64(),
                    Length = (r.U8() & 1) == 0 ? (uint)(r.U8() % 9) * 512 : r.U32(),
                    Buffer = r.Interesting(FuzzGuest.MemorySize),
                };
                _memory.Write(new GuestAddress(Ring + RingConstants.HeaderSize + (reqProd & (slots - 1)) * BlockConstants.SlotSize), in request);
                readsOverOwnRing |= request.Operation == (uint)BlockOperation.Read && Overlaps(request.Buffer, request.Length, Ring, RingConstants.HeaderSize);
                reqProd++;
            }
            uint published = (r.U8() & 15) == 0 ? r.U32() : reqProd;
            _memory.Write(new GuestAddress(Ring), published);
            _memory.Write(new GuestAddress(Ring + 12), r.U32()); // rsp_event: anything
            uint rspBefore = _memory.Read<uint>(new GuestAddress(Ring + 8));
            long result = guest.Call(HypercallCode.EventSend, (ulong)port);
            uint rspAfter = _memory.Read<uint>(new GuestAddress(Ring + 8));
            if (disk.IsBroken)
            {
                if (result != (long)HypercallStatus.Broken)
                {
                    throw new FuzzFindingException($"a broken disk answered the doorbell with {result}");
                }
                break;
            }
            if (rspAfter - rspBefore > slots)
            {
                throw new FuzzFindingException($"one doorbell answered {rspAfter - rspBefore} requests on a ring of {slots}");
            }
            // A read into the ring's own header replaces req_prod with disk data halfway through the doorbell, and the
            // host rightly serves what req_prod then says: that round is a lie told by the guest's own read.
            bool honest = published == reqProd && !readsOverOwnRing;
            if (honest && rspAfter != reqProd)
            {
                throw new FuzzFindingException($"an honest ring with {reqProd} requests got {rspAfter} responses");
            }
            reqProd = honest ? reqProd : rspAfter; // after a lie, carry on from what the host answered
        }
        guest.Stop();
        if (new FileInfo(_disk).Length != ImageBytes)
        {
            throw new FuzzFindingException("the guest changed the size of its disk image");
        }
    }

    private static bool Overlaps(ulong start, ulong length, ulong otherStart, ulong otherLength) =>
        length != 0 && start < otherStart + otherLength && (start > ulong.MaxValue - length || start + length > otherStart);

    public override void Dispose()
    {
        _memory.Dispose();
        Directory.Delete(Path.GetDirectoryName(_disk)!, recursive: true);
    }
}
