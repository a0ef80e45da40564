namespace Paravirt.Abi;

/// <summary>
/// Status codes. A hypercall result <c>&gt;= 0</c> is success (its meaning depends on the call); a negative result
/// is one of these codes. The values are Linux errno values negated, as Xen's <c>XEN_E*</c> are, so a guest author
/// recognises them. Append-only.
/// </summary>
[AbiExport("pv_status")]
public enum HypercallStatus : long
{
    /// <summary>Success.</summary>
    Ok = 0,
    /// <summary>The operation is not permitted for this guest (EPERM).</summary>
    PermissionDenied = -1,
    /// <summary>No such object (ENOENT).</summary>
    NotFound = -2,
    /// <summary>The host's backing store failed (EIO).</summary>
    IoError = -5,
    /// <summary>Argument list or buffer too large (E2BIG).</summary>
    TooBig = -7,
    /// <summary>Bad handle or device index (EBADF).</summary>
    BadHandle = -9,
    /// <summary>Try again later (EAGAIN).</summary>
    TryAgain = -11,
    /// <summary>The host is out of memory for this request (ENOMEM).</summary>
    NoMemory = -12,
    /// <summary>A guest address or length lies outside guest memory, or overflows (EFAULT).</summary>
    Fault = -14,
    /// <summary>Busy (EBUSY).</summary>
    Busy = -16,
    /// <summary>Already exists / already registered (EEXIST).</summary>
    Exists = -17,
    /// <summary>No such device (ENODEV).</summary>
    NoDevice = -19,
    /// <summary>An argument is invalid (EINVAL).</summary>
    Invalid = -22,
    /// <summary>No space left (ENOSPC).</summary>
    NoSpace = -28,
    /// <summary>The device is read-only (EROFS).</summary>
    ReadOnly = -30,
    /// <summary>The peer or device is broken: the guest corrupted shared state and the device stopped (EPIPE).</summary>
    Broken = -32,
    /// <summary>Value out of range (ERANGE).</summary>
    OutOfRange = -34,
    /// <summary>Unknown or unimplemented function code (ENOSYS).</summary>
    NotImplemented = -38,
    /// <summary>Protocol error in shared memory (EPROTO).</summary>
    Protocol = -71,
    /// <summary>Timed out (ETIMEDOUT).</summary>
    TimedOut = -110,
    /// <summary>A host function failed (it threw): the message says why (EREMOTEIO).</summary>
    HostFunctionFailed = -121,
}
