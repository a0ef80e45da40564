namespace Paravirt.Hypervisor.Interop;

internal static unsafe partial class WinHvPlatform
{
    /// <summary><c>HRESULT WHvGetCapability(WHV_CAPABILITY_CODE CapabilityCode, VOID *CapabilityBuffer, UINT32 CapabilityBufferSizeInBytes, UINT32 *WrittenSizeInBytes)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "WHvGetCapability")]
    internal static partial int WHvGetCapability(WHV_CAPABILITY_CODE CapabilityCode, void* CapabilityBuffer, uint CapabilityBufferSizeInBytes, uint* WrittenSizeInBytes);
}
