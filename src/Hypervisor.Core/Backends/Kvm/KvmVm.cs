using System.Runtime.Versioning;
using Paravirt.Hypervisor.Memory;
using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// A KVM virtual machine (rust-vmm's <c>VmFd</c>): its fd, guest memory registered as memory slot 0 at
/// guest-physical 0, and the factory of its vCPUs. Owns the <see cref="Kvm"/> system object it came from.
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed class KvmVm : IVirtualMachine
{
    /// <summary>
    /// Where <c>KVM_SET_TSS_ADDR</c> puts the three pages Intel VMX without unrestricted guest needs for real-mode
    /// emulation: the conventional address just below the 4 GiB BIOS area. Set only when guest memory ends below
    /// it (our guests start in long mode, so those pages are never used).
    /// </summary>
    internal const ulong TssAddress = 0xFFFB_D000;

    private readonly Kvm _kvm;
    private readonly KvmFd _fd;
    private readonly byte[] _cpuid;
    private readonly int _vcpuMmapSize;
    private int _vcpuCount;

    private KvmVm(Kvm kvm, KvmFd fd, GuestMemory memory)
    {
        _kvm = kvm;
        _fd = fd;
        Memory = memory;
        _cpuid = kvm.GetSupportedCpuid();
        _vcpuMmapSize = kvm.GetVcpuMmapSize();
    }

    /// <inheritdoc/>
    public GuestMemory Memory { get; }

    /// <summary>Creates a VM over <paramref name="memory"/>; takes ownership of <paramref name="kvm"/> (disposed with the VM, or on failure).</summary>
    internal static unsafe KvmVm Create(Kvm kvm, GuestMemory memory)
    {
        KvmFd? fd = null;
        try
        {
            fd = kvm.CreateVmFd();
            var vm = new KvmVm(kvm, fd, memory);
            if (kvm.CheckExtension(KVM_CAP_SET_TSS_ADDR) > 0 && memory.Size <= TssAddress)
            {
                if (fd.Ioctl(KVM_SET_TSS_ADDR, TssAddress, out int tssErrno) < 0)
                {
                    throw KvmError.Failed("KVM_SET_TSS_ADDR", tssErrno);
                }
            }
            var region = new kvm_userspace_memory_region
            {
                slot = 0,
                flags = 0,
                guest_phys_addr = 0,
                memory_size = memory.Size,
                userspace_addr = (ulong)memory.HostAddress,
            };
            // Safe: region is a local for the duration of the call; the memory it names outlives the VM (the
            // caller disposes GuestMemory after the VM, per IHypervisorBackend.CreateVirtualMachine).
            if (fd.Ioctl(KVM_SET_USER_MEMORY_REGION, &region, out int errno) < 0)
            {
                throw KvmError.Failed($"KVM_SET_USER_MEMORY_REGION ({memory.Size >> 20} MiB at guest-physical 0)", errno);
            }
            return vm;
        }
        catch
        {
            fd?.Dispose();
            kvm.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public IVcpu CreateVcpu(in VcpuStartState start)
    {
        ObjectDisposedException.ThrowIf(_fd.IsClosed, this);
        int id = _vcpuCount;
        if (_kvm.Flavor == KvmFlavor.Pvm && id >= GuestLayout.PvmMaxVcpus)
        {
            throw new BackendOperationException("KVM_CREATE_VCPU", $"KVM under PVM runs at most {GuestLayout.PvmMaxVcpus} vCPUs per VM (one PVM vCPU struct page each in the host-reserved area)");
        }
        int fd = _fd.Ioctl(KVM_CREATE_VCPU, (ulong)id, out int errno);
        if (fd < 0)
        {
            throw KvmError.Failed($"KVM_CREATE_VCPU {id}", errno);
        }
        _vcpuCount++;
        return KvmVcpu.Create(new KvmFd(fd), _vcpuMmapSize, _cpuid, Memory, start, _kvm.Flavor, id);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _fd.Dispose();
        _kvm.Dispose();
    }
}
