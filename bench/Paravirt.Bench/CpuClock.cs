using Paravirt.Bench.Interop;

namespace Paravirt.Bench;

/// <summary>CPU time, steadier than wall time when other processes share the cores.</summary>
internal static class CpuClock
{
    /// <summary>CPU seconds of the calling thread (CLOCK_THREAD_CPUTIME_ID): the vCPU's own time; NaN off Linux.</summary>
    public static double ThreadSeconds() =>
        OperatingSystem.IsLinux() && Libc.clock_gettime(Libc.CLOCK_THREAD_CPUTIME_ID, out Libc.Timespec ts) == 0 ? ts.Sec + (ts.Nsec / 1e9) : double.NaN;

    /// <summary>CPU seconds of the whole process (every thread: the JIT's, the GC's), comparable with a child process's user+sys.</summary>
    public static double ProcessSeconds() => Environment.CpuUsage.TotalTime.TotalSeconds;
}
