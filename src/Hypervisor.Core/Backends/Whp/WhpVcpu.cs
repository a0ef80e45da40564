namespace Paravirt.Hypervisor.Backends.Whp;

/// <summary>
/// Virtual processor 0 of a WHP partition. <see cref="Run"/> calls <c>WHvRunVirtualProcessor</c> into a 16-byte
/// aligned <c>WHV_RUN_VP_EXIT_CONTEXT</c> and decodes it with <see cref="WhpExitDecoder"/>. WHP leaves RIP on an
/// intercepted <c>out</c>; the interface promises that an <see cref="VcpuExitKind.IoOut"/> exit is complete, so the
/// vCPU moves RIP past it itself: in <see cref="SetRegisters(in VcpuRegisters)"/> when the VMM writes registers back (one
/// <c>WHvSetVirtualProcessorRegisters</c> for the result and RIP together), else just before the next run.
/// </summary>
/// <remarks>
/// <see cref="Interrupt"/> calls <c>WHvCancelRunVirtualProcessor</c> (the run returns
/// <c>WHvRunVpExitReasonCanceled</c>). The WHP documentation does not say whether a cancel issued while the vCPU is
/// not inside <c>WHvRunVirtualProcessor</c> is remembered, so an interrupt also sets a flag that <see cref="Run"/>
/// checks before entering the guest, and re-issues the cancel every few milliseconds until a run has reported it:
/// a kick that lands between the check and the entry is never lost. A late duplicate cancel can make one later run
/// return <see cref="VcpuExitKind.Interrupted"/> spuriously, which the runner tolerates.
/// </remarks>
[SupportedOSPlatform("windows")]
internal sealed unsafe class WhpVcpu : IVcpu
{
    private const uint VpIndex = 0;
    private static readonly int MaxRegisters = WhpRegisters.StateNames.Length;
    private const int RekickMilliseconds = 5;

    private readonly WhpPartitionHandle _partition;
    private readonly AlignedBuffer _exitContext = new(WHV_RUN_VP_EXIT_CONTEXT.Size);
    private readonly AlignedBuffer _values = new(MaxRegisters * sizeof(WHV_REGISTER_VALUE));
    private readonly Lock _sync = new();
    private readonly Timer _rekick;
    private bool _disposed;
    private int _interruptPending;
    private bool _outPending;
    private ulong _outRip;
    private ulong _resumeRip;
    private ulong _lastRip;

