namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// A guest address range lies outside guest memory or its arithmetic overflows. Thrown only by the throwing
/// accessors of <see cref="GuestMemory"/>; hypercall handlers use the <c>Try</c> forms and answer
/// <see cref="Abi.HypercallStatus.Fault"/> instead.
/// </summary>
public sealed class GuestMemoryException : Exception
{
    /// <summary>Creates the exception.</summary>
    public GuestMemoryException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public GuestMemoryException() { }
    /// <summary>Creates the exception.</summary>
    public GuestMemoryException(string message, Exception inner) : base(message, inner) { }
}
