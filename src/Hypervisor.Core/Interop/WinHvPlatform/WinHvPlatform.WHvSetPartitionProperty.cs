namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvSetPartitionProperty(WHV_PARTITION_HANDLE Partition, WHV_PARTITION_PROPERTY_CODE PropertyCode, const VOID *PropertyBuffer, UINT32 PropertyBufferSizeInBytes)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvSetPartitionProperty")]
    internal static partial int WHvSetPartitionProperty(WhpPartitionHandle Partition, WHV_PARTITION_PROPERTY_CODE PropertyCode, void* PropertyBuffer, uint PropertyBufferSizeInBytes);
}
