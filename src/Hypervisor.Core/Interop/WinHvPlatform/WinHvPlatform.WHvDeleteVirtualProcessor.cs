namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvDeleteVirtualProcessor(WHV_PARTITION_HANDLE Partition, UINT32 VpIndex)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvDeleteVirtualProcessor")]
    internal static partial int WHvDeleteVirtualProcessor(WhpPartitionHandle Partition, uint VpIndex);
}
