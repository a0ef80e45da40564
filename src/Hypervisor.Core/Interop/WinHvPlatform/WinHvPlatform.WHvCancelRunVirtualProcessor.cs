namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvCancelRunVirtualProcessor(WHV_PARTITION_HANDLE Partition, UINT32 VpIndex, UINT32 Flags)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvCancelRunVirtualProcessor")]
    internal static partial int WHvCancelRunVirtualProcessor(WhpPartitionHandle Partition, uint VpIndex, uint Flags);
}
