using System.Runtime.InteropServices;
using System.Text;
using Paravirt.Abi;
using Paravirt.Hypervisor.Devices;
using Paravirt.Hypervisor.Devices.Rings;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Memory;

namespace KvStore;

/// <summary>
/// A paravirtual key-value store: a user-defined device type with one queue, a ring of 64-byte slots holding
/// <see cref="KvRequest"/>s from the guest and the <see cref="KvResponse"/>s written over them (the C side is
/// samples/kvstore-guest/kvstore.h). Keys and values live in guest buffers; each is copied out of guest memory once
/// and checked against the limits before it is used. The store lives on the host, survives a guest's reset, and is
/// part of a sandbox snapshot.
/// </summary>
public sealed class KvStoreDevice : VirtualDevice
{
    /// <summary>The device type the guest looks for (<c>KVSTORE_DEVICE_TYPE</c>).</summary>
    public const DeviceKind Type = (DeviceKind)(DeviceTypes.UserFirst + 0x4B56);

    private readonly Dictionary<string, byte[]> _store = new(StringComparer.Ordinal);
    private readonly Handler _handler;
    private SharedRing<KvRequest, KvResponse>? _ring;

    /// <summary>Creates a store of at most <paramref name="capacity"/> entries.</summary>
    public KvStoreDevice(string name, int capacity = 1024, int maxKey = 64, int maxValue = 4096)
        : base(name)
    {
        Capacity = capacity;
        MaxKey = maxKey;
        MaxValue = maxValue;
        _handler = new Handler(this);
    }

    /// <summary>Most entries the store holds.</summary>
    public int Capacity { get; }

    /// <summary>Longest key in bytes.</summary>
    public int MaxKey { get; }

    /// <summary>Longest value in bytes.</summary>
    public int MaxValue { get; }

    /// <summary>Requests the guest made.</summary>
    public long Requests { get; private set; }

    /// <inheritdoc/>
    public override DeviceKind Kind => Type;

    /// <inheritdoc/>
    public override uint Version => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<DeviceQueue> Queues { get; } = [DeviceQueue.Ring<KvRequest, KvResponse>("requests")];

    /// <inheritdoc/>
    public override bool SupportsSnapshots => true;

    /// <inheritdoc/>
    protected override int ConfigSize => Marshal.SizeOf<KvConfig>();

    /// <summary>Stores <paramref name="value"/> under <paramref name="key"/> (host side, e.g. before the run).</summary>
    public void Set(string key, string value) => _store[key] = Encoding.UTF8.GetBytes(value);

    /// <summary>The value of <paramref name="key"/> as UTF-8 text, or null.</summary>
    public string? Get(string key) => _store.TryGetValue(key, out byte[]? v) ? Encoding.UTF8.GetString(v) : null;

    /// <summary>Entries in the store.</summary>
    public int Count => _store.Count;

    /// <inheritdoc/>
    protected override void WriteConfig(Span<byte> config) =>
        MemoryMarshal.Write(config, new KvConfig { MaxKey = (uint)MaxKey, MaxValue = (uint)MaxValue, Capacity = (uint)Capacity, Entries = (uint)_store.Count });

    /// <inheritdoc/>
    protected override HypercallStatus OnActivate(DeviceActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        _ring = activation.OpenRing<KvRequest, KvResponse>(0);
        return HypercallStatus.Ok;
    }

    /// <inheritdoc/>
    protected override void OnReset() => _ring = null;

    /// <inheritdoc/>
    protected override void OnNotify(GuestSession session, int queue)
    {
        ArgumentNullException.ThrowIfNull(session);
        RingRun run = _ring!.Process(_handler, session.Stopping);
        if (run.Corrupt)
        {
            MarkBroken("the guest's request ring indices are corrupt");
            return;
        }
        if (run.Notify)
        {
            Notify(session, queue);
        }
        if (run.MoreWork)
        {
            RequestPump(); // more than one ring's worth queued: continue at the next pump
        }
    }

    /// <inheritdoc/>
    protected override void OnPump(GuestSession session)
    {
        if (_ring is { } ring && ring.Refresh() && ring.Pending != 0)
        {
            OnNotify(session, 0);
        }
    }

    /// <summary>
    /// A copy of the store. The ring needs nothing saved: every request is answered before the doorbell returns, so
    /// the guest memory of a snapshot holds the ring exactly, and <see cref="LoadState"/> re-opens it from there.
    /// </summary>
    protected override object? SaveState() => new Dictionary<string, byte[]>(_store, StringComparer.Ordinal);

