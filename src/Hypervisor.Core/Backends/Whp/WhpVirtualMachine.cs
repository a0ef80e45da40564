namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// One WHP partition: created with <c>WHvCreatePartition</c>, one processor (<c>WHvSetPartitionProperty</c>
/// ProcessorCount = 1), <c>WHvSetupPartition</c>, and all guest memory mapped read/write/execute at
/// guest-physical 0 with <c>WHvMapGpaRange</c>. Torn down in reverse: vCPU, <c>WHvUnmapGpaRange</c>,
/// <c>WHvDeletePartition</c> (the handle's release), then the process's WHP slot.
/// </summary>
/// <remarks>
/// No extended VM exits are enabled: Paravirt needs only I/O-port, HLT, memory-access and cancel exits, which WHP
/// always delivers. CPUID and MSR accesses are answered by the hypervisor.
/// </remarks>
[SupportedOSPlatform("windows")]
internal sealed class WhpVirtualMachine : IVirtualMachine
{
    private readonly WhpPartitionHandle _partition;
    private readonly WhpProcessGuard.Lease _lease;
    private WhpVcpu? _vcpu;
    private bool _disposed;

    private WhpVirtualMachine(GuestMemory memory, WhpPartitionHandle partition, WhpProcessGuard.Lease lease)
    {
        Memory = memory;
        _partition = partition;
        _lease = lease;
    }

    /// <inheritdoc/>
    public GuestMemory Memory { get; }

    /// <summary>Creates the partition and maps <paramref name="memory"/>; failures become <see cref="BackendUnavailableException"/> naming the WHP call and code.</summary>
    public static unsafe WhpVirtualMachine Create(GuestMemory memory)
    {
        WhpProcessGuard.Lease lease = WhpProcessGuard.Acquire();
        WhpPartitionHandle? partition = null;
        bool ok = false;
        try
        {
            WhpResult.ThrowIfFailed(WinHvPlatform.WHvCreatePartition(out partition), "WHvCreatePartition");

            // WHV_PARTITION_PROPERTY is a 48-byte union; ProcessorCount (UINT32) is at offset 0.
            byte* property = stackalloc byte[WhpUnionSizes.WHV_PARTITION_PROPERTY];
            var span = new Span<byte>(property, WhpUnionSizes.WHV_PARTITION_PROPERTY);
            span.Clear();
            *(uint*)property = 1;
            // Safe: the buffer is WHV_PARTITION_PROPERTY-sized stack memory and its size is passed with it.
            WhpResult.ThrowIfFailed(WinHvPlatform.WHvSetPartitionProperty(partition,
                WHV_PARTITION_PROPERTY_CODE.WHvPartitionPropertyCodeProcessorCount, property, WhpUnionSizes.WHV_PARTITION_PROPERTY),
                "WHvSetPartitionProperty(ProcessorCount)");

            WhpResult.ThrowIfFailed(WinHvPlatform.WHvSetupPartition(partition), "WHvSetupPartition");

            // Safe: GuestMemory's host range [HostAddress, HostAddress + Size) is page aligned and outlives the VM
            // (the caller disposes it after the VM), and Dispose unmaps it before the partition is deleted.
            int hr = WinHvPlatform.WHvMapGpaRange(partition, memory.HostAddress, 0, memory.Size,
                WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagRead | WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagWrite |
                WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagExecute);
            if (hr == WhpResult.ERROR_VID_PARTITION_ALREADY_EXISTS)
            {
                // Another partition in this process (not one of ours: the guard would have refused) maps memory.
                throw new BackendUnavailableException($"{WhpProcessGuard.OneVmPerProcess} ({WhpResult.Format("WHvMapGpaRange", hr)})");
            }
            WhpResult.ThrowIfFailed(hr, "WHvMapGpaRange");

            var vm = new WhpVirtualMachine(memory, partition, lease);
            ok = true;
            return vm;
        }
        catch (WhpException e)
        {
            throw new BackendUnavailableException($"WHP could not create the VM: {e.Message}", e);
        }
        finally
        {
            if (!ok)
            {
                partition?.Dispose();
                lease.Dispose();
            }
        }
    }

    /// <inheritdoc/>
    /// <exception cref="BackendUnavailableException">WHP refused the processor or its start state; the message names the call and code.</exception>
    public IVcpu CreateVcpu(in VcpuStartState start)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_vcpu is not null)
        {
            throw new InvalidOperationException("a WHP VM of Paravirt has one vCPU (ProcessorCount = 1)");
        }
        try
        {
            _vcpu = WhpVcpu.Create(_partition, Memory, start);
        }
        catch (WhpException e)
        {
            throw new BackendUnavailableException($"WHP could not create the vCPU: {e.Message}", e);
        }
        return _vcpu;
    }

    /// <summary>Deletes the vCPU, unmaps guest memory, deletes the partition and frees the process's WHP slot.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _vcpu?.Dispose();
        try
        {
            // Teardown failures are not actionable; the partition's deletion below releases the mapping anyway.
            _ = WinHvPlatform.WHvUnmapGpaRange(_partition, 0, Memory.Size);
        }
        finally
        {
            _partition.Dispose();
            _lease.Dispose();
        }
    }
}
