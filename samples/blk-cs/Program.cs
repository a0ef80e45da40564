// blk-cs: a block checksum tool written in C#, over the C# block driver (Paravirt.Guest.BlockDevice: the same ring
// protocol as the C driver in native/runtime/devices.c).
//
// Reads all of disk0 (1 MiB requests, queued before one doorbell), prints its size and FNV-1a-64 checksum, then,
// when the disk is writable, writes a pattern to its first 8 sectors, flushes, reads them back and verifies them.
// Exit status: 0 success, 1 no disk, 2 I/O error, 3 verification failure, 4 read-only not enforced.
using Paravirt.Abi;
using Paravirt.Guest;

internal static unsafe class Program
{
    private const ulong ChunkBytes = 1 << 20;
    private const uint PatternSectors = 8;

    private static int Main()
    {
        long r = BlockDevice.Open("disk0", out BlockDevice? disk);
        if (r < 0 || disk == null)
            return Fail(1, "no block device disk0", r);
        byte* buf = (byte*)Devices.AllocPages(ChunkBytes / EntryConvention.PageSize);
        if (buf == null)
            return Fail(2, "no memory for the buffer", (long)HypercallStatus.NoMemory);

        ulong total = disk.Sectors * BlockConstants.SectorSize;
        ulong hash = 0xcbf29ce484222325;
        for (ulong off = 0; off < total; off += ChunkBytes)
        {
            ulong n = total - off < ChunkBytes ? total - off : ChunkBytes;
            r = disk.Read(off / BlockConstants.SectorSize, buf, n);
            if (r < 0)
                return Fail(2, "read", r);
            for (ulong i = 0; i < n; i++)
                hash = (hash ^ buf[i]) * 0x100000001b3;
        }
        Console.Write("blk-cs: disk0: ");
        Console.Write((long)disk.Sectors);
        Console.Write(" sectors, fnv1a64 0x");
        Console.WriteHex(hash, 16);
        Console.WriteLine(disk.ReadOnly ? " (read-only)" : "");

        ulong bytes = PatternSectors * BlockConstants.SectorSize;
        if (disk.ReadOnly)
        {
            r = disk.Write(0, buf, bytes);
            if (r != (long)HypercallStatus.ReadOnly)
                return Fail(4, "a write to the read-only disk was not refused", r);
            Console.WriteLine("blk-cs: read-only disk: write refused");
            return 0;
        }
        if (total < bytes)
            return Fail(2, "disk smaller than the pattern", (long)HypercallStatus.NoSpace);

        for (uint i = 0; i < bytes; i++)
            buf[i] = (byte)(i * 7 + 3);
        if ((r = disk.Write(0, buf, bytes)) < 0)
            return Fail(2, "write", r);
        if ((r = disk.Flush()) < 0)
            return Fail(2, "flush", r);
        for (uint i = 0; i < bytes; i++)
            buf[i] = 0;
        if ((r = disk.Read(0, buf, bytes)) < 0)
            return Fail(2, "read back", r);
        for (uint i = 0; i < bytes; i++)
        {
            if (buf[i] != (byte)(i * 7 + 3))
                return Fail(3, "the read-back pattern differs", i);
        }
        Console.WriteLine("blk-cs: wrote, flushed and verified 8 sectors");
        return 0;
    }

    private static int Fail(int status, string what, long detail) => Console.Failed("blk-cs", what, detail, status);
}
