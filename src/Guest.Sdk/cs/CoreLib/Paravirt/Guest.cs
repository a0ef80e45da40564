// The guest API of C# Paravirt unikernels: hypercalls, boot info, exit and fail-fast.
using System.Runtime;
using System.Runtime.CompilerServices;
using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>Raw hypercalls through the hypercall page (code in rax, arguments in rdi, rsi, rdx, r10, r8).</summary>
    public static unsafe class Hypercall
    {
        // native/cs/csglue.c: loads the registers and calls boot_info.hypercall_page (the C runtime's stub).
        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_cs_hypercall")]
        private static extern long Raw(ulong code, ulong a1, ulong a2, ulong a3, ulong a4, ulong a5);

        /// <summary>Makes hypercall <paramref name="code"/>; returns the result (negative: a <see cref="HypercallStatus"/>).</summary>
        public static long Call(HypercallCode code, ulong a1 = 0, ulong a2 = 0, ulong a3 = 0, ulong a4 = 0, ulong a5 = 0)
            => Raw((ulong)code, a1, a2, a3, a4, a5);

        /// <summary>Makes a hypercall by number (user-defined codes).</summary>
        public static long Call(uint code, ulong a1 = 0, ulong a2 = 0, ulong a3 = 0, ulong a4 = 0, ulong a5 = 0)
            => Raw(code, a1, a2, a3, a4, a5);
    }

    /// <summary>The guest itself: boot info, ABI version, clocks, exit and fail-fast.</summary>
    public static unsafe class Guest
    {
        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_boot_info_get")]
        private static extern BootInfo* BootInfoGet();

        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_exit")]
        private static extern void ExitNative(int status);

        /// <summary>The boot info the host passed at entry (validated by the runtime before Main).</summary>
        public static BootInfo* BootInfo => BootInfoGet();

        /// <summary>The host's packed ABI version (version hypercall), or a negative status.</summary>
        public static long HostAbiVersion() => Hypercall.Call(HypercallCode.Version);

        /// <summary>True when a host speaking packed version <paramref name="packed"/> runs this image (same major, minor at least ours).</summary>
        public static bool IsCompatibleHost(long packed)
            => packed >= 0 && (packed >> 16) == AbiVersionConstants.Major && (packed & 0xffff) >= AbiVersionConstants.Minor;

        /// <summary>The feature bits of word 0 the host offers.</summary>
        public static FeatureBits Features => (FeatureBits)BootInfo->Features0;

        /// <summary>Monotonic time in nanoseconds.</summary>
        public static ulong MonotonicNs() => (ulong)Hypercall.Call(HypercallCode.ClockMonotonic);

        /// <summary>Wall-clock time in nanoseconds since the Unix epoch (0 when the host offers none).</summary>
        public static ulong WallNs()
        {
            long t = Hypercall.Call(HypercallCode.ClockWall);
            return t < 0 ? 0 : (ulong)t;
        }

        /// <summary>Ends the guest with <paramref name="status"/> (the exit hypercall); does not return.</summary>
        public static void Exit(int status) => ExitNative(status);

        /// <summary>
        /// Ends the guest because of an unrecoverable error, as the C runtime's <c>pv_panic</c> does: the panic
        /// hypercall (ABI 1.1) makes the host print <c>panic: message</c> and a crash report whose backtrace names the
        /// methods on the stack (NativeAOT's symbols). On a 1.0 host: <c>panic: message</c> on the debug console and
        /// exit status 255. C# guests have no exceptions: every runtime error (index out of range, null reference, out
        /// of memory, ...) comes here.
        /// </summary>
        public static void FailFast(string message)
        {
            message ??= "fail-fast";
            // The message as UTF-8 on the stack (non-ASCII becomes '?': a panic must not allocate).
            byte* buf = stackalloc byte[256];
            int n = 0;
            for (int i = 0; i < message.Length && n < 256; i++)
            {
                char c = message[i];
                buf[n++] = c < 0x80 ? (byte)c : (byte)'?';
            }
            Hypercall.Call(HypercallCode.Panic, (ulong)buf, (ulong)n, 0);
            Console.WriteDebug("panic: ");
            Console.WriteDebug(message);
            Console.WriteDebug("\n");
            ExitNative(255);
        }
    }
}