    private WhpVcpu(WhpPartitionHandle partition)
    {
        _partition = partition;
        _rekick = new Timer(static s => ((WhpVcpu)s!).Rekick(), this, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>Creates virtual processor 0, writes the long-mode tables into <paramref name="memory"/> and loads the start state.</summary>
    public static WhpVcpu Create(WhpPartitionHandle partition, GuestMemory memory, in VcpuStartState start)
    {
        WhpResult.ThrowIfFailed(WinHvPlatform.WHvCreateVirtualProcessor(partition, VpIndex, 0), "WHvCreateVirtualProcessor");
        var vcpu = new WhpVcpu(partition);
        try
        {
            LongModeState longMode = LongModeSetup.Write(memory);
            Span<WHV_REGISTER_NAME> names = stackalloc WHV_REGISTER_NAME[WhpRegisters.LongModeStartCount];
            Span<WHV_REGISTER_VALUE> values = vcpu._values.AsSpan<WHV_REGISTER_VALUE>(WhpRegisters.LongModeStartCount);
            int count = WhpRegisters.WriteLongModeStart(in longMode, in start, names, values);
            vcpu.SetRegisters(names[..count], "WHvSetVirtualProcessorRegisters(long mode)");
            return vcpu;
        }
        catch
        {
            vcpu.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public VcpuExit Run()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_outPending)
        {
            // The VMM did not write registers after the out: complete it by moving RIP past the instruction.
            Span<WHV_REGISTER_VALUE> rip = _values.AsSpan<WHV_REGISTER_VALUE>(1);
            rip[0] = new WHV_REGISTER_VALUE { Reg64 = _resumeRip };
            SetRegisters([WHV_REGISTER_NAME.WHvX64RegisterRip], "WHvSetVirtualProcessorRegisters(rip past out)");
            _outPending = false;
            _lastRip = _resumeRip;
        }
        if (Interlocked.Exchange(ref _interruptPending, 0) != 0)
        {
            StopRekick();
            return new VcpuExit(VcpuExitKind.Interrupted, _lastRip, RawReason: (uint)WHV_RUN_VP_EXIT_REASON.WHvRunVpExitReasonCanceled,
                Detail: "interrupted before entering the guest");
        }
        // Safe: the exit buffer is WHV_RUN_VP_EXIT_CONTEXT.Size bytes, 16-byte aligned, owned by this vCPU.
        int hr = WinHvPlatform.WHvRunVirtualProcessor(_partition, VpIndex, _exitContext.Pointer, WHV_RUN_VP_EXIT_CONTEXT.Size);
        if (!WhpResult.Succeeded(hr))
        {
            return new VcpuExit(VcpuExitKind.InternalError, _lastRip, Detail: WhpResult.Format("WHvRunVirtualProcessor", hr));
        }
        // A copy: the decoder reads a stable snapshot.
        WHV_RUN_VP_EXIT_CONTEXT context = *(WHV_RUN_VP_EXIT_CONTEXT*)_exitContext.Pointer;
        (VcpuExit exit, ulong resumeRip) = WhpExitDecoder.Decode(in context);
        _lastRip = exit.Rip;
        switch (exit.Kind)
        {
            case VcpuExitKind.IoOut when resumeRip != exit.Rip:
                _outPending = true;
                _outRip = exit.Rip;
                _resumeRip = resumeRip;
                break;
            case VcpuExitKind.Interrupted:
                Interlocked.Exchange(ref _interruptPending, 0);
                StopRekick();
                break;
        }
        return exit;
    }

    /// <inheritdoc/>
    public VcpuRegisters GetRegisters()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Span<WHV_REGISTER_VALUE> v = GetRegisters(WhpRegisters.SnapshotNames, "WHvGetVirtualProcessorRegisters(snapshot)");
        return new VcpuRegisters(
            v[0].Reg64, v[1].Reg64, v[2].Reg64, v[3].Reg64, v[4].Reg64, v[5].Reg64, v[6].Reg64, v[7].Reg64,
            v[8].Reg64, v[9].Reg64, v[10].Reg64, v[11].Reg64, v[12].Reg64, v[13].Reg64, v[14].Reg64, v[15].Reg64,
            v[16].Reg64, v[17].Reg64);
    }

    /// <inheritdoc/>
    public void SetRegisters(in VcpuRegisters registers)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ReadOnlySpan<ulong> all = [registers.Rax, registers.Rbx, registers.Rcx, registers.Rdx, registers.Rsi, registers.Rdi,
            registers.Rsp, registers.Rbp, registers.R8, registers.R9, registers.R10, registers.R11, registers.R12,
            registers.R13, registers.R14, registers.R15, registers.Rip, registers.Rflags];
        Span<WHV_REGISTER_VALUE> values = _values.AsSpan<WHV_REGISTER_VALUE>(all.Length);
        for (int i = 0; i < all.Length; i++)
        {
            values[i] = new WHV_REGISTER_VALUE { Reg64 = all[i] };
        }
        if (_outPending && registers.Rip == _outRip)
        {
            values[16] = new WHV_REGISTER_VALUE { Reg64 = _resumeRip }; // complete the out in the same call
        }
        SetRegisters(WhpRegisters.SnapshotNames, "WHvSetVirtualProcessorRegisters(registers)");
        _outPending = false;
        _lastRip = values[16].Reg64;
    }

    /// <inheritdoc/>
    public ulong? InstructionsRetired => null;

    /// <summary>No guest debugging on WHP yet (it would need <c>WHvSetPartitionProperty</c> exception exits and the debug registers).</summary>
    public IVcpuDebug? Debug => null;

