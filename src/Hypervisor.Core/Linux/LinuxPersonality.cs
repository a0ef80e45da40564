using System.Text;

namespace Paravirt.Hypervisor.Linux;

/// <summary>Where the Linux personality put things in guest memory, for the boot info and the first vCPU state.</summary>
/// <param name="Entry">The library OS's (physical) entry point.</param>
/// <param name="HeapStart">First guest-physical address past the library OS and the boot modules.</param>
/// <param name="BootModules">Guest-physical address of the boot module table.</param>
/// <param name="BootModuleCount">Entries in the table.</param>
internal readonly record struct LinuxLayout(ulong Entry, ulong HeapStart, ulong BootModules, uint BootModuleCount);

/// <summary>The signal that killed a Linux application, as the library OS reported it (<see cref="HypercallCode.ExitSignal"/>).</summary>
/// <param name="Signal">The signal number (1-64).</param>
/// <param name="Address">The faulting data address (0 when not a fault).</param>
/// <param name="Rip">The application's instruction pointer.</param>
/// <param name="Frame">The application's registers at the failure, when the library OS passed them.</param>
internal sealed record LinuxFatalSignal(int Signal, ulong Address, ulong Rip, PanicFrame? Frame = null)
{
    private static readonly string[] Names =
    [
        "", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
        "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
        "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];

    /// <summary>The signal's name (<c>SIGSEGV</c>), or <c>SIGRTMIN+n</c> style for real-time signals.</summary>
    public string Name => Signal < Names.Length ? Names[Signal] : $"SIGRT{Signal - 32}";

    /// <summary>One line for the user.</summary>
    public string Describe() => Signal is 4 or 5 or 7 or 8 or 11
        ? $"the Linux application was killed by {Name} (signal {Signal}): a fault at address 0x{Address:x}, rip 0x{Rip:x}"
        : $"the Linux application was killed by {Name} (signal {Signal}) at rip 0x{Rip:x}";
}

/// <summary>
/// Runs static Linux executables: loads the Linux personality (a library OS built from src/Guest.Sdk/native/linux and
/// embedded in this assembly) as the guest, and hands it the application ELF and its arguments as boot modules.
/// <code>
///  guest-physical
///  0x0000_5000  boot module table (pv_boot_module[2])
///  0x0010_0000  library OS (its PT_LOAD segments at p_paddr; it maps itself at 0xffff800000000000 + p_paddr)
///               application ELF file, byte for byte        (page aligned: module 1)
///               argv and envp strings (pv_linux_args + strings)  (page aligned: module 2)
///  heap_start   everything above belongs to the library OS's frame allocator
/// </code>
/// </summary>
internal static class LinuxPersonality
{
    /// <summary>The embedded library OS image's resource name.</summary>
    internal const string ResourceName = "Paravirt.Hypervisor.Linux.paravirt-linux.elf";

    /// <summary>Guest memory the library OS needs above the modules to be of any use (page tables, stacks, heap).</summary>
    internal const ulong MinimumFreeMemory = 8UL << 20;

    private static readonly Lazy<GuestImage?> LibraryOsImage = new(LoadLibraryOs);

    /// <summary>The library OS, parsed once per process.</summary>
    /// <exception cref="ImageFormatException">This build has no (or a broken) library OS.</exception>
    internal static GuestImage LibraryOs => LibraryOsImage.Value
        ?? throw new ImageFormatException("this build of Paravirt.Hypervisor.Core has no Linux personality (it was built without gcc and make); rebuild it on Linux to run Linux executables");

    private static GuestImage? LoadLibraryOs()
    {
        using Stream? stream = typeof(LinuxPersonality).Assembly.GetManifestResourceStream(ResourceName);
        if (stream is null)
        {
            return null;
        }
        byte[] bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return ElfLoader.ParsePhysical(bytes, AbiVersion.Current);
    }

