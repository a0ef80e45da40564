using Microsoft.Extensions.DependencyInjection;

namespace Paravirt.Hypervisor;

/// <summary>Configures Paravirt after <c>AddParavirt</c>: user-defined hypercalls and the devices every run gets.</summary>
public sealed class ParavirtBuilder
{
    internal ParavirtBuilder(IServiceCollection services) => Services = services;

    /// <summary>The service collection being configured.</summary>
    public IServiceCollection Services { get; }

    /// <summary>
    /// Adds a user-defined hypercall. <paramref name="code"/> must be in
    /// <see cref="HypercallRanges.UserFirst"/>..<see cref="HypercallRanges.UserLast"/>; a code outside it, or one
    /// registered twice, fails when the dispatcher is built.
    /// </summary>
    public ParavirtBuilder AddHypercall(uint code, string name, HypercallHandler handler)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(handler);
        if (!HypercallRanges.IsUserDefined(code))
        {
            throw new ArgumentOutOfRangeException(nameof(code), code,
                $"user-defined hypercalls use codes 0x{HypercallRanges.UserFirst:x4}-0x{HypercallRanges.UserLast:x4}");
        }
        Services.AddSingleton<IHypercallProvider>(new UserHypercallProvider(new HypercallRegistration(code, name, handler)));
        return this;
    }

    /// <summary>
    /// Adds a device that every guest run gets (after the run's own <see cref="Running.GuestRunOptions.Devices"/>): the
    /// factory is called once per run and the runner disposes the device afterwards. Example:
    /// <c>AddDevice(_ =&gt; new BlockDevice("disk0", "data.img", readOnly: false))</c>.
    /// </summary>
    public ParavirtBuilder AddDevice(Func<IServiceProvider, VirtualDevice> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Services.AddSingleton<IDeviceFactory>(sp => new DelegateDeviceFactory(sp, factory));
        return this;
    }

    /// <summary>Adds a host function of no arguments that every sandbox's guest may call (<c>pv_host_call</c>).</summary>
    public ParavirtBuilder AddHostFunction<TResult>(string name, Func<TResult> handler) => AddHostFunction(Sandboxes.HostFunction.From(name, handler));

    /// <summary>Adds a host function of one argument that every sandbox's guest may call; arguments and result travel as MessagePack.</summary>
    public ParavirtBuilder AddHostFunction<T1, TResult>(string name, Func<T1, TResult> handler) => AddHostFunction(Sandboxes.HostFunction.From(name, handler));

    /// <summary>Adds a host function of two arguments that every sandbox's guest may call.</summary>
    public ParavirtBuilder AddHostFunction<T1, T2, TResult>(string name, Func<T1, T2, TResult> handler) => AddHostFunction(Sandboxes.HostFunction.From(name, handler));

    /// <summary>Adds a host function that every sandbox's guest may call; a name registered twice fails when the <see cref="Sandboxes.SandboxFactory"/> is built.</summary>
    public ParavirtBuilder AddHostFunction(Sandboxes.HostFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        Services.AddSingleton(function);
        return this;
    }

    private sealed class DelegateDeviceFactory(IServiceProvider services, Func<IServiceProvider, VirtualDevice> factory) : IDeviceFactory
    {
        public VirtualDevice Create() => factory(services) ?? throw new InvalidOperationException("a device factory registered with AddDevice returned null");
    }

    private sealed class UserHypercallProvider(HypercallRegistration registration) : IHypercallProvider
    {
        public bool IsBuiltIn => false;
        public IEnumerable<HypercallRegistration> GetHypercalls() => [registration];
    }
}