    /// <inheritdoc/>
    public VcpuState GetState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        VcpuState state = WhpRegisters.ReadState(GetRegisters(WhpRegisters.StateNames, "WHvGetVirtualProcessorRegisters(state)"));
        if (_outPending)
        {
            state.Registers = state.Registers with { Rip = _resumeRip }; // the out is complete, as far as callers know
        }
        return state;
    }

    /// <inheritdoc/>
    public void SetState(VcpuState state)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(state);
        WhpRegisters.WriteState(state, _values.AsSpan<WHV_REGISTER_VALUE>(WhpRegisters.StateNames.Length));
        SetRegisters(WhpRegisters.StateNames, "WHvSetVirtualProcessorRegisters(state)");
        _outPending = false;
        _lastRip = state.Registers.Rip;
    }

    /// <summary>
    /// Not implemented on WHP (the backend does not declare <see cref="BackendCapabilities.InterruptInjection"/>):
    /// it would need <c>WHvRegisterPendingInterruption</c> and interrupt-window deliverability notifications, which
    /// cannot be verified without Windows here.
    /// </summary>
    public void RequestInterrupt(int vector) =>
        throw new NotSupportedException("the WHP backend does not inject interrupts (BackendCapabilities.InterruptInjection is not declared)");

    /// <inheritdoc/>
    public void Interrupt()
    {
        Volatile.Write(ref _interruptPending, 1);
        if (Cancel())
        {
            try
            {
                _rekick.Change(RekickMilliseconds, RekickMilliseconds);
            }
            catch (ObjectDisposedException)
            {
                // Disposed concurrently: nothing left to interrupt.
            }
        }
    }

    private void Rekick()
    {
        if (Volatile.Read(ref _interruptPending) == 0 || !Cancel())
        {
            StopRekick();
        }
    }

    /// <summary>Issues <c>WHvCancelRunVirtualProcessor</c> unless disposed; false when there is nothing to cancel any more.</summary>
    private bool Cancel()
    {
        lock (_sync)
        {
            if (_disposed)
            {
                return false;
            }
            try
            {
                // A failure leaves the flag set: Run still returns Interrupted before its next entry.
                _ = WinHvPlatform.WHvCancelRunVirtualProcessor(_partition, VpIndex, 0);
                return true;
            }
            catch (ObjectDisposedException)
            {
                return false;
            }
        }
    }

    private void StopRekick()
    {
        try
        {
            _rekick.Change(Timeout.Infinite, Timeout.Infinite);
        }
        catch (ObjectDisposedException)
        {
            // Already torn down.
        }
    }

    private Span<WHV_REGISTER_VALUE> GetRegisters(ReadOnlySpan<WHV_REGISTER_NAME> names, string what)
    {
        Span<WHV_REGISTER_VALUE> values = _values.AsSpan<WHV_REGISTER_VALUE>(names.Length);
        fixed (WHV_REGISTER_NAME* n = names)
        {
            // Safe: names.Length values fit in the 16-byte aligned buffer (AsSpan checked it).
            WhpResult.ThrowIfFailed(WinHvPlatform.WHvGetVirtualProcessorRegisters(_partition, VpIndex, n, (uint)names.Length,
                (WHV_REGISTER_VALUE*)_values.Pointer), what);
        }
        return values;
    }

    /// <summary>Writes the first <c>names.Length</c> values of the aligned buffer to the registers <paramref name="names"/>.</summary>
    private void SetRegisters(ReadOnlySpan<WHV_REGISTER_NAME> names, string what)
    {
        _ = _values.AsSpan<WHV_REGISTER_VALUE>(names.Length);
        fixed (WHV_REGISTER_NAME* n = names)
        {
            // Safe: names.Length values were written to the 16-byte aligned buffer by the caller.
            WhpResult.ThrowIfFailed(WinHvPlatform.WHvSetVirtualProcessorRegisters(_partition, VpIndex, n, (uint)names.Length,
                (WHV_REGISTER_VALUE*)_values.Pointer), what);
        }
    }

    /// <summary>Stops the re-kick timer and deletes the virtual processor (the VM then unmaps memory and deletes the partition).</summary>
    public void Dispose()
    {
        lock (_sync)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
        }
        _rekick.Dispose();
        try
        {
            // Teardown failures are not actionable; deleting the partition releases the processor anyway.
            _ = WinHvPlatform.WHvDeleteVirtualProcessor(_partition, VpIndex);
        }
        catch (ObjectDisposedException)
        {
            // The partition is already gone.
        }
        _exitContext.Dispose();
        _values.Dispose();
    }
}
