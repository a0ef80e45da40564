namespace Paravirt.Hypervisor.Memory;

/// <summary>
/// Something that keeps a view derived from guest memory (the emulator's decoded code) and must hear of host writes
/// into it: block reads, received frames, console input, state loads. <see cref="GuestMemory"/> calls every registered
/// observer for each range it hands out for writing (<see cref="GuestMemory.GetSpan"/>, <see cref="GuestMemory.Write"/>,
/// ...), before the caller writes; the observer applies the change before the guest runs on. May be called from any
/// thread, so an observer only records the range and returns.
/// </summary>
internal interface IGuestMemoryWriteObserver
{
    /// <summary>The host is writing guest-physical bytes [<paramref name="address"/>, +<paramref name="length"/>) (already range-checked).</summary>
    void OnHostWrite(ulong address, ulong length);

    /// <summary>
    /// <see cref="GuestMemory.ClearDirtyPages"/> cleared the dirty page map (a snapshot or restore, vCPUs stopped):
    /// a guest store must mark its page again before the guest runs on.
    /// </summary>
    void OnDirtyPagesCleared();
}
