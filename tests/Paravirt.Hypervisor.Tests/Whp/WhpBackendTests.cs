using Paravirt.Hypervisor.Backends.Whp;

namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>What of the WHP backend is checkable off Windows: the probe, the refusal to create, the one-VM guard and the error text.</summary>
public sealed class WhpBackendTests
{
    [Fact]
    public void Name_is_whp()
    {
        Assert.Equal("whp", new WhpBackend().Name);
        Assert.Equal("whp", WhpBackend.BackendName);
    }

    [Fact]
    public void Probe_off_windows_says_whp_needs_windows()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // covered by WhpWindowsTests there
        }
        BackendAvailability a = new WhpBackend().Probe();
        Assert.False(a.IsAvailable);
        Assert.Equal("WHP needs Windows", a.Reason);
    }

    [Fact]
    public void Create_off_windows_is_refused_with_the_probe_reason()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        using var memory = new GuestMemory(GuestMemory.MinSize);
        var e = Assert.Throws<BackendUnavailableException>(() => new WhpBackend().CreateVirtualMachine(memory, new VirtualMachineOptions()));
        Assert.Equal("WHP needs Windows", e.Message);
    }

    [Fact]
    public void Selector_reports_why_whp_was_passed_over()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        var selector = new BackendSelector([new WhpBackend()]);
        var e = Assert.Throws<BackendUnavailableException>(() => selector.Select("whp"));
        Assert.Equal("backend 'whp' is not available: WHP needs Windows", e.Message);
    }

    [Fact]
    public void Not_enabled_message_says_how_to_enable_the_feature()
    {
        Assert.StartsWith("the Windows Hypervisor Platform feature is not enabled", WhpBackend.NotEnabled, StringComparison.Ordinal);
        Assert.Contains("Enable-WindowsOptionalFeature -Online -FeatureName HypervisorPlatform", WhpBackend.NotEnabled, StringComparison.Ordinal);
        Assert.EndsWith("and reboot", WhpBackend.NotEnabled, StringComparison.Ordinal);
    }

    [Fact]
    public void Hresults_are_named_in_errors()
    {
        Assert.Equal("WHvMapGpaRange failed: 0x80070005 (E_ACCESSDENIED)", WhpResult.Format("WHvMapGpaRange", unchecked((int)0x80070005)));
        Assert.Equal("WHvCreatePartition failed: 0x80370303 (WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG): the hypervisor configuration does not support this; check that virtualization is enabled in the firmware",
            WhpResult.Format("WHvCreatePartition", unchecked((int)0x80370303)));
        Assert.StartsWith("WHvMapGpaRange failed: 0xC0370008 (ERROR_VID_PARTITION_ALREADY_EXISTS): ",
            WhpResult.Format("WHvMapGpaRange", unchecked((int)0xC0370008)), StringComparison.Ordinal);
        Assert.Equal("WHvRunVirtualProcessor failed: 0x8037FFFF", WhpResult.Format("WHvRunVirtualProcessor", unchecked((int)0x8037FFFF)));
    }

    [Theory]
    [InlineData(0x80370300u, "WHV_E_UNKNOWN_CAPABILITY")]
    [InlineData(0x80370301u, "WHV_E_INSUFFICIENT_BUFFER")]
    [InlineData(0x80370302u, "WHV_E_UNKNOWN_PROPERTY")]
    [InlineData(0x80370303u, "WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG")]
    [InlineData(0x80370304u, "WHV_E_INVALID_PARTITION_CONFIG")]
    [InlineData(0x80370305u, "WHV_E_GPA_RANGE_NOT_FOUND")]
    [InlineData(0x80370306u, "WHV_E_VP_ALREADY_EXISTS")]
    [InlineData(0x80370307u, "WHV_E_VP_DOES_NOT_EXIST")]
    [InlineData(0x80370308u, "WHV_E_INVALID_VP_STATE")]
    [InlineData(0x80370309u, "WHV_E_INVALID_VP_REGISTER_NAME")]
    [InlineData(0x80370310u, "WHV_E_UNSUPPORTED_PROCESSOR_CONFIG")]
    [InlineData(0xC0351000u, "ERROR_HV_NOT_PRESENT")]
    [InlineData(0xC0370008u, "ERROR_VID_PARTITION_ALREADY_EXISTS")]
    [InlineData(0x80070057u, "E_INVALIDARG")]
    [InlineData(0x8007000Eu, "E_OUTOFMEMORY")]
    public void Known_codes_have_their_winerror_names(uint hr, string name) => Assert.Equal(name, WhpResult.NameOf(unchecked((int)hr)));

    [Fact]
    public void Failures_throw_a_whp_exception_carrying_the_hresult()
    {
        WhpResult.ThrowIfFailed(0, "WHvSetupPartition");
        WhpResult.ThrowIfFailed(1, "WHvSetupPartition"); // S_FALSE is a success
        var e = Assert.Throws<WhpException>(() => WhpResult.ThrowIfFailed(unchecked((int)0x80070057), "WHvSetupPartition"));
        Assert.Equal(unchecked((int)0x80070057), e.HResult);
        Assert.Equal("WHvSetupPartition", e.Function);
        Assert.Equal("WHvSetupPartition failed: 0x80070057 (E_INVALIDARG)", e.Message);
    }
}

/// <summary>The process-wide one-WHP-VM guard. Not parallel with other users of the guard (only these tests and real WHP VMs take it).</summary>
[Collection(WhpProcessGuardCollection.Name)]
public sealed class WhpProcessGuardTests
{
    [Fact]
    public void A_second_concurrent_vm_is_refused_with_a_clear_message_and_the_slot_comes_back()
    {
        WhpProcessGuard.Lease first = WhpProcessGuard.Acquire();
        try
        {
            Assert.True(WhpProcessGuard.IsHeld);
            var e = Assert.Throws<BackendUnavailableException>(() => WhpProcessGuard.Acquire());
            Assert.Equal("WHP allows one running VM per process in this version of Paravirt; run the second guest in another process", e.Message);
        }
        finally
        {
            first.Dispose();
        }
        Assert.False(WhpProcessGuard.IsHeld);
        using WhpProcessGuard.Lease again = WhpProcessGuard.Acquire();
        Assert.True(WhpProcessGuard.IsHeld);
    }

    [Fact]
    public void Releasing_twice_does_not_free_another_vms_slot()
    {
        WhpProcessGuard.Lease first = WhpProcessGuard.Acquire();
        first.Dispose();
        using WhpProcessGuard.Lease second = WhpProcessGuard.Acquire();
        first.Dispose(); // a stale double dispose
        Assert.True(WhpProcessGuard.IsHeld);
        Assert.Throws<BackendUnavailableException>(() => WhpProcessGuard.Acquire());
    }
}

/// <summary>Serialises the tests that take the process-wide WHP slot.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WhpProcessGuardCollection
{
    /// <summary>The collection name.</summary>
    public const string Name = "WHP process guard";
}
