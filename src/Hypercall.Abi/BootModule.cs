using System.Runtime.InteropServices;

namespace Paravirt.Abi;

/// <summary>
/// ABI 1.1: one boot module, an extra blob the host places in guest memory for the guest's own loader (as multiboot
/// modules): <see cref="BootInfo.BootModules"/> points at an array of these. The Linux personality receives the
/// application image and its arguments this way. Modules are page aligned and lie in guest memory below
/// <see cref="BootInfo.HeapStart"/>.
/// </summary>
[AbiExport("pv_boot_module")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct BootModule
{
    /// <summary>A <see cref="BootModuleKind"/>.</summary>
    [FieldOffset(0)] public uint Kind;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(4)] public uint Flags;
    /// <summary>Guest-physical address of the module (page aligned).</summary>
    [FieldOffset(8)] public ulong Address;
    /// <summary>Size of the module in bytes.</summary>
    [FieldOffset(16)] public ulong Size;
    /// <summary>Reserved, zero.</summary>
    [FieldOffset(24)] public ulong Reserved;
}

/// <summary>ABI 1.1: what a <see cref="BootModule"/> holds. Append-only.</summary>
[AbiExport("pv_boot_module_kind")]
public enum BootModuleKind : uint
{
    /// <summary>Not a module.</summary>
    None = 0,
    /// <summary>A static Linux x86-64 executable (the ELF file's bytes, unchanged) for the Linux personality to run.</summary>
    LinuxExecutable = 1,
    /// <summary>The Linux application's arguments and environment: a <see cref="LinuxArgumentsHeader"/> followed by <c>Argc + Envc</c> NUL-terminated strings (argv, then envp).</summary>
    LinuxArguments = 2,
}

/// <summary>ABI 1.1: header of a <see cref="BootModuleKind.LinuxArguments"/> module.</summary>
[AbiExport("pv_linux_args")]
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct LinuxArgumentsHeader
{
    /// <summary>Number of argument strings (argv; argv[0] is the program name).</summary>
    [FieldOffset(0)] public uint Argc;
    /// <summary>Number of environment strings (envp, each <c>KEY=VALUE</c>).</summary>
    [FieldOffset(4)] public uint Envc;
}

/// <summary>ABI 1.1: constants of the Linux personality (a guest-side library OS that runs static Linux executables).</summary>
[AbiExport("PV_LINUX")]
public static class LinuxConstants
{
    /// <summary>
    /// The system call number a Linux application uses to reach a user-defined hypercall through the library OS:
    /// <c>syscall(HypercallSyscall, code, a1, a2, a3, a4, a5)</c> (code in <c>rdi</c>, arguments in
    /// <c>rsi, rdx, r10, r8, r9</c>) returns the hypercall's result. The arguments travel as values; the library OS
    /// forwards codes of the user-defined range only (others get <c>-EINVAL</c>). Linux does not use the number (its
    /// system calls are numbered below 1024).
    /// </summary>
    public const uint HypercallSyscall = 0x5056;
    /// <summary>
    /// The system call number for a user-defined hypercall with a buffer: <c>syscall(HypercallBufferSyscall, code,
    /// buf, len, a3, a4, a5)</c>. The library OS copies <c>len</c> bytes (at most <see cref="MaxHypercallBuffer"/>)
    /// from the application's <c>buf</c> into guest-physically contiguous memory, makes the hypercall with that
    /// memory's guest-physical address and <c>len</c> as its first two arguments, and copies the bytes back into
    /// <c>buf</c> afterwards (the host may write results there).
    /// </summary>
    public const uint HypercallBufferSyscall = 0x5057;
    /// <summary>Largest buffer of a <see cref="HypercallBufferSyscall"/>, in bytes.</summary>
    public const uint MaxHypercallBuffer = 64 * 1024;
    /// <summary>Largest <see cref="BootModuleKind.LinuxArguments"/> module (argv and envp strings with their header), in bytes.</summary>
    public const uint MaxArgumentsSize = 128 * 1024;
}
