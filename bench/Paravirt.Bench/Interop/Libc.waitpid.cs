namespace Paravirt.Bench.Interop;

internal static partial class Libc
{
    /// <summary><c>pid_t waitpid(pid_t pid, int *status, int options)</c>; -1 with errno on failure.</summary>
    [LibraryImport(Library, EntryPoint = "waitpid", SetLastError = true)]
    internal static partial int waitpid(int pid, out int status, int options);
}
