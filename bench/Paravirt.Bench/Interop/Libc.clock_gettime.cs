namespace Paravirt.Bench.Interop;

internal static partial class Libc
{
    internal const int CLOCK_THREAD_CPUTIME_ID = 3;

    [StructLayout(LayoutKind.Sequential)]
    internal struct Timespec
    {
        public long Sec;
        public long Nsec;
    }

    /// <summary><c>int clock_gettime(clockid_t clock, struct timespec *ts)</c>.</summary>
    [LibraryImport(Library, EntryPoint = "clock_gettime")]
    internal static partial int clock_gettime(int clock, out Timespec ts);
}
