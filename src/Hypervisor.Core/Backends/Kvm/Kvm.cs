using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// The KVM system object: an open <c>/dev/kvm</c>. Answers system ioctls (API version, capabilities, vCPU mmap size,
/// supported CPUID) and creates VMs (<see cref="KvmVm"/>), as rust-vmm's <c>Kvm</c>.
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed class Kvm : IDisposable
{
    /// <summary>The KVM device node.</summary>
    internal const string DevicePath = "/dev/kvm";

    private readonly KvmFd _fd;

    private Kvm(KvmFd fd) => _fd = fd;

    /// <summary>Hardware virtualization, or PVM (<see cref="KvmPvm"/>).</summary>
    internal KvmFlavor Flavor { get; private init; }

    /// <summary>Opens <c>/dev/kvm</c> and checks what the backend needs; on failure returns null and says why in <paramref name="reason"/>.</summary>
    internal static Kvm? TryOpen(out string reason)
    {
        if (!OperatingSystem.IsLinux())
        {
            reason = "KVM needs Linux";
            return null;
        }
        int fd = Libc.open(DevicePath, Libc.O_RDWR | Libc.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            reason = errno switch
            {
                Libc.ENOENT => $"{DevicePath} does not exist: this machine has no hardware virtualization or the kvm module is not loaded (modprobe kvm_intel or kvm_amd), or use --backend emulator",
                Libc.EACCES or Libc.EPERM => $"permission denied opening {DevicePath}: add your user to the 'kvm' group (sudo usermod -aG kvm $USER) and log in again",
                _ => $"cannot open {DevicePath}: {Marshal.GetPInvokeErrorMessage(errno)}",
            };
            return null;
        }
        var kvm = new Kvm(new KvmFd(fd)) { Flavor = KvmPvm.ServesDevKvm() ? KvmFlavor.Pvm : KvmFlavor.Hardware };
        string? missing = kvm.CheckRequirements() ?? (kvm.Flavor == KvmFlavor.Pvm ? KvmPvm.CheckInterface(kvm) : null);
        if (missing is not null)
        {
            kvm.Dispose();
            reason = missing;
            return null;
        }
        reason = kvm.Flavor == KvmFlavor.Pvm
            ? $"kvm (pvm): KVM API {ApiVersion} on {DevicePath} from {KvmPvm.Module} (PVM, no hardware virtualization): guests run natively after a PVM bootstrap, exits cost tens of microseconds"
            : $"KVM API {ApiVersion} on {DevicePath} (user memory, sync regs, immediate exit)";
        return kvm;
    }

    /// <summary>Opens <c>/dev/kvm</c>; throws <see cref="BackendUnavailableException"/> with the reason when it cannot be used.</summary>
    internal static Kvm Open() => TryOpen(out string reason) ?? throw new BackendUnavailableException($"KVM is not available: {reason}");

    private string? CheckRequirements()
    {
        int api = GetApiVersion();
        if (api != ApiVersion)
        {
            return $"{DevicePath} reports KVM API version {api}; this backend needs version {ApiVersion}";
        }
        if (CheckExtension(KVM_CAP_USER_MEMORY) <= 0)
        {
            return "this kernel's KVM lacks KVM_CAP_USER_MEMORY (KVM_SET_USER_MEMORY_REGION)";
        }
        if ((CheckExtension(KVM_CAP_SYNC_REGS) & (int)KVM_SYNC_X86_REGS) == 0)
        {
            return "this kernel's KVM lacks KVM_CAP_SYNC_REGS with KVM_SYNC_X86_REGS (Linux 4.17 or later is needed)";
        }
        if (CheckExtension(KVM_CAP_IMMEDIATE_EXIT) <= 0)
        {
            return "this kernel's KVM lacks KVM_CAP_IMMEDIATE_EXIT (Linux 4.11 or later is needed)";
        }
        if (CheckExtension(KVM_CAP_EXT_CPUID) <= 0)
        {
            return "this kernel's KVM lacks KVM_CAP_EXT_CPUID (KVM_GET_SUPPORTED_CPUID)";
        }
        return null;
    }

    /// <summary><c>KVM_GET_API_VERSION</c> (or -1 when the ioctl fails).</summary>
    internal int GetApiVersion() => _fd.Ioctl(KVM_GET_API_VERSION, out _);

    /// <summary><c>KVM_CHECK_EXTENSION</c>: 0 when <paramref name="capability"/> is absent, otherwise a positive capability-specific value.</summary>
    internal int CheckExtension(int capability)
    {
        int r = _fd.Ioctl(KVM_CHECK_EXTENSION, (ulong)capability, out _);
        return r < 0 ? 0 : r;
    }

    /// <summary><c>KVM_GET_VCPU_MMAP_SIZE</c>: bytes to map from each vCPU fd (the <c>kvm_run</c> area).</summary>
    internal int GetVcpuMmapSize()
    {
        int r = _fd.Ioctl(KVM_GET_VCPU_MMAP_SIZE, out int errno);
        return r > 0 ? r : throw KvmError.Unavailable("KVM_GET_VCPU_MMAP_SIZE", errno);
    }

    /// <summary><c>KVM_GET_SUPPORTED_CPUID</c>: the CPUID entries KVM can expose, as a <c>kvm_cpuid2</c> block ready for <c>KVM_SET_CPUID2</c>.</summary>
    internal unsafe byte[] GetSupportedCpuid()
    {
        int headerSize = sizeof(kvm_cpuid2), entrySize = sizeof(kvm_cpuid_entry2);
        byte[] block = new byte[headerSize + MaxCpuidEntries * entrySize];
        fixed (byte* p = block)
        {
            // Safe: block holds the header plus MaxCpuidEntries entries, which is what nent tells the kernel.
            ((kvm_cpuid2*)p)->nent = MaxCpuidEntries;
            if (_fd.Ioctl(KVM_GET_SUPPORTED_CPUID, p, out int errno) < 0)
            {
                throw KvmError.Unavailable("KVM_GET_SUPPORTED_CPUID", errno);
            }
            uint n = ((kvm_cpuid2*)p)->nent;
            return block.AsSpan(0, headerSize + (int)Math.Min(n, (uint)MaxCpuidEntries) * entrySize).ToArray();
        }
    }

    /// <summary><c>KVM_CREATE_VM</c> (default machine type).</summary>
    internal KvmFd CreateVmFd()
    {
        int fd = _fd.Ioctl(KVM_CREATE_VM, 0UL, out int errno);
        return fd >= 0 ? new KvmFd(fd) : throw KvmError.Failed("KVM_CREATE_VM", errno);
    }

    /// <inheritdoc/>
    public void Dispose() => _fd.Dispose();
}

/// <summary>Builds the one-line errors of the KVM backend.</summary>
internal static class KvmError
{
    /// <summary>An ioctl that tells whether KVM can be used here failed: the backend is unavailable.</summary>
    internal static BackendUnavailableException Unavailable(string what, int errno) =>
        new($"KVM {what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");

    /// <summary>An ioctl on a VM or vCPU failed: KVM is there, but this operation did not work.</summary>
    internal static BackendOperationException Failed(string what, int errno) =>
        new(what, $"KVM {what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);
}
