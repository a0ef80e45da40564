namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvSetVirtualProcessorRegisters(WHV_PARTITION_HANDLE Partition, UINT32 VpIndex, const WHV_REGISTER_NAME *RegisterNames, UINT32 RegisterCount, const WHV_REGISTER_VALUE *RegisterValues)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvSetVirtualProcessorRegisters")]
    internal static partial int WHvSetVirtualProcessorRegisters(WhpPartitionHandle Partition, uint VpIndex, WHV_REGISTER_NAME* RegisterNames, uint RegisterCount, WHV_REGISTER_VALUE* RegisterValues);
}
