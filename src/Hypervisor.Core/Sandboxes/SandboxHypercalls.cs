namespace Paravirt.Hypervisor.Sandboxes;

/// <summary>The sandbox side of a session: what the guest-call hypercalls reach (<see cref="GuestSession.Sandbox"/>).</summary>
internal interface ISandboxChannel
{
    /// <summary><see cref="HypercallCode.SandboxReady"/>.</summary>
    long Ready(in HypercallArgs args, GuestSession session);

    /// <summary><see cref="HypercallCode.SandboxReturn"/>.</summary>
    long Return(in HypercallArgs args, GuestSession session);

    /// <summary><see cref="HypercallCode.HostCall"/>.</summary>
    long HostCall(in HypercallArgs args, GuestSession session);
}

/// <summary>
/// The guest-call hypercalls (<c>0x05xx</c>). They do something only in a sandbox's session; in a plain run the guest
/// gets <see cref="HypercallStatus.NotImplemented"/> (and <see cref="FeatureBits.Sandbox"/> is not offered).
/// </summary>
internal sealed class SandboxHypercalls : IHypercallProvider
{
    public bool IsBuiltIn => true;

    public IEnumerable<HypercallRegistration> GetHypercalls() =>
    [
        new((uint)HypercallCode.SandboxReady, "sandbox_ready", static (in HypercallArgs a, GuestSession s) => s.Sandbox is { } c ? c.Ready(in a, s) : (long)HypercallStatus.NotImplemented),
        new((uint)HypercallCode.SandboxReturn, "sandbox_return", static (in HypercallArgs a, GuestSession s) => s.Sandbox is { } c ? c.Return(in a, s) : (long)HypercallStatus.NotImplemented),
        new((uint)HypercallCode.HostCall, "host_call", static (in HypercallArgs a, GuestSession s) => s.Sandbox is { } c ? c.HostCall(in a, s) : (long)HypercallStatus.NotImplemented),
    ];
}
