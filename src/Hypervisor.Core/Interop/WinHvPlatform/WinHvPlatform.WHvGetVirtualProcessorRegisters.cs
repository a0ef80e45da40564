namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvGetVirtualProcessorRegisters(WHV_PARTITION_HANDLE Partition, UINT32 VpIndex, const WHV_REGISTER_NAME *RegisterNames, UINT32 RegisterCount, WHV_REGISTER_VALUE *RegisterValues)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvGetVirtualProcessorRegisters")]
    internal static partial int WHvGetVirtualProcessorRegisters(WhpPartitionHandle Partition, uint VpIndex, WHV_REGISTER_NAME* RegisterNames, uint RegisterCount, WHV_REGISTER_VALUE* RegisterValues);
}