    /// <summary>Encodes a <see cref="BootModuleKind.LinuxArguments"/> module.</summary>
    /// <exception cref="ArgumentException">A string holds a NUL, an environment string has no '=', or the whole exceeds <see cref="LinuxConstants.MaxArgumentsSize"/>.</exception>
    internal static byte[] EncodeArguments(IReadOnlyList<string> argv, IReadOnlyList<string> environment)
    {
        var buffer = new MemoryStream();
        var header = new LinuxArgumentsHeader { Argc = (uint)argv.Count, Envc = (uint)environment.Count };
        buffer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(new ReadOnlySpan<LinuxArgumentsHeader>(in header)));
        foreach (string a in argv)
        {
            Append(a, "an argument");
        }
        foreach (string e in environment)
        {
            if (e.IndexOf('=', StringComparison.Ordinal) <= 0)
            {
                throw new ArgumentException($"the environment variable '{e}' is not KEY=VALUE");
            }
            Append(e, "an environment variable");
        }
        if (buffer.Length > LinuxConstants.MaxArgumentsSize)
        {
            throw new ArgumentException($"the Linux application's arguments and environment take {buffer.Length} bytes; at most {LinuxConstants.MaxArgumentsSize} are allowed");
        }
        return buffer.ToArray();

        void Append(string s, string what)
        {
            if (s.Contains('\0', StringComparison.Ordinal))
            {
                throw new ArgumentException($"{what} contains a NUL character");
            }
            buffer.Write(Encoding.UTF8.GetBytes(s));
            buffer.WriteByte(0);
        }
    }

    /// <summary>Loads the library OS, the application and its arguments into <paramref name="memory"/> and writes the boot module table.</summary>
    /// <exception cref="ImageFormatException">No library OS in this build, or guest memory is too small.</exception>
    internal static LinuxLayout Load(GuestImage application, GuestMemory memory, byte[] arguments)
    {
        ArgumentNullException.ThrowIfNull(application);
        ArgumentNullException.ThrowIfNull(memory);
        GuestImage libraryOs = LibraryOs;
        ulong libraryEnd = ElfLoader.LoadInto(libraryOs, memory);
        ulong appAt = AlignUp(libraryEnd);
        ReadOnlySpan<byte> app = application.FileBytes;
        ulong appEnd = appAt + (ulong)app.Length;
        ulong argsAt = AlignUp(appEnd);
        ulong argsEnd = argsAt + (ulong)arguments.Length;
        ulong heapStart = AlignUp(argsEnd);
        if (heapStart > memory.Size || memory.Size - heapStart < MinimumFreeMemory)
        {
            ulong needMiB = (heapStart + MinimumFreeMemory + (1UL << 20) - 1) >> 20;
            throw new ImageFormatException($"the Linux executable ({app.Length >> 10} KiB) and the Linux personality need at least {needMiB} MiB of guest memory, but it is {memory.Size >> 20} MiB; use a larger --memory");
        }
        memory.Write(new GuestAddress(appAt), app);
        memory.Clear(new GuestAddress(appEnd), argsAt - appEnd);
        memory.Write(new GuestAddress(argsAt), arguments);
        memory.Clear(new GuestAddress(argsEnd), heapStart - argsEnd);

        var modules = new BootModule[]
        {
            new() { Kind = (uint)BootModuleKind.LinuxExecutable, Address = appAt, Size = (ulong)app.Length },
            new() { Kind = (uint)BootModuleKind.LinuxArguments, Address = argsAt, Size = (ulong)arguments.Length },
        };
        memory.Clear(new GuestAddress(GuestLayout.BootModules), GuestLayout.BootModulesSize);
        for (int i = 0; i < modules.Length; i++)
        {
            memory.Write(new GuestAddress(GuestLayout.BootModules + (ulong)i * 32), in modules[i]);
        }
        return new LinuxLayout(libraryOs.Entry, heapStart, GuestLayout.BootModules, (uint)modules.Length);
    }

    private static ulong AlignUp(ulong value) => (value + EntryConvention.PageSize - 1) & ~(EntryConvention.PageSize - 1);
}
