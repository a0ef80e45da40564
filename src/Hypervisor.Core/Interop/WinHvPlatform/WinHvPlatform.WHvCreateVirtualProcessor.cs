namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvCreateVirtualProcessor(WHV_PARTITION_HANDLE Partition, UINT32 VpIndex, UINT32 Flags)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvCreateVirtualProcessor")]
    internal static partial int WHvCreateVirtualProcessor(WhpPartitionHandle Partition, uint VpIndex, uint Flags);
}
