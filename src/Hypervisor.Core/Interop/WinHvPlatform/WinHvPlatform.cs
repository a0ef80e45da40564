namespace Paravirt.Hypervisor.Interop;

/// <summary>
/// P/Invokes into <c>WinHvPlatform.dll</c>, the Windows Hypervisor Platform (WHP) user-mode API. Written by hand
/// (no CsWin32): one file per native function (<c>WinHvPlatform.NAME.cs</c>), native names verbatim,
/// <c>LibraryImport</c> so the marshalling is generated at compile time and NativeAOT-friendly. Every function
/// returns an HRESULT that the caller checks with <see cref="Backends.Whp.WhpResult.ThrowIfFailed"/>.
/// </summary>
/// <remarks>
/// Prototypes, enum values and struct layouts follow <c>WinHvPlatform.h</c> / <c>WinHvPlatformDefs.h</c> of the
/// Windows SDK as published in Microsoft's WHP documentation
/// (learn.microsoft.com/virtualization/api/hypervisor-platform) and in the mingw-w64 copy of the headers
/// (<c>mingw-w64-x86-64-dev</c> 10.0.0: <c>/usr/share/mingw-w64/include/winhvplatform.h</c> and
/// <c>winhvplatformdefs.h</c>, which carries the SDK's <c>C_ASSERT</c> sizes). The layout tests in
/// <c>tests/Paravirt.Hypervisor.Tests/Whp</c> pin every size and offset and, where mingw-w64 gcc is installed,
/// compile the header and compare. x64 only: the register names differ on Arm64.
/// </remarks>
[SupportedOSPlatform("windows")]
internal static partial class WinHvPlatform
{
    internal const string Library = "WinHvPlatform.dll";
}
