namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// The signal that kicks a vCPU thread out of a blocked <c>KVM_RUN</c>: <c>SIGRTMIN + 6</c>, with a handler that does
/// nothing, installed once without <c>SA_RESTART</c> so that the interrupted ioctl fails with <c>EINTR</c>.
/// </summary>
/// <remarks>
/// <para>
/// Why this signal: the .NET runtime (CoreCLR and NativeAOT) uses <c>SIGRTMIN</c> itself to inject activations
/// into threads (GC suspension, <c>INJECT_ACTIVATION_SIGNAL</c>), and <c>System.Native</c> handles the classic
/// signals (SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGCONT, SIGWINCH, SIGTTOU, ...). glibc keeps the two lowest
/// real-time signals for itself, which is why <c>SIGRTMIN</c> is a run-time value
/// (<c>__libc_current_sigrtmin</c>, 34 today). A real-time signal a few above <c>SIGRTMIN</c> is used by no one
/// in the process and its default action (terminate) never matters because the handler is installed before any
/// kick is sent. rust-vmm VMMs (Firecracker, Cloud Hypervisor) kick vCPUs the same way with <c>SIGRTMIN + n</c>.
/// </para>
/// <para>
/// Why the handler is native code and not an <c>[UnmanagedCallersOnly]</c> method: the kick can land while the
/// vCPU thread runs managed code (between two <c>KVM_RUN</c>s), and entering managed code through a reverse
/// P/Invoke on a thread that is already in managed code is a fatal error for the runtime (and running managed
/// code inside a signal handler is not async-signal-safe anyway). The handler is therefore one <c>ret</c>
/// instruction on a page of its own, mapped read+execute once for the life of the process.
/// </para>
/// <para>
/// A kick that lands while the thread is outside <c>KVM_RUN</c> is harmless: the handler returns, a system call in
/// progress may see <c>EINTR</c> (the runtime retries those), and <c>kvm_run.immediate_exit</c> makes the next
/// <c>KVM_RUN</c> return at once.
/// </para>
/// </remarks>
[SupportedOSPlatform("linux")]
internal static class KvmKickSignal
{
    /// <summary>Offset of the kick signal from <c>SIGRTMIN</c>.</summary>
    internal const int OffsetFromSigRtMin = 6;

    private const byte X64Ret = 0xC3;

    private static readonly Lock s_lock = new();
    private static int s_signal;

    /// <summary>The kick signal number, installing its no-op handler on first use.</summary>
    /// <exception cref="BackendUnavailableException">The handler could not be installed.</exception>
    internal static int Signal
    {
        get
        {
            int signal = Volatile.Read(ref s_signal);
            return signal != 0 ? signal : Install();
        }
    }

    private static unsafe int Install()
    {
        lock (s_lock)
        {
            if (s_signal != 0)
            {
                return s_signal;
            }
            if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
            {
                throw new BackendUnavailableException($"the KVM backend supports x86-64 hosts only (this is {RuntimeInformation.ProcessArchitecture})");
            }
            int signal = Libc.__libc_current_sigrtmin() + OffsetFromSigRtMin;
            if (signal > Libc.__libc_current_sigrtmax())
            {
                throw new BackendUnavailableException($"cannot install the vCPU kick signal: SIGRTMIN + {OffsetFromSigRtMin} is above SIGRTMAX");
            }

            // The no-op handler: one page holding `ret`, made read+execute, never unmapped (it must outlive every
            // possible delivery of the signal).
            const nuint page = 4096;
            nint stub = Libc.mmap(0, page, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
            if (stub == Libc.MAP_FAILED)
            {
                throw Failure("mmap of the signal handler page");
            }
            // Safe: stub is a fresh private page of 4096 writable bytes.
            *(byte*)stub = X64Ret;
            if (Libc.mprotect(stub, page, Libc.PROT_READ | Libc.PROT_EXEC) != 0)
            {
                BackendUnavailableException e = Failure("mprotect of the signal handler page");
                Libc.munmap(stub, page);
                throw e;
            }

            // Safe: act lives on this stack frame for the duration of the call. Flags 0: no SA_RESTART (so KVM_RUN
            // fails with EINTR), no SA_SIGINFO; empty mask.
            Libc.SigAction act = default;
            act.Handler = stub;
            act.Flags = 0;
            if (Libc.sigaction(signal, &act, null) != 0)
            {
                throw Failure($"sigaction({signal})");
            }
            Volatile.Write(ref s_signal, signal);
            return signal;
        }
    }

    private static BackendUnavailableException Failure(string what)
    {
        int errno = Marshal.GetLastPInvokeError();
        return new BackendUnavailableException($"cannot install the vCPU kick signal handler: {what} failed: {Marshal.GetPInvokeErrorMessage(errno)}");
    }
}
