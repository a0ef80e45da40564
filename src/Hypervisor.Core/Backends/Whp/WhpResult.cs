using System.Diagnostics.CodeAnalysis;

namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// Checks the HRESULT every WHP function returns and turns a failure into one clear line such as
/// <c>WHvMapGpaRange failed: 0x80070005 (E_ACCESSDENIED)</c>, naming the codes WHP is documented or known to return.
/// </summary>
/// <remarks>
/// Values from the Windows SDK's <c>winerror.h</c> (10.0.22621: the <c>WHV_E_*</c> block at 0x8037030x, the
/// hypervisor's <c>ERROR_HV_*</c> at 0xC035xxxx and the virtualization driver's <c>ERROR_VID_*</c> at 0xC037xxxx,
/// the latter two returned by WHP as HRESULTs unchanged) and the generic COM codes (also in mingw-w64's
/// <c>winerror.h</c>).
/// </remarks>
internal static class WhpResult
{
    internal const int E_ACCESSDENIED = unchecked((int)0x80070005);
    internal const int E_INVALIDARG = unchecked((int)0x80070057);
    internal const int E_OUTOFMEMORY = unchecked((int)0x8007000E);
    internal const int E_FAIL = unchecked((int)0x80004005);
    internal const int E_NOTIMPL = unchecked((int)0x80004001);
    internal const int E_UNEXPECTED = unchecked((int)0x8000FFFF);
    internal const int E_PENDING = unchecked((int)0x8000000A);
    /// <summary><c>HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)</c> (50).</summary>
    internal const int E_NOT_SUPPORTED = unchecked((int)0x80070032);

    internal const int WHV_E_UNKNOWN_CAPABILITY = unchecked((int)0x80370300);
    internal const int WHV_E_INSUFFICIENT_BUFFER = unchecked((int)0x80370301);
    internal const int WHV_E_UNKNOWN_PROPERTY = unchecked((int)0x80370302);
    internal const int WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG = unchecked((int)0x80370303);
    internal const int WHV_E_INVALID_PARTITION_CONFIG = unchecked((int)0x80370304);
    internal const int WHV_E_GPA_RANGE_NOT_FOUND = unchecked((int)0x80370305);
    internal const int WHV_E_VP_ALREADY_EXISTS = unchecked((int)0x80370306);
    internal const int WHV_E_VP_DOES_NOT_EXIST = unchecked((int)0x80370307);
    internal const int WHV_E_INVALID_VP_STATE = unchecked((int)0x80370308);
    internal const int WHV_E_INVALID_VP_REGISTER_NAME = unchecked((int)0x80370309);
    internal const int WHV_E_UNSUPPORTED_PROCESSOR_CONFIG = unchecked((int)0x80370310);

    internal const int ERROR_HV_INVALID_PARAMETER = unchecked((int)0xC0350005);
    internal const int ERROR_HV_ACCESS_DENIED = unchecked((int)0xC0350006);
    internal const int ERROR_HV_INVALID_PARTITION_STATE = unchecked((int)0xC0350007);
    internal const int ERROR_HV_OPERATION_DENIED = unchecked((int)0xC0350008);
    internal const int ERROR_HV_INSUFFICIENT_MEMORY = unchecked((int)0xC035000B);
    internal const int ERROR_HV_INVALID_VP_INDEX = unchecked((int)0xC035000E);
    internal const int ERROR_HV_INVALID_VP_STATE = unchecked((int)0xC0350015);
    internal const int ERROR_HV_FEATURE_UNAVAILABLE = unchecked((int)0xC035001E);
    internal const int ERROR_HV_INVALID_REGISTER_VALUE = unchecked((int)0xC0350050);
    internal const int ERROR_HV_NOT_PRESENT = unchecked((int)0xC0351000);

    internal const int ERROR_VID_PARTITION_ALREADY_EXISTS = unchecked((int)0xC0370008);
    internal const int ERROR_VID_PARTITION_DOES_NOT_EXIST = unchecked((int)0xC0370009);
    internal const int ERROR_VID_VIRTUAL_PROCESSOR_LIMIT_EXCEEDED = unchecked((int)0xC037001B);
    internal const int ERROR_VID_INVALID_PROCESSOR_STATE = unchecked((int)0xC037001D);

    /// <summary>True when <paramref name="hr"/> is a success code (<c>SUCCEEDED</c>).</summary>
    public static bool Succeeded(int hr) => hr >= 0;

    /// <summary>Throws <see cref="WhpException"/> when <paramref name="hr"/> is a failure code.</summary>
    public static void ThrowIfFailed(int hr, string function)
    {
        if (hr < 0)
        {
            Throw(hr, function);
        }
    }

    [DoesNotReturn]
    private static void Throw(int hr, string function) => throw new WhpException(function, hr);