    /// <inheritdoc/>
    protected override void LoadState(object? state, DeviceActivation? activation)
    {
        _store.Clear();
        if (state is Dictionary<string, byte[]> saved)
        {
            foreach ((string key, byte[] value) in saved)
            {
                _store[key] = value; // values are never mutated in place, so sharing the arrays is safe
            }
        }
        _ring = activation?.OpenRing<KvRequest, KvResponse>(0);
    }

    private KvResponse Execute(in KvRequest request)
    {
        Requests++;
        var response = new KvResponse { Id = request.Id };
        GuestMemory memory = Session!.Memory;
        if (request.KeyLength == 0 || request.KeyLength > MaxKey)
        {
            response.Status = (long)HypercallStatus.Invalid;
            return response;
        }
        Span<byte> keyBytes = stackalloc byte[(int)request.KeyLength];
        if (!memory.TryRead(new GuestAddress(request.Key), keyBytes))
        {
            response.Status = (long)HypercallStatus.Fault;
            return response;
        }
        string key = Encoding.Latin1.GetString(keyBytes); // any bytes, losslessly
        switch (request.Operation)
        {
            case KvOperation.Get:
                if (!_store.TryGetValue(key, out byte[]? value))
                {
                    response.Status = (long)HypercallStatus.NotFound;
                }
                else
                {
                    response.ValueLength = (uint)value.Length;
                    response.Status = value.Length > request.ValueLength ? (long)HypercallStatus.TooBig
                        : memory.TryWrite(new GuestAddress(request.Value), value) ? 0 : (long)HypercallStatus.Fault;
                }
                break;
            case KvOperation.Put:
                if (request.ValueLength > MaxValue)
                {
                    response.Status = (long)HypercallStatus.TooBig;
                }
                else if (!_store.ContainsKey(key) && _store.Count >= Capacity)
                {
                    response.Status = (long)HypercallStatus.NoSpace;
                }
                else
                {
                    byte[] copy = new byte[request.ValueLength];
                    response.Status = memory.TryRead(new GuestAddress(request.Value), copy) ? 0 : (long)HypercallStatus.Fault;
                    if (response.Status == 0)
                    {
                        _store[key] = copy;
                    }
                }
                break;
            case KvOperation.Delete:
                response.Status = _store.Remove(key) ? 0 : (long)HypercallStatus.NotFound;
                break;
            default:
                response.Status = (long)HypercallStatus.Invalid;
                break;
        }
        return response;
    }

    private sealed class Handler(KvStoreDevice device) : IRingRequestHandler<KvRequest, KvResponse>
    {
        public KvResponse Handle(in KvRequest request) => device.Execute(in request);
    }
}

/// <summary>Operations (<c>enum kvstore_op</c>).</summary>
public enum KvOperation : uint
{
    /// <summary>Read a value.</summary>
    Get = 1,
    /// <summary>Store a value.</summary>
    Put = 2,
    /// <summary>Remove a key.</summary>
    Delete = 3,
}

/// <summary>A request in a ring slot (<c>kvstore_request</c>).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct KvRequest
{
    /// <summary>Echoed in the response.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>The operation.</summary>
    [FieldOffset(8)] public KvOperation Operation;
    /// <summary>Key bytes.</summary>
    [FieldOffset(12)] public uint KeyLength;
    /// <summary>Guest-physical address of the key.</summary>
    [FieldOffset(16)] public ulong Key;
    /// <summary>Guest-physical address of the value buffer.</summary>
    [FieldOffset(24)] public ulong Value;
    /// <summary>PUT: value bytes; GET: buffer capacity.</summary>
    [FieldOffset(32)] public uint ValueLength;
}

/// <summary>A response written over its request's slot (<c>kvstore_response</c>).</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct KvResponse
{
    /// <summary>The request's id.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary>0 or a negative status.</summary>
    [FieldOffset(8)] public long Status;
    /// <summary>GET: the value's length.</summary>
    [FieldOffset(16)] public uint ValueLength;
}

/// <summary>The device configuration (<c>kvstore_config</c>).</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct KvConfig
{
    /// <summary>Longest key.</summary>
    [FieldOffset(0)] public uint MaxKey;
    /// <summary>Longest value.</summary>
    [FieldOffset(4)] public uint MaxValue;
    /// <summary>Most entries.</summary>
    [FieldOffset(8)] public uint Capacity;
    /// <summary>Entries now.</summary>
    [FieldOffset(12)] public uint Entries;
}
