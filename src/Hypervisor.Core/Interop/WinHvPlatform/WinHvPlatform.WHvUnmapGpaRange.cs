namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvUnmapGpaRange(WHV_PARTITION_HANDLE Partition, WHV_GUEST_PHYSICAL_ADDRESS GuestAddress, UINT64 SizeInBytes)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvUnmapGpaRange")]
    internal static partial int WHvUnmapGpaRange(WhpPartitionHandle Partition, ulong GuestAddress, ulong SizeInBytes);
}
