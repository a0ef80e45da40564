namespace Paravirt.Hypervisor.Backends;

/// <summary>The backend chosen for a run and why.</summary>
/// <param name="Backend">The backend.</param>
/// <param name="Reason">Why it was chosen (for <c>--verbose</c>), including why better ones were not.</param>
public sealed record BackendChoice(IHypervisorBackend Backend, string Reason);

/// <summary>
/// Chooses a backend by name. <c>auto</c> probes the hardware backends in order (KVM on Linux, WHP on Windows) and
/// falls back to the emulator, recording why each was passed over.
/// </summary>
public sealed class BackendSelector
{
    /// <summary>The name that asks for automatic selection.</summary>
    public const string Auto = "auto";

    private readonly IReadOnlyList<IHypervisorBackend> _backends;

    /// <summary>Creates a selector over the registered backends (hardware backends first, the emulator last).</summary>
    public BackendSelector(IEnumerable<IHypervisorBackend> backends)
    {
        ArgumentNullException.ThrowIfNull(backends);
        _backends = [.. backends];
    }

    /// <summary>Names of the registered backends.</summary>
    public IEnumerable<string> Names => _backends.Select(b => b.Name);

    /// <summary>Chooses the backend called <paramref name="name"/>, or the best available one for <c>auto</c>.</summary>
    /// <exception cref="BackendUnavailableException">The named backend is unknown or unavailable, or none is available; the message says why.</exception>
    public BackendChoice Select(string name) => Select(name, BackendCapabilities.None);

    /// <summary>
    /// Chooses the backend called <paramref name="name"/>, or for <c>auto</c> the best available one that has every
    /// capability in <paramref name="required"/> (e.g. <see cref="BackendCapabilities.SupervisorMode"/> for a Linux executable).
    /// </summary>
    /// <exception cref="BackendUnavailableException">The named backend is unknown, unavailable or lacks a required capability, or none qualifies; the message says why.</exception>
    public BackendChoice Select(string name, BackendCapabilities required)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (string.Equals(name, Auto, StringComparison.OrdinalIgnoreCase))
        {
            var passedOver = new List<string>();
            foreach (IHypervisorBackend b in _backends)
            {
                BackendAvailability a = b.Probe();
                if (a.IsAvailable && b.Capabilities.HasFlag(required))
                {
                    string why = passedOver.Count == 0 ? a.Reason : $"{a.Reason} ({string.Join("; ", passedOver)})";
                    return new BackendChoice(b, why);
                }
                passedOver.Add(a.IsAvailable ? $"{b.Name}: {Lacks(b, required)}" : $"{b.Name}: {a.Reason}");
            }
            throw new BackendUnavailableException(required == BackendCapabilities.None
                ? $"no backend can run guests here: {string.Join("; ", passedOver)}"
                : $"no backend here can run this guest: {string.Join("; ", passedOver)}");
        }
        IHypervisorBackend? backend = _backends.FirstOrDefault(b => string.Equals(b.Name, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new BackendUnavailableException($"unknown backend '{name}'; expected one of: {Auto}, {string.Join(", ", Names)}");
        BackendAvailability availability = backend.Probe();
        if (!availability.IsAvailable)
        {
            throw new BackendUnavailableException($"backend '{backend.Name}' is not available: {availability.Reason}");
        }
        if (!backend.Capabilities.HasFlag(required))
        {
            throw new BackendUnavailableException($"backend '{backend.Name}' cannot run this guest: {Lacks(backend, required)}");
        }
        return new BackendChoice(backend, availability.Reason);
    }

    /// <summary>Why <paramref name="backend"/> does not qualify, in words.</summary>
    internal static string Lacks(IHypervisorBackend backend, BackendCapabilities required)
    {
        BackendCapabilities missing = required & ~backend.Capabilities;
        return missing.HasFlag(BackendCapabilities.SupervisorMode)
            ? "it does not give the guest its own CPL 0 (page tables, IDT, CPL 3 code), which the Linux personality needs"
            : $"it lacks {missing}";
    }
}
