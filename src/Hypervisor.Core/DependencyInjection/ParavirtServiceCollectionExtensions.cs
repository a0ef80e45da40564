using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Paravirt.Hypervisor;
using Paravirt.Hypervisor.Backends.Emulator;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Backends.Whp;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Paravirt in an <see cref="IServiceCollection"/>.</summary>
public static class ParavirtServiceCollectionExtensions
{
    /// <summary>
    /// Adds the Paravirt hypervisor: backends (probed at run time, hardware first, emulator last), the hypercall
    /// dispatcher with the built-in and device hypercalls, metrics, and <see cref="GuestRunner"/>. <paramref name="configure"/>
    /// sets the run defaults (<see cref="ParavirtOptions"/>), validated on start. Returns a builder for user-defined
    /// hypercalls and devices. Safe to call more than once.
    /// </summary>
    public static ParavirtBuilder AddParavirt(this IServiceCollection services, Action<ParavirtOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        OptionsBuilder<ParavirtOptions> options = services.AddOptions<ParavirtOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ParavirtOptions>, ParavirtOptionsValidator>());
        // Order matters: BackendSelector's "auto" takes the first available backend.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypervisorBackend, KvmBackend>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypervisorBackend, WhpBackend>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypervisorBackend, EmulatorBackend>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypercallProvider, CoreHypercalls>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypercallProvider, Paravirt.Hypervisor.Devices.DeviceHypercalls>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHypercallProvider, Paravirt.Hypervisor.Sandboxes.SandboxHypercalls>());
        services.TryAddSingleton<BackendSelector>();
        services.TryAddSingleton<HypercallDispatcher>();
        services.TryAddSingleton<ParavirtMetrics>();
        services.TryAddSingleton<GuestRunner>();
        services.TryAddSingleton<Paravirt.Hypervisor.Sandboxes.SandboxFactory>();
        return new ParavirtBuilder(services);
    }
}
