namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>The <c>kvm_run</c> area of a vCPU, mapped shared from its fd, unmapped exactly once.</summary>
[SupportedOSPlatform("linux")]
internal sealed unsafe class KvmRunMapping : SafeHandle
{
    private readonly nuint _size;

    private KvmRunMapping(nint address, nuint size) : base(Libc.MAP_FAILED, ownsHandle: true)
    {
        _size = size;
        SetHandle(address);
    }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == Libc.MAP_FAILED || handle == 0;

    /// <summary>Bytes mapped (<c>KVM_GET_VCPU_MMAP_SIZE</c>): <c>kvm_run</c> and the pages after it (port I/O data).</summary>
    public ulong Size => _size;

    /// <summary>The mapped <c>kvm_run</c>. Valid while this object is undisposed.</summary>
    public kvm_run* Run => (kvm_run*)handle;

    /// <summary>Maps <paramref name="size"/> bytes of <paramref name="vcpu"/> (<c>KVM_GET_VCPU_MMAP_SIZE</c>).</summary>
    public static KvmRunMapping Map(KvmFd vcpu, int size)
    {
        if (size < sizeof(kvm_run))
        {
            throw new BackendUnavailableException($"KVM reports a vCPU mmap size of {size} bytes, smaller than struct kvm_run ({sizeof(kvm_run)})");
        }
        nint p = Libc.mmap(0, (nuint)size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, vcpu.Fd, 0);
        if (p == Libc.MAP_FAILED)
        {
            throw KvmError.Failed("mmap of the vCPU's kvm_run area", Marshal.GetLastPInvokeError());
        }
        return new KvmRunMapping(p, (nuint)size);
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => Libc.munmap(handle, _size) == 0;
}
