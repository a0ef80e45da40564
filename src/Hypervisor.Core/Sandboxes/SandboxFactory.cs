namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>
/// Makes sandboxes with the application's registrations (<c>AddParavirt()</c>): its backends, hypercalls, the host
/// functions added with <c>AddHostFunction</c> and the devices added with <c>AddDevice</c> (created afresh for each
/// sandbox, so parallel sandboxes never share one). Thread-safe.
/// </summary>
public sealed class SandboxFactory
{
    private readonly BackendSelector _selector;
    private readonly HypercallDispatcher _dispatcher;
    private readonly HostFunction[] _hostFunctions;
    private readonly IDeviceFactory[] _devices;
    private readonly ILoggerFactory? _loggerFactory;
    private readonly ParavirtMetrics? _metrics;
    private readonly string _defaultBackend;
    private readonly Running.GuestLimits _defaultLimits;

    /// <summary>Creates the factory (DI does this).</summary>
    public SandboxFactory(
        BackendSelector selector,
        HypercallDispatcher dispatcher,
        IEnumerable<HostFunction>? hostFunctions = null,
        IEnumerable<IDeviceFactory>? devices = null,
        ILoggerFactory? loggerFactory = null,
        ParavirtMetrics? metrics = null,
        Microsoft.Extensions.Options.IOptions<ParavirtOptions>? options = null)
    {
        _selector = selector ?? throw new ArgumentNullException(nameof(selector));
        _dispatcher = dispatcher ?? throw new ArgumentNullException(nameof(dispatcher));
        _hostFunctions = hostFunctions?.ToArray() ?? [];
        _devices = devices?.ToArray() ?? [];
        _loggerFactory = loggerFactory;
        _metrics = metrics;
        _defaultBackend = options?.Value.DefaultBackend ?? BackendSelector.Auto;
        _defaultLimits = options?.Value.DefaultLimits ?? Running.GuestLimits.Default;
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (HostFunction f in _hostFunctions)
        {
            if (!names.Add(f.Name))
            {
                throw new InvalidOperationException($"host function '{f.Name}' is registered twice");
            }
        }
    }

    /// <summary>Makes a sandbox from the image at <paramref name="imagePath"/> and initializes it.</summary>
    public Sandbox Create(string imagePath, SandboxOptions? options = null) =>
        Create(ElfLoader.LoadFile(imagePath, AbiVersion.Current), options);

    /// <summary>Makes a sandbox from <paramref name="image"/> and initializes it.</summary>
    public Sandbox Create(GuestImage image, SandboxOptions? options = null)
    {
        SandboxOptions o = Complete(options);
        return Sandbox.Create(image, o, _selector.Select(o.Backend), _dispatcher, _hostFunctions, _devices, _metrics, null);
    }

    /// <summary>Makes a sandbox from <paramref name="snapshot"/> (no initialization; memory shared copy-on-write).</summary>
    public Sandbox Create(SandboxSnapshot snapshot, SandboxOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        SandboxOptions o = Complete(options);
        return Sandbox.Create(snapshot.Image, o, _selector.Select(o.Backend), _dispatcher, _hostFunctions, _devices, _metrics, snapshot);
    }

    private SandboxOptions Complete(SandboxOptions? options)
    {
        SandboxOptions o = options ?? new SandboxOptions { Backend = _defaultBackend, Limits = _defaultLimits };
        return o.LoggerFactory is null ? o with { LoggerFactory = _loggerFactory } : o;
    }
}
