namespace Paravirt.Hypervisor.Backends;

/// <summary>Implemented by vCPUs that count retired guest instructions exactly (the emulator).</summary>
public interface IInstructionCounter
{
    /// <summary>Instructions executed so far.</summary>
    ulong InstructionsRetired { get; }
}
