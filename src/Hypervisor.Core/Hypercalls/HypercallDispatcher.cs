using System.Collections.Frozen;
using Microsoft.Extensions.Logging.Abstractions;

namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>
/// Routes a hypercall to its handler by function code. Built once from every <see cref="IHypercallProvider"/>
/// registered in DI; the table is validated at construction: a code registered twice, a user hypercall outside the
/// user-defined range, or a built-in one inside it, is a startup error.
/// </summary>
public sealed partial class HypercallDispatcher
{
    private readonly FrozenDictionary<uint, HypercallRegistration> _table;
    private readonly ILogger _logger;

    /// <summary>
    /// A dispatcher with the built-in hypercalls (core, devices, sandboxes: what
    /// <see cref="Microsoft.Extensions.DependencyInjection.ParavirtServiceCollectionExtensions.AddParavirt"/> registers) and <paramref name="userProviders"/>,
    /// for a host that builds its <see cref="Running.GuestRunner"/> without dependency injection.
    /// </summary>
    /// <exception cref="InvalidOperationException">A user provider's code conflicts; the message names the code.</exception>
    public static HypercallDispatcher WithBuiltIns(IEnumerable<IHypercallProvider>? userProviders = null, ILogger<HypercallDispatcher>? logger = null) =>
        new([new CoreHypercalls(), new Devices.DeviceHypercalls(), new Sandboxes.SandboxHypercalls(), .. userProviders ?? []], logger);

    /// <summary>Builds the dispatch table.</summary>
    /// <exception cref="InvalidOperationException">The registrations conflict; the message names the code.</exception>
    public HypercallDispatcher(IEnumerable<IHypercallProvider> providers, ILogger<HypercallDispatcher>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(providers);
        _logger = logger ?? NullLogger<HypercallDispatcher>.Instance;
        var table = new Dictionary<uint, HypercallRegistration>();
        foreach (IHypercallProvider provider in providers)
        {
            foreach (HypercallRegistration r in provider.GetHypercalls())
            {
                bool user = HypercallRanges.IsUserDefined(r.Code);
                if (provider.IsBuiltIn && user)
                {
                    throw new InvalidOperationException($"built-in hypercall '{r.Name}' uses code 0x{r.Code:x4}, which is in the user-defined range 0x{HypercallRanges.UserFirst:x4}-0x{HypercallRanges.UserLast:x4}");
                }
                if (!provider.IsBuiltIn && !user)
                {
                    throw new InvalidOperationException($"user hypercall '{r.Name}' uses code 0x{r.Code:x4}; user-defined hypercalls must use codes 0x{HypercallRanges.UserFirst:x4}-0x{HypercallRanges.UserLast:x4}");
                }
                if (!table.TryAdd(r.Code, r))
                {
                    throw new InvalidOperationException($"hypercall code 0x{r.Code:x4} is registered twice ('{table[r.Code].Name}' and '{r.Name}')");
                }
            }
        }
        _table = table.ToFrozenDictionary();
    }

    /// <summary>Every registration, for documentation and statistics.</summary>
    public IReadOnlyCollection<HypercallRegistration> Registrations => _table.Values;

    /// <summary>The name of <paramref name="code"/>, or null when nothing handles it.</summary>
    public string? GetName(ulong code) => code <= uint.MaxValue && _table.TryGetValue((uint)code, out HypercallRegistration? r) ? r.Name : null;

    /// <summary>
    /// Calls the handler for <c>args.Code</c>. Unknown codes answer <see cref="HypercallStatus.NotImplemented"/>; a
    /// handler that throws is logged and answered with <see cref="HypercallStatus.IoError"/> (the host keeps running).
    /// </summary>
    public long Dispatch(in HypercallArgs args, GuestSession session)
    {
        if (args.Code > uint.MaxValue || !_table.TryGetValue((uint)args.Code, out HypercallRegistration? registration))
        {
            LogUnknown(_logger, args.Code);
            return (long)HypercallStatus.NotImplemented;
        }
        try
        {
            return registration.Handler(in args, session);
        }
#pragma warning disable CA1031 // A handler bug must not take the host down: the guest gets an error status.
        catch (Exception ex) when (ex is not OutOfMemoryException)
#pragma warning restore CA1031
        {
            LogHandlerFailed(_logger, ex, registration.Name, registration.Code);
            return (long)HypercallStatus.IoError;
        }
    }

    [LoggerMessage(EventId = 100, Level = LogLevel.Debug, Message = "guest called unknown hypercall 0x{Code:x}")]
    private static partial void LogUnknown(ILogger logger, ulong code);

    [LoggerMessage(EventId = 101, Level = LogLevel.Error, Message = "hypercall handler '{Name}' (0x{Code:x4}) threw; the guest gets IoError")]
    private static partial void LogHandlerFailed(ILogger logger, Exception exception, string name, uint code);
}
