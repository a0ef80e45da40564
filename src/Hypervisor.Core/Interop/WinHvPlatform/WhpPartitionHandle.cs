namespace Paravirt.Hypervisor.Interop;

/// <summary>
/// A <c>WHV_PARTITION_HANDLE</c>, released with <c>WHvDeletePartition</c>. Because the marshaller adds a reference
/// for the length of every P/Invoke that takes it, a <c>WHvCancelRunVirtualProcessor</c> on another thread can
/// never run against a deleted partition (the race Hyperlight fixed by hand with a lock).
/// </summary>
[SupportedOSPlatform("windows")]
internal sealed class WhpPartitionHandle : SafeHandle
{
    /// <summary>Creates an empty handle (the marshaller fills it in).</summary>
    public WhpPartitionHandle() : base(0, ownsHandle: true) { }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => WinHvPlatform.WHvDeletePartition(handle) >= 0;
}
