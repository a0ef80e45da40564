namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvSetupPartition(WHV_PARTITION_HANDLE Partition)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvSetupPartition")]
    internal static partial int WHvSetupPartition(WhpPartitionHandle Partition);
}
