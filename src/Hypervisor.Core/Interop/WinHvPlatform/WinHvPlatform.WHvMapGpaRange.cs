namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvMapGpaRange(WHV_PARTITION_HANDLE Partition, VOID *SourceAddress, WHV_GUEST_PHYSICAL_ADDRESS GuestAddress, UINT64 SizeInBytes, WHV_MAP_GPA_RANGE_FLAGS Flags)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvMapGpaRange")]
    internal static partial int WHvMapGpaRange(WhpPartitionHandle Partition, nint SourceAddress, ulong GuestAddress, ulong SizeInBytes, WHV_MAP_GPA_RANGE_FLAGS Flags);
}
