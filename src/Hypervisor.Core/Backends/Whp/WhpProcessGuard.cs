namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// Allows one WHP VM per process. <c>WHvMapGpaRange</c> materialises the virtualization driver's partition under
/// a name derived from the process, so a second partition that maps memory in the same process fails with
/// <c>ERROR_VID_PARTITION_ALREADY_EXISTS</c> (0xC0370008), as Hyperlight and others measured. Rather than let the
/// second VM fail half-built with that code, this guard refuses it up front with a message that says what to do.
/// The way past the limit is <c>WHvMapGpaRange2</c> with surrogate processes (see README.md beside this file).
/// </summary>
internal static class WhpProcessGuard
{
    /// <summary>The message of the refusal.</summary>
    public const string OneVmPerProcess =
        "WHP allows one running VM per process in this version of Paravirt; run the second guest in another process";

    private static int s_held;

    /// <summary>Takes the process's WHP slot; dispose the lease to give it back.</summary>
    /// <exception cref="BackendUnavailableException">Another WHP VM of this process is alive.</exception>
    public static Lease Acquire()
    {
        if (Interlocked.CompareExchange(ref s_held, 1, 0) != 0)
        {
            throw new BackendUnavailableException(OneVmPerProcess);
        }
        return new Lease();
    }

    /// <summary>True while a WHP VM of this process is alive.</summary>
    public static bool IsHeld => Volatile.Read(ref s_held) != 0;

    /// <summary>The process's WHP slot; released once, on the first <see cref="Dispose"/>.</summary>
    internal sealed class Lease : IDisposable
    {
        private int _released;

        /// <summary>Gives the slot back.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                Volatile.Write(ref s_held, 0);
            }
        }
    }
}
