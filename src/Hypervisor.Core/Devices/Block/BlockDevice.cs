using Paravirt.Hypervisor.Devices.Rings;

namespace Paravirt.Hypervisor.Devices.Block;

/// <summary>
/// A paravirtual block device backed by a raw disk image file: 512-byte sectors; read, write, flush (fsync before
/// the response) and discard (a punched hole or zeros). The guest shares one queue, a ring of 64-byte
/// <see cref="BlockRequest"/>/<see cref="BlockResponse"/> slots (<see cref="HypercallCode.DeviceAttach"/>, or the ABI
/// 1.0 <see cref="HypercallCode.BlockAttach"/>); each doorbell processes every pending request, each answered in its
/// slot. Its configuration is a <see cref="BlockConfig"/>.
/// </summary>
/// <remarks>
/// Each request is copied out of the ring once and validated: a known operation; a length that is a non-zero
/// multiple of 512 and at most <see cref="BlockConstants.MaxTransfer"/>; a sector range inside the disk and a buffer
/// inside guest memory (overflow-checked). A bad request gets an error status (<see cref="HypercallStatus.Invalid"/>,
/// <see cref="HypercallStatus.OutOfRange"/>, <see cref="HypercallStatus.Fault"/>, <see cref="HypercallStatus.ReadOnly"/>)
/// and the device continues; corrupt ring indices break the device.
/// </remarks>
public sealed class BlockDevice : VirtualDevice
{
    private static readonly byte[] Zeros = new byte[64 * 1024];

    private readonly SafeFileHandle _file;
    private readonly Handler _handler;
    private SharedRing<BlockRequest, BlockResponse>? _ring;
    private bool _holePunchUnsupported;
    private long _bytesRead;
    private long _bytesWritten;

