namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvCreatePartition(WHV_PARTITION_HANDLE *Partition)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvCreatePartition")]
    internal static partial int WHvCreatePartition(out WhpPartitionHandle Partition);
}
