using Microsoft.Extensions.Options;

namespace Paravirt.Hypervisor;

/// <summary>
/// Application-wide defaults for guest runs (<c>AddParavirt(o =&gt; ...)</c>). Validated when the
/// <see cref="Running.GuestRunner"/> is created, and at host start when a generic host is used
/// (<c>ValidateOnStart</c>): a bad value fails early with <see cref="OptionsValidationException"/> naming it.
/// <see cref="Running.GuestRunner.DefaultOptions"/> carries them into each run.
/// </summary>
public sealed class ParavirtOptions
{
    /// <summary>Backend for runs: <c>auto</c> (default), or a registered backend's name (<c>kvm</c>, <c>whp</c>, <c>emulator</c>).</summary>
    public string DefaultBackend { get; set; } = BackendSelector.Auto;

    /// <summary>Guest memory in bytes (a multiple of 4 KiB, 2 MiB to 64 GiB; default 64 MiB).</summary>
    public ulong DefaultMemorySize { get; set; } = Running.GuestRunOptions.DefaultMemorySize;

    /// <summary>Wall-clock limit per run; null for none.</summary>
    public TimeSpan? DefaultTimeout { get; set; }

    /// <summary>Instruction budget per run (emulator); null for none.</summary>
    public ulong? DefaultInstructionBudget { get; set; }

    /// <summary>Caps per run on host resources (console buffering and output size); see docs/security.md.</summary>
    public Running.GuestLimits DefaultLimits { get; set; } = Running.GuestLimits.Default;
}

/// <summary>Checks <see cref="ParavirtOptions"/> against the registered backends and the memory rules.</summary>
internal sealed class ParavirtOptionsValidator(IEnumerable<IHypervisorBackend> backends) : IValidateOptions<ParavirtOptions>
{
    public ValidateOptionsResult Validate(string? name, ParavirtOptions options)
    {
        var failures = new List<string>();
        string[] names = [BackendSelector.Auto, .. backends.Select(b => b.Name)];
        if (!names.Contains(options.DefaultBackend, StringComparer.OrdinalIgnoreCase))
        {
            failures.Add($"ParavirtOptions.DefaultBackend '{options.DefaultBackend}' is not one of: {string.Join(", ", names)}");
        }
        if (!GuestMemory.IsValidSize(options.DefaultMemorySize))
        {
            failures.Add($"ParavirtOptions.DefaultMemorySize {options.DefaultMemorySize} must be {GuestMemory.SizeRule}");
        }
        if (options.DefaultTimeout is TimeSpan t && t <= TimeSpan.Zero)
        {
            failures.Add($"ParavirtOptions.DefaultTimeout {t} must be positive (or null for no limit)");
        }
        if (options.DefaultInstructionBudget == 0)
        {
            failures.Add("ParavirtOptions.DefaultInstructionBudget must be positive (or null for no limit)");
        }
        try
        {
            (options.DefaultLimits ?? throw new ArgumentException("ParavirtOptions.DefaultLimits must not be null")).Validate();
        }
        catch (ArgumentException ex)
        {
            failures.Add(ex.Message);
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
