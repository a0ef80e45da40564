namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvRunVirtualProcessor(WHV_PARTITION_HANDLE Partition, UINT32 VpIndex, VOID *ExitContext, UINT32 ExitContextSizeInBytes)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvRunVirtualProcessor")]
    internal static partial int WHvRunVirtualProcessor(WhpPartitionHandle Partition, uint VpIndex, void* ExitContext, uint ExitContextSizeInBytes);
}
