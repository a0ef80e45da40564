namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvDeletePartition(WHV_PARTITION_HANDLE Partition)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvDeletePartition")]
    internal static partial int WHvDeletePartition(nint Partition);
}