    /// <summary>Opens the disk image at <paramref name="path"/> (exclusively when writable).</summary>
    /// <param name="name">Device name (e.g. "disk0").</param>
    /// <param name="path">Raw disk image; its size must be a non-zero multiple of 512 bytes.</param>
    /// <param name="readOnly">Open the image read-only; the guest's writes and discards answer <see cref="HypercallStatus.ReadOnly"/>.</param>
    /// <exception cref="DeviceConfigurationException">The image is missing, unreadable, in use, or of a wrong size.</exception>
    public BlockDevice(string name, string path, bool readOnly = false)
        : base(name)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Path = path;
        IsReadOnly = readOnly;
        if (Directory.Exists(path))
        {
            // Opening a directory fails with EISDIR, which .NET reports as access denied: say what it is.
            throw new DeviceConfigurationException($"disk image '{path}' for device {name} is a directory; give the path of a raw image file");
        }
        try
        {
            _file = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite,
                readOnly ? FileShare.Read : FileShare.None);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new DeviceConfigurationException($"disk image '{path}' for device {name} does not exist", ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new DeviceConfigurationException($"disk image '{path}' for device {name} cannot be opened {(readOnly ? "for reading" : "for writing (add ,ro for a read-only disk)")}: permission denied", ex);
        }
        catch (IOException ex)
        {
            throw new DeviceConfigurationException($"disk image '{path}' for device {name} cannot be opened: {ex.Message}", ex);
        }
        long length = RandomAccess.GetLength(_file);
        if (length <= 0 || length % BlockConstants.SectorSize != 0)
        {
            _file.Dispose();
            throw new DeviceConfigurationException($"disk image '{path}' for device {name} is {length} bytes; a disk image must be a non-zero multiple of {BlockConstants.SectorSize} bytes");
        }
        Sectors = (ulong)length / BlockConstants.SectorSize;
        _handler = new Handler(this);
    }

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Block;

    /// <summary>The disk image path.</summary>
    public string Path { get; }

    /// <summary>True when the guest may not write or discard.</summary>
    public bool IsReadOnly { get; }

    /// <summary>Capacity in 512-byte sectors.</summary>
    public ulong Sectors { get; }

    /// <summary>Bytes the guest read from the disk.</summary>
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>Bytes the guest wrote to the disk (discards not included).</summary>
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <inheritdoc/>
    public override IReadOnlyList<DeviceQueue> Queues { get; } = [DeviceQueue.Ring<BlockRequest, BlockResponse>("requests")];

    /// <inheritdoc/>
    public override bool SupportsSnapshots => true;

    /// <inheritdoc/>
    protected override DeviceFlags Flags => IsReadOnly ? DeviceFlags.ReadOnly : DeviceFlags.None;

    /// <inheritdoc/>
    protected override int ConfigSize => System.Runtime.CompilerServices.Unsafe.SizeOf<BlockConfig>();

    /// <inheritdoc/>
    protected override void WriteConfig(Span<byte> config) =>
        MemoryMarshal.Write(config, new BlockConfig { Sectors = Sectors, SectorSize = BlockConstants.SectorSize });

    /// <summary>The ring's private indices (exact, so requests in the ring are neither lost nor repeated).</summary>
    protected override object? SaveState() => _ring?.Save();

    /// <inheritdoc/>
    protected override void LoadState(object? state, DeviceActivation? activation) =>
        _ring = state is RingState ring && activation is not null ? SharedRing<BlockRequest, BlockResponse>.Load(activation.Memory, ring) : null;

    private protected override void DescribeInto(ref DeviceInfo info)
    {
        info.Sectors = Sectors;
        info.SectorSize = BlockConstants.SectorSize;
    }

    /// <inheritdoc/>
    protected override HypercallStatus OnActivate(DeviceActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        _ring = activation.OpenRing<BlockRequest, BlockResponse>(0);
        return HypercallStatus.Ok;
    }

    /// <inheritdoc/>
    protected override void OnReset() => _ring = null;

    /// <inheritdoc/>
    protected override void OnNotify(GuestSession session, int queue) => Process(session);

    /// <inheritdoc/>
    protected override void OnPump(GuestSession session)
    {
        if (_ring is { } ring && ring.Refresh() && ring.Pending != 0)
        {
            Process(session);
        }
    }

    private void Process(GuestSession session)
    {
        SharedRing<BlockRequest, BlockResponse> ring = _ring!;
        long readBefore = _bytesRead, writtenBefore = _bytesWritten;
        RingRun run = ring.Process(_handler, session.Stopping);
        if (run.Corrupt)
        {
            MarkBroken($"the guest's block ring indices are corrupt (req_prod more than {ring.Slots} ahead of the responses)");
        }
        if (run.Notify)
        {
            Notify(session, 0);
        }
        if (run.MoreWork)
        {
            session.RequestPump();
        }
        session.Metrics?.RecordDeviceBytes(Name, "read", _bytesRead - readBefore);
        session.Metrics?.RecordDeviceBytes(Name, "write", _bytesWritten - writtenBefore);
    }

    private BlockResponse Execute(in BlockRequest request)
    {
        var response = new BlockResponse { Id = request.Id };
        long status;
        uint done = 0;
        switch ((BlockOperation)request.Operation)
        {
            case BlockOperation.Read:
            case BlockOperation.Write:
                status = Transfer(in request, out done);
                break;
            case BlockOperation.Flush:
                status = Flush();
                break;
            case BlockOperation.Discard:
                status = Discard(in request, out done);
                break;
            default:
                status = (long)HypercallStatus.Invalid;
                break;
        }
        response.Status = status;
        response.Length = done;
        return response;
    }

    /// <summary>Checks length and sector range; returns 0 or the error status and the byte offset in the image.</summary>
    private long CheckRange(in BlockRequest request, out long offset)
    {
        offset = 0;
        uint length = request.Length;
        if (length == 0 || length % BlockConstants.SectorSize != 0 || length > BlockConstants.MaxTransfer)
        {
            return (long)HypercallStatus.Invalid;
        }
        ulong count = length / BlockConstants.SectorSize;
        if (request.Sector >= Sectors || count > Sectors - request.Sector)
        {
            return (long)HypercallStatus.OutOfRange;
        }
        offset = checked((long)(request.Sector * BlockConstants.SectorSize)); // < image length, which is a long
        return 0;
    }

    private long Transfer(in BlockRequest request, out uint done)
    {
        done = 0;
        bool write = request.Operation == (uint)BlockOperation.Write;
        if (write && IsReadOnly)
        {
            return (long)HypercallStatus.ReadOnly;
        }
        long status = CheckRange(in request, out long offset);
        if (status != 0)
        {
            return status;
        }
        try
        {
            if (write)
            {
                // A disk write only reads guest memory: the pages are not marked dirty for snapshots.
                if (!Session!.Memory.TryGetReadOnlySpan(new GuestAddress(request.Buffer), request.Length, out ReadOnlySpan<byte> source))
                {
                    return (long)HypercallStatus.Fault;
                }
                RandomAccess.Write(_file, source, offset);
                Interlocked.Add(ref _bytesWritten, source.Length);
            }
            else
            {
                if (!Session!.Memory.TryGetSpan(new GuestAddress(request.Buffer), request.Length, out Span<byte> buffer))
                {
                    return (long)HypercallStatus.Fault;
                }
                int total = 0;
                while (total < buffer.Length)
                {
                    int n = RandomAccess.Read(_file, buffer[total..], offset + total);
                    if (n <= 0)
                    {
                        return (long)HypercallStatus.IoError; // the image shrank under us
                    }
                    total += n;
                }
                Interlocked.Add(ref _bytesRead, buffer.Length);
            }
        }
        catch (IOException)
        {
            return (long)HypercallStatus.IoError;
        }
        done = request.Length;
        return 0;
    }

    private long Flush()
    {
        if (IsReadOnly)
        {
            return 0;
        }
        try
        {
            RandomAccess.FlushToDisk(_file);
        }
        catch (IOException)
        {
            return (long)HypercallStatus.IoError;
        }
        return 0;
    }

    private long Discard(in BlockRequest request, out uint done)
    {
        done = 0;
        if (IsReadOnly)
        {
            return (long)HypercallStatus.ReadOnly;
        }
        long status = CheckRange(in request, out long offset);
        if (status != 0)
        {
            return status;
        }
        try
        {
            if (!PunchHole(offset, request.Length))
            {
                for (uint written = 0; written < request.Length;)
                {
                    int chunk = (int)Math.Min((uint)Zeros.Length, request.Length - written);
                    RandomAccess.Write(_file, Zeros.AsSpan(0, chunk), offset + written);
                    written += (uint)chunk;
                }
            }
        }
        catch (IOException)
        {
            return (long)HypercallStatus.IoError;
        }
        done = request.Length;
        return 0;
    }

    /// <summary>Deallocates the range (reads return zeros, the size stays); false when the file system cannot.</summary>
    private bool PunchHole(long offset, uint length)
    {
        if (_holePunchUnsupported || !OperatingSystem.IsLinux())
        {
            return false;
        }
        if (Libc.fallocate(_file, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset, length) == 0)
        {
            return true;
        }
        int errno = Marshal.GetLastPInvokeError();
        if (errno is Libc.EOPNOTSUPP or Libc.ENOSYS)
        {
            _holePunchUnsupported = true;
        }
        return false;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _file.Dispose();
        }
        base.Dispose(disposing);
    }

    private sealed class Handler(BlockDevice device) : IRingRequestHandler<BlockRequest, BlockResponse>
    {
        public BlockResponse Handle(in BlockRequest request) => device.Execute(in request);
    }
}
