
namespace Paravirt.Hypervisor.Hypercalls;

/// <summary>
/// Handles one hypercall. Returns the value for <c>rax</c>: <c>&gt;= 0</c> on success, a negative
/// <see cref="Abi.HypercallStatus"/> on failure. A handler validates every guest-supplied address and length through
/// <see cref="GuestSession.Memory"/>'s <c>Try</c> accessors and never throws for bad guest input; an exception that
/// escapes anyway is caught by the dispatcher, logged, and answered with <see cref="Abi.HypercallStatus.IoError"/>.
/// </summary>
public delegate long HypercallHandler(in HypercallArgs args, GuestSession session);

/// <summary>A function code bound to its handler.</summary>
/// <param name="Code">The function code.</param>
/// <param name="Name">A short name for logs and statistics (e.g. "console_write").</param>
/// <param name="Handler">The handler.</param>
public sealed record HypercallRegistration(uint Code, string Name, HypercallHandler Handler);

/// <summary>
/// Supplies hypercall registrations; the built-in set and each device register one through DI
/// (<c>TryAddEnumerable</c>). Applications add user-defined hypercalls with
/// <c>ParavirtBuilder.AddHypercall</c>, which checks the code is in the user-defined range.
/// </summary>
public interface IHypercallProvider
{
    /// <summary>True for providers that may use codes outside the user-defined range (the built-in set and devices).</summary>
    bool IsBuiltIn { get; }

    /// <summary>The registrations.</summary>
    IEnumerable<HypercallRegistration> GetHypercalls();
}
