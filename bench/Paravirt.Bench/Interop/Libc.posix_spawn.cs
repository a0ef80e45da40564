namespace Paravirt.Bench.Interop;

internal static partial class Libc
{
    /// <summary>
    /// <c>int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
    /// const posix_spawnattr_t *attr, char *const argv[], char *const envp[])</c>; returns 0 or an errno value.
    /// </summary>
    [LibraryImport(Library, EntryPoint = "posix_spawn")]
    internal static unsafe partial int posix_spawn(out int pid, byte* path, nint fileActions, nint attributes, byte** argv, byte** envp);
}
