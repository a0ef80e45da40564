using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>
/// A KVM virtual machine (rust-vmm's <c>VmFd</c>): its fd, guest memory registered from guest-physical 0 (one memory
/// slot, or the slots around the guard pages; with a dirty log for snapshots when asked), and the factory of its
/// vCPUs. Owns the <see cref="Kvm"/> system object it came from.
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
    private (ulong Start, ulong Size)[] _slots = [];
    private bool _logDirty;
    private ulong[] _bitmap = [];

    private KvmVm(Kvm kvm, KvmFd fd, GuestMemory memory)
    {
        _kvm = kvm;
        _fd = fd;
        Memory = memory;
        _cpuid = kvm.GetSupportedCpuid();
        _vcpuMmapSize = kvm.GetVcpuMmapSize();
    }

    /// <summary>
    /// The memory slots: all of guest memory from guest-physical 0, minus the guard pages, which stay unbacked so
    /// any access to one exits as <c>KVM_EXIT_MMIO</c> with its address (the VMM reports a stack overflow).
    /// </summary>
    internal static (ulong Start, ulong Size)[] SlotsAround(ulong memorySize, IReadOnlyList<ulong> guardPages)
    {
        var slots = new List<(ulong, ulong)>();
        ulong start = 0;
        foreach (ulong guard in guardPages.Where(g => g % 4096 == 0 && g < memorySize).Distinct().Order())
        {
            if (guard > start)
            {
                slots.Add((start, guard - start));
            }
            start = guard + 4096;
        }
        if (start < memorySize)
        {
            slots.Add((start, memorySize - start));
        }
        return [.. slots];
    }

    /// <inheritdoc/>
    public GuestMemory Memory { get; }

    /// <summary>Creates a VM over <paramref name="memory"/>; takes ownership of <paramref name="kvm"/> (disposed with the VM, or on failure).</summary>
    internal static unsafe KvmVm Create(Kvm kvm, GuestMemory memory, VirtualMachineOptions? options = null)
    {
        options ??= new VirtualMachineOptions();
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
            vm._slots = SlotsAround(memory.Size, options.GuardPages);
            vm._logDirty = options.TrackDirtyPages;
            for (int i = 0; i < vm._slots.Length; i++)
            {
                (ulong start, ulong size) = vm._slots[i];
                var region = new kvm_userspace_memory_region
                {
                    slot = (uint)i,
                    flags = options.TrackDirtyPages ? KVM_MEM_LOG_DIRTY_PAGES : 0,
                    guest_phys_addr = start,
                    memory_size = size,
                    userspace_addr = (ulong)memory.HostAddress + start,
                };
                // Safe: region is a local for the duration of the call; the memory it names outlives the VM (the
                // caller disposes GuestMemory after the VM, per IHypervisorBackend.CreateVirtualMachine).
                if (fd.Ioctl(KVM_SET_USER_MEMORY_REGION, &region, out int errno) < 0)
                {
                    throw KvmError.Failed($"KVM_SET_USER_MEMORY_REGION (slot {i}: 0x{size:x} bytes at guest-physical 0x{start:x})", errno);
                }
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

    /// <summary>
    /// <c>KVM_GET_DIRTY_LOG</c> for every slot (without manual protection, the kernel copies and clears the log and
    /// write-protects the pages again in one call), ORed into the memory's dirty page map.
    /// </summary>
    public unsafe void CollectDirtyPages()
    {
        if (!_logDirty)
        {
            return;
        }
        Span<byte> map = Memory.DirtyPageMap;
        for (int i = 0; i < _slots.Length; i++)
        {
            (ulong start, ulong size) = _slots[i];
            int pages = (int)(size >> 12);
            int words = (pages + 63) / 64;
            if (_bitmap.Length < words)
            {
                _bitmap = new ulong[words];
            }
            fixed (ulong* bits = _bitmap)
            {
                var log = new kvm_dirty_log { slot = (uint)i, dirty_bitmap = (ulong)bits };
                // Safe: the bitmap holds at least one bit per page of the slot, rounded up to 64 bits, as the kernel writes.
                if (_fd.Ioctl(KVM_GET_DIRTY_LOG, &log, out int errno) < 0)
                {
                    throw KvmError.Failed($"KVM_GET_DIRTY_LOG (slot {i})", errno);
                }
            }
            int first = (int)(start >> 12);
            for (int w = 0; w < words; w++)
            {
                ulong word = _bitmap[w];
                while (word != 0)
                {
                    int bit = System.Numerics.BitOperations.TrailingZeroCount(word);
                    word &= word - 1;
                    int page = (w * 64) + bit;
                    if (page < pages)
                    {
                        map[first + page] = 1;
                    }
                }
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _fd.Dispose();
        _kvm.Dispose();
    }
}
