using Microsoft.Extensions.DependencyInjection.Extensions;
using Paravirt.Hypervisor;
using Paravirt.Hypervisor.Backends;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Backends.Whp;
using Paravirt.Hypervisor.Diagnostics;
using Paravirt.Hypervisor.Hypercalls;
using Paravirt.Hypervisor.Vcpu;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Paravirt in an <see cref="IServiceCollection"/>.</summary>
public static class ParavirtServiceCollectionExtensions
{
    /// <summary>
    /// Adds the Paravirt hypervisor: backends (probed at run time, hardware first, emulator last), the hypercall
    /// dispatcher with the built-in hypercalls, and <see cref="GuestRunner"/>. Returns a builder for user-defined
    /// hypercalls. Safe to call more than once.
    /// </summary>
    public static ParavirtBuilder AddParavirt(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        // Order matters: BackendSelector's "auto" takes the first available backend.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypervisorBackend, KvmBackend>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypervisorBackend, WhpBackend>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypervisorBackend, EmulatorBackend>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypercallProvider, CoreHypercalls>());
        services.TryAddSingleton<BackendSelector>();
        services.TryAddSingleton<HypercallDispatcher>();
        services.TryAddSingleton<ParavirtMetrics>();
        services.TryAddSingleton<GuestRunner>();
        return new ParavirtBuilder(services);
    }
}