    /// <summary>The symbolic name of a known code, or null.</summary>
    public static string? NameOf(int hr) => hr switch
    {
        E_ACCESSDENIED => nameof(E_ACCESSDENIED),
        E_INVALIDARG => nameof(E_INVALIDARG),
        E_OUTOFMEMORY => nameof(E_OUTOFMEMORY),
        E_FAIL => nameof(E_FAIL),
        E_NOTIMPL => nameof(E_NOTIMPL),
        E_UNEXPECTED => nameof(E_UNEXPECTED),
        E_PENDING => nameof(E_PENDING),
        E_NOT_SUPPORTED => "HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)",
        WHV_E_UNKNOWN_CAPABILITY => nameof(WHV_E_UNKNOWN_CAPABILITY),
        WHV_E_INSUFFICIENT_BUFFER => nameof(WHV_E_INSUFFICIENT_BUFFER),
        WHV_E_UNKNOWN_PROPERTY => nameof(WHV_E_UNKNOWN_PROPERTY),
        WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG => nameof(WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG),
        WHV_E_INVALID_PARTITION_CONFIG => nameof(WHV_E_INVALID_PARTITION_CONFIG),
        WHV_E_GPA_RANGE_NOT_FOUND => nameof(WHV_E_GPA_RANGE_NOT_FOUND),
        WHV_E_VP_ALREADY_EXISTS => nameof(WHV_E_VP_ALREADY_EXISTS),
        WHV_E_VP_DOES_NOT_EXIST => nameof(WHV_E_VP_DOES_NOT_EXIST),
        WHV_E_INVALID_VP_STATE => nameof(WHV_E_INVALID_VP_STATE),
        WHV_E_INVALID_VP_REGISTER_NAME => nameof(WHV_E_INVALID_VP_REGISTER_NAME),
        WHV_E_UNSUPPORTED_PROCESSOR_CONFIG => nameof(WHV_E_UNSUPPORTED_PROCESSOR_CONFIG),
        ERROR_HV_INVALID_PARAMETER => nameof(ERROR_HV_INVALID_PARAMETER),
        ERROR_HV_ACCESS_DENIED => nameof(ERROR_HV_ACCESS_DENIED),
        ERROR_HV_INVALID_PARTITION_STATE => nameof(ERROR_HV_INVALID_PARTITION_STATE),
        ERROR_HV_OPERATION_DENIED => nameof(ERROR_HV_OPERATION_DENIED),
        ERROR_HV_INSUFFICIENT_MEMORY => nameof(ERROR_HV_INSUFFICIENT_MEMORY),
        ERROR_HV_INVALID_VP_INDEX => nameof(ERROR_HV_INVALID_VP_INDEX),
        ERROR_HV_INVALID_VP_STATE => nameof(ERROR_HV_INVALID_VP_STATE),
        ERROR_HV_FEATURE_UNAVAILABLE => nameof(ERROR_HV_FEATURE_UNAVAILABLE),
        ERROR_HV_INVALID_REGISTER_VALUE => nameof(ERROR_HV_INVALID_REGISTER_VALUE),
        ERROR_HV_NOT_PRESENT => nameof(ERROR_HV_NOT_PRESENT),
        ERROR_VID_PARTITION_ALREADY_EXISTS => nameof(ERROR_VID_PARTITION_ALREADY_EXISTS),
        ERROR_VID_PARTITION_DOES_NOT_EXIST => nameof(ERROR_VID_PARTITION_DOES_NOT_EXIST),
        ERROR_VID_VIRTUAL_PROCESSOR_LIMIT_EXCEEDED => nameof(ERROR_VID_VIRTUAL_PROCESSOR_LIMIT_EXCEEDED),
        ERROR_VID_INVALID_PROCESSOR_STATE => nameof(ERROR_VID_INVALID_PROCESSOR_STATE),
        _ => null,
    };

    /// <summary>What to do about a code, where there is something to say.</summary>
    private static string? HintFor(int hr) => hr switch
    {
        ERROR_HV_NOT_PRESENT => "the hypervisor is not running: enable the Windows Hypervisor Platform feature and reboot",
        ERROR_VID_PARTITION_ALREADY_EXISTS => "another WHP partition in this process already maps memory; WHvMapGpaRange allows one per process",
        WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG => "the hypervisor configuration does not support this; check that virtualization is enabled in the firmware",
        _ => null,
    };

    /// <summary>Formats a failure: <c>FUNCTION failed: 0xXXXXXXXX (NAME)[: hint]</c>.</summary>
    public static string Format(string function, int hr)
    {
        string? name = NameOf(hr);
        string? hint = HintFor(hr);
        string text = name is null ? $"{function} failed: 0x{(uint)hr:X8}" : $"{function} failed: 0x{(uint)hr:X8} ({name})";
        return hint is null ? text : $"{text}: {hint}";
    }
}

/// <summary>A WHP function returned a failure HRESULT; <see cref="Exception.HResult"/> holds it and the message names the function and the code.</summary>
internal sealed class WhpException : Exception
{
    /// <summary>Creates the exception for <paramref name="function"/> failing with <paramref name="hr"/>.</summary>
    public WhpException(string function, int hr) : base(WhpResult.Format(function, hr))
    {
        Function = function;
        HResult = hr;
    }

    /// <summary>Creates the exception.</summary>
    public WhpException() { }
    /// <summary>Creates the exception.</summary>
    public WhpException(string message) : base(message) { }
    /// <summary>Creates the exception.</summary>
    public WhpException(string message, Exception inner) : base(message, inner) { }

    /// <summary>The WHP function that failed.</summary>
    public string? Function { get; }
}
