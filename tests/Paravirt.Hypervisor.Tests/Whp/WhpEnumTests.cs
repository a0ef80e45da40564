namespace Paravirt.Hypervisor.Tests.Whp;

/// <summary>Pins every WHP enum value the backend passes or decodes, against WinHvPlatformDefs.h (mingw-w64 10.0.0 copy; the same values are on Microsoft's WHP documentation pages).</summary>
public sealed class WhpEnumTests
{
    [Theory]
    [InlineData("WHvX64RegisterRax", 0x00)]
    [InlineData("WHvX64RegisterRcx", 0x01)]
    [InlineData("WHvX64RegisterRdx", 0x02)]
    [InlineData("WHvX64RegisterRbx", 0x03)]
    [InlineData("WHvX64RegisterRsp", 0x04)]
    [InlineData("WHvX64RegisterRbp", 0x05)]
    [InlineData("WHvX64RegisterRsi", 0x06)]
    [InlineData("WHvX64RegisterRdi", 0x07)]
    [InlineData("WHvX64RegisterR8", 0x08)]
    [InlineData("WHvX64RegisterR9", 0x09)]
    [InlineData("WHvX64RegisterR10", 0x0A)]
    [InlineData("WHvX64RegisterR11", 0x0B)]
    [InlineData("WHvX64RegisterR12", 0x0C)]
    [InlineData("WHvX64RegisterR13", 0x0D)]
    [InlineData("WHvX64RegisterR14", 0x0E)]
    [InlineData("WHvX64RegisterR15", 0x0F)]
    [InlineData("WHvX64RegisterRip", 0x10)]
    [InlineData("WHvX64RegisterRflags", 0x11)]
    [InlineData("WHvX64RegisterEs", 0x12)]
    [InlineData("WHvX64RegisterCs", 0x13)]
    [InlineData("WHvX64RegisterSs", 0x14)]
    [InlineData("WHvX64RegisterDs", 0x15)]
    [InlineData("WHvX64RegisterFs", 0x16)]
    [InlineData("WHvX64RegisterGs", 0x17)]
    [InlineData("WHvX64RegisterLdtr", 0x18)]
    [InlineData("WHvX64RegisterTr", 0x19)]
    [InlineData("WHvX64RegisterIdtr", 0x1A)]
    [InlineData("WHvX64RegisterGdtr", 0x1B)]
    [InlineData("WHvX64RegisterCr0", 0x1C)]
    [InlineData("WHvX64RegisterCr2", 0x1D)]
    [InlineData("WHvX64RegisterCr3", 0x1E)]
    [InlineData("WHvX64RegisterCr4", 0x1F)]
    [InlineData("WHvX64RegisterCr8", 0x20)]
    [InlineData("WHvX64RegisterXCr0", 0x27)]
    [InlineData("WHvX64RegisterXmm0", 0x1000)]
    [InlineData("WHvX64RegisterFpMmx0", 0x1010)]
    [InlineData("WHvX64RegisterFpControlStatus", 0x1018)]
    [InlineData("WHvX64RegisterXmmControlStatus", 0x1019)]
    [InlineData("WHvX64RegisterTsc", 0x2000)]
    [InlineData("WHvX64RegisterEfer", 0x2001)]
    [InlineData("WHvX64RegisterKernelGsBase", 0x2002)]
    [InlineData("WHvX64RegisterStar", 0x2008)]
    [InlineData("WHvX64RegisterLstar", 0x2009)]
    [InlineData("WHvX64RegisterCstar", 0x200A)]
    [InlineData("WHvX64RegisterSfmask", 0x200B)]
    [InlineData("WHvX64RegisterTscAux", 0x207B)]
    public void Register_names(string name, int value) => Assert.Equal((uint)value, (uint)Enum.Parse<WHV_REGISTER_NAME>(name));

    [Theory]
    [InlineData("WHvRunVpExitReasonNone", 0x0)]
    [InlineData("WHvRunVpExitReasonMemoryAccess", 0x1)]
    [InlineData("WHvRunVpExitReasonX64IoPortAccess", 0x2)]
    [InlineData("WHvRunVpExitReasonUnrecoverableException", 0x4)]
    [InlineData("WHvRunVpExitReasonInvalidVpRegisterValue", 0x5)]
    [InlineData("WHvRunVpExitReasonUnsupportedFeature", 0x6)]
    [InlineData("WHvRunVpExitReasonX64InterruptWindow", 0x7)]
    [InlineData("WHvRunVpExitReasonX64Halt", 0x8)]
    [InlineData("WHvRunVpExitReasonX64ApicEoi", 0x9)]
    [InlineData("WHvRunVpExitReasonSynicSintDeliverable", 0xA)]
    [InlineData("WHvRunVpExitReasonX64MsrAccess", 0x1000)]
    [InlineData("WHvRunVpExitReasonX64Cpuid", 0x1001)]
    [InlineData("WHvRunVpExitReasonException", 0x1002)]
    [InlineData("WHvRunVpExitReasonX64Rdtsc", 0x1003)]
    [InlineData("WHvRunVpExitReasonX64ApicSmiTrap", 0x1004)]
    [InlineData("WHvRunVpExitReasonHypercall", 0x1005)]
    [InlineData("WHvRunVpExitReasonX64ApicInitSipiTrap", 0x1006)]
    [InlineData("WHvRunVpExitReasonX64ApicWriteTrap", 0x1007)]
    [InlineData("WHvRunVpExitReasonCanceled", 0x2001)]
    public void Exit_reasons(string name, int value) => Assert.Equal((uint)value, (uint)Enum.Parse<WHV_RUN_VP_EXIT_REASON>(name));

    [Fact]
    public void Capability_property_and_map_codes()
    {
        Assert.Equal(0u, (uint)WHV_CAPABILITY_CODE.WHvCapabilityCodeHypervisorPresent);
        Assert.Equal(1u, (uint)WHV_CAPABILITY_CODE.WHvCapabilityCodeFeatures);
        Assert.Equal(2u, (uint)WHV_CAPABILITY_CODE.WHvCapabilityCodeExtendedVmExits);
        Assert.Equal(0x1u, (uint)WHV_PARTITION_PROPERTY_CODE.WHvPartitionPropertyCodeExtendedVmExits);
        Assert.Equal(0x1fffu, (uint)WHV_PARTITION_PROPERTY_CODE.WHvPartitionPropertyCodeProcessorCount);
        Assert.Equal(0u, (uint)WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagNone);
        Assert.Equal(1u, (uint)WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagRead);
        Assert.Equal(2u, (uint)WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagWrite);
        Assert.Equal(4u, (uint)WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagExecute);
        Assert.Equal(8u, (uint)WHV_MAP_GPA_RANGE_FLAGS.WHvMapGpaRangeFlagTrackDirtyPages);
        Assert.Equal(1u, (uint)WHV_X64_UNSUPPORTED_FEATURE_CODE.WHvUnsupportedFeatureIntercept);
        Assert.Equal(2u, (uint)WHV_X64_UNSUPPORTED_FEATURE_CODE.WHvUnsupportedFeatureTaskSwitchTss);
        Assert.Equal(0u, (uint)WHV_MEMORY_ACCESS_TYPE.WHvMemoryAccessRead);
        Assert.Equal(1u, (uint)WHV_MEMORY_ACCESS_TYPE.WHvMemoryAccessWrite);
        Assert.Equal(2u, (uint)WHV_MEMORY_ACCESS_TYPE.WHvMemoryAccessExecute);
    }
}
