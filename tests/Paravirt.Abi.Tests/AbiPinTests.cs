using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Paravirt.Abi.Tests;

/// <summary>
/// Tripwires: every code, constant, size and offset of the ABI is written here as a literal. Changing any of them
/// fails a test; adding a member fails too until it is pinned here. Codes are append-only: pin the new value,
/// never change an old one (bump the ABI major if you truly must).
/// </summary>
public sealed class AbiPinTests
{
    private static readonly Assembly AbiAssembly = typeof(AbiExportAttribute).Assembly;

    public static TheoryData<Type, (string Name, object Value)[]> EnumPins => new()
    {
        {
            typeof(HypercallCode),
            [
                ("Version", 0x0000u), ("Features", 0x0001u), ("Exit", 0x0002u), ("DebugWrite", 0x0003u),
                ("ClockMonotonic", 0x0004u), ("ClockWall", 0x0005u), ("Poll", 0x0006u), ("AcceptFeatures", 0x0007u),
                ("Yield", 0x0008u), ("DeviceInfo", 0x0009u), ("Random", 0x000Au), ("SyscallUnimplemented", 0x000Bu), ("ExitSignal", 0x000Cu), ("Panic", 0x0010u), ("TimerSet", 0x0011u), ("ConsoleWrite", 0x0100u), ("ConsoleAttach", 0x0101u),
                ("BlockAttach", 0x0200u), ("NetAttach", 0x0300u), ("EventSend", 0x0400u),
                ("SandboxReady", 0x0500u), ("SandboxReturn", 0x0501u), ("HostCall", 0x0502u),
                ("DeviceDescribe", 0x0600u), ("DeviceConfig", 0x0601u), ("DeviceAttach", 0x0602u), ("DeviceReset", 0x0603u),
            ]
        },
        {
            typeof(HypercallStatus),
            [
                ("Ok", 0L), ("PermissionDenied", -1L), ("NotFound", -2L), ("IoError", -5L), ("TooBig", -7L),
                ("BadHandle", -9L), ("TryAgain", -11L), ("NoMemory", -12L), ("Fault", -14L), ("Busy", -16L),
                ("Exists", -17L), ("NoDevice", -19L), ("Invalid", -22L), ("NoSpace", -28L), ("ReadOnly", -30L),
                ("Broken", -32L), ("OutOfRange", -34L), ("NotImplemented", -38L), ("Protocol", -71L), ("TimedOut", -110L),
                ("HostFunctionFailed", -121L),
            ]
        },
        {
            typeof(FeatureBits),
            [("None", 0UL), ("Console", 1UL), ("WallClock", 2UL), ("Poll", 4UL), ("Devices", 8UL), ("ConsoleEndOfInput", 16UL), ("Entropy", 32UL), ("Sandbox", 64UL), ("DeviceModel", 0x80UL), ("Timer", 0x200UL)]
        },
        {
            typeof(DeviceKind),
            [("None", 0u), ("Console", 1u), ("Block", 2u), ("Net", 3u)]
        },
        {
            typeof(DeviceFlags),
            [("None", 0u), ("ReadOnly", 1u), ("Broken", 2u)]
        },
        {
            typeof(BlockOperation),
            [("Read", 0u), ("Write", 1u), ("Flush", 2u), ("Discard", 3u)]
        },
        {
            typeof(ConsoleInputFlags),
            [("None", 0u), ("EndOfInput", 1u)]
        },
        {
            typeof(BootModuleKind),
            [("None", 0u), ("LinuxExecutable", 1u), ("LinuxArguments", 2u)]
        },
        {
            typeof(SandboxDeclarationKind),
            [("None", 0u), ("Function", 1u), ("StackGuard", 2u)]
        },
    };

    [Theory]
    [MemberData(nameof(EnumPins))]
    public void EnumMembers_ArePinned(Type enumType, (string Name, object Value)[] expected)
    {
        var actual = enumType.GetFields(BindingFlags.Public | BindingFlags.Static)
            .ToDictionary(f => f.Name, f => f.GetRawConstantValue()!);
        AssertPinned(enumType, expected, actual);
    }

    /// <summary>
    /// <paramref name="actual"/> (a type's public constants by name) holds exactly the pinned names with the pinned
    /// values, of the pinned types: an ABI code or constant is never removed, renumbered or retyped.
    /// </summary>
    private static void AssertPinned(Type type, (string Name, object Value)[] expected, Dictionary<string, object> actual)
    {
        Assert.Equal(expected.Length, actual.Count);
        foreach ((string name, object value) in expected)
        {
            Assert.True(actual.TryGetValue(name, out object? v), $"{type.Name}.{name} is missing (codes are never removed)");
            Assert.True(value.Equals(v), $"{type.Name}.{name} is {v} ({v?.GetType().Name}), pinned {value} ({value.GetType().Name}) (codes are never renumbered)");
        }
    }

    [Fact]
    public void EnumUnderlyingTypes_ArePinned()
    {
        Assert.Equal(typeof(uint), Enum.GetUnderlyingType(typeof(HypercallCode)));
        Assert.Equal(typeof(long), Enum.GetUnderlyingType(typeof(HypercallStatus)));
        Assert.Equal(typeof(ulong), Enum.GetUnderlyingType(typeof(FeatureBits)));
        Assert.Equal(typeof(uint), Enum.GetUnderlyingType(typeof(DeviceKind)));
        Assert.Equal(typeof(uint), Enum.GetUnderlyingType(typeof(DeviceFlags)));
        Assert.Equal(typeof(uint), Enum.GetUnderlyingType(typeof(BlockOperation)));
        Assert.Equal(typeof(uint), Enum.GetUnderlyingType(typeof(ConsoleInputFlags)));
        Assert.Equal(typeof(uint), Enum.GetUnderlyingType(typeof(BootModuleKind)));
        Assert.Equal(typeof(uint), Enum.GetUnderlyingType(typeof(SandboxDeclarationKind)));
    }

    [Fact]
    public void ExportedEnums_HaveUniqueValues()
    {
        foreach (Type t in AbiAssembly.GetTypes().Where(t => t.IsEnum && t.IsDefined(typeof(AbiExportAttribute))))
        {
            var dupes = t.GetFields(BindingFlags.Public | BindingFlags.Static)
                .GroupBy(f => Convert.ToString(f.GetRawConstantValue(), System.Globalization.CultureInfo.InvariantCulture))
                .Where(g => g.Count() > 1)
                .Select(g => $"{string.Join("/", g.Select(f => f.Name))} = {g.Key}")
                .ToList();
            Assert.True(dupes.Count == 0, $"{t.Name} reuses values (append-only, never reuse): {string.Join(", ", dupes)}");
        }
    }

    [Fact]
    public void FeatureBits_AreSingleBits()
    {
        foreach (FeatureBits f in Enum.GetValues<FeatureBits>().Where(f => f != FeatureBits.None))
        {
            Assert.True(ulong.IsPow2((ulong)f), $"FeatureBits.{f} is not a single bit");
        }
    }

    [Fact]
    public void HypercallCodes_AreGroupedOutsideTheUserRange()
    {
        foreach (HypercallCode c in Enum.GetValues<HypercallCode>())
        {
            Assert.False(HypercallRanges.IsUserDefined((uint)c), $"{c} lies in the user-defined range");
        }
    }

    public static TheoryData<Type, (string Name, object Value)[]> ConstantPins => new()
    {
        { typeof(AbiVersionConstants), [("Major", (ushort)1), ("Minor", (ushort)1)] },
        {
            typeof(HypercallPage),
            [
                ("Size", 0x1000u), ("EntryOffset", 0u), ("EntryMaxSize", 0x20u), ("MagicOffset", 0xFF8u),
                ("VersionOffset", 0xFFCu), ("Magic", 0x43485650u), ("IoPort", 0xE2u),
            ]
        },
        { typeof(HypercallRanges), [("UserFirst", 0x1000u), ("UserLast", 0x1FFFu)] },
        { typeof(ElfNote), [("Name", "Paravirt"), ("TypeAbi", 1u), ("TypeManifest", 2u), ("TypeSandbox", 3u), ("ManifestMaxEntries", 64u)] },
        {
            typeof(SandboxConstants),
            [("NameMax", 47u), ("MaxFunctions", 256u), ("MinCallBuffer", 4096u), ("MaxCallBuffer", 0x100_0000u), ("GuardPageSize", 4096u)]
        },
        { typeof(EntryConvention), [("ImageMinAddress", 0x10_0000UL), ("PageSize", 0x1000UL)] },
        { typeof(HypercallConvention), [("CodeRegister", "rax"), ("ResultRegister", "rax"), ("MaxArguments", 5)] },
        { typeof(BootInfo), [("CurrentSize", 80)] },
        { typeof(LinuxConstants), [("HypercallSyscall", 0x5056u), ("HypercallBufferSyscall", 0x5057u), ("MaxHypercallBuffer", 0x1_0000u), ("MaxArgumentsSize", 0x2_0000u)] },
        { typeof(DeviceTypes), [("UserFirst", 0x10000u), ("MaxQueues", 8u), ("MaxConfigSize", 256u)] },
        { typeof(RingConstants), [("HeaderSize", 64u), ("MaxOrder", 8u), ("EventPorts", 64u)] },
        { typeof(BlockConstants), [("SectorSize", 512u), ("SlotSize", 64u), ("MaxTransfer", 0x10_0000u)] },
        { typeof(NetConstants), [("SlotSize", 32u), ("DefaultMtu", 1500u), ("EthernetHeader", 14u), ("MaxFrame", 9014u)] },
        {
            typeof(ConsoleInterface),
            [
                ("OutProdOffset", 0u), ("OutConsOffset", 4u), ("InProdOffset", 8u), ("InConsOffset", 12u),
                ("InFlagsOffset", 16u), ("OutOffset", 64u), ("OutSize", 2048u), ("InOffset", 2112u), ("InSize", 1024u), ("Size", 3136u),
            ]
        },
        { typeof(PanicConstants), [("MaxMessageLength", 4096u), ("NoVector", 0xFFFF_FFFFu), ("MinFrameSize", 168u)] },
    };

    [Theory]
    [MemberData(nameof(ConstantPins))]
    public void Constants_ArePinned(Type type, (string Name, object Value)[] expected)
    {
        var actual = type.GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral)
            .ToDictionary(f => f.Name, f => f.GetRawConstantValue()!);
        AssertPinned(type, expected, actual);
    }

    [Fact]
    public void ArgumentRegisters_ArePinned()
    {
        Assert.Equal(["rdi", "rsi", "rdx", "r10", "r8"], HypercallConvention.ArgumentRegisters);
    }

    [Fact]
    public void ExportedTypes_ArePinned()
    {
        var actual = AbiAssembly.GetTypes()
            .Select(t => (t.Name, Attr: t.GetCustomAttribute<AbiExportAttribute>()))
            .Where(x => x.Attr is not null)
            .ToDictionary(x => x.Name, x => x.Attr!.CName);
        var expected = new Dictionary<string, string>
        {
            ["AbiVersionConstants"] = "PV_ABI_VERSION",
            ["BootInfo"] = "pv_boot_info",
            ["ConsoleInputFlags"] = "pv_console_in_flags",
            ["FeatureBits"] = "pv_feature0",
            ["ElfNote"] = "PV_NOTE",
            ["AbiNote"] = "pv_abi_note",
            ["ManifestHeader"] = "pv_manifest_header",
            ["ManifestEntry"] = "pv_manifest_entry",
            ["DeviceKind"] = "pv_device_kind",
            ["HypercallCode"] = "pv_hypercall",
            ["HypercallRanges"] = "PV_HYPERCALL_RANGE",
            ["EntryConvention"] = "PV_ENTRY",
            ["HypercallPage"] = "PV_HYPERCALL_PAGE",
            ["HypercallStatus"] = "pv_status",
            ["DeviceInfo"] = "pv_device_info",
            ["DeviceFlags"] = "pv_device_flags",
            ["DeviceDescriptor"] = "pv_device_desc",
            ["QueueDescriptor"] = "pv_queue_desc",
            ["DeviceTypes"] = "PV_DEVICE_TYPE",
            ["BlockConfig"] = "pv_block_config",
            ["NetConfig"] = "pv_net_config",
            ["RingHeader"] = "pv_ring_header",
            ["RingConstants"] = "PV_RING",
            ["BlockConstants"] = "PV_BLOCK",
            ["BlockOperation"] = "pv_block_op",
            ["BlockRequest"] = "pv_block_request",
            ["BlockResponse"] = "pv_block_response",
            ["NetConstants"] = "PV_NET",
            ["NetTxRequest"] = "pv_net_tx_request",
            ["NetTxResponse"] = "pv_net_tx_response",
            ["NetRxRequest"] = "pv_net_rx_request",
            ["NetRxResponse"] = "pv_net_rx_response",
            ["ConsoleInterface"] = "PV_CONSOLE",
            ["BootModule"] = "pv_boot_module",
            ["BootModuleKind"] = "pv_boot_module_kind",
            ["LinuxArgumentsHeader"] = "pv_linux_args",
            ["LinuxConstants"] = "PV_LINUX",
            ["SandboxConstants"] = "PV_SANDBOX",
            ["SandboxDeclarationKind"] = "pv_sandbox_decl_kind",
            ["SandboxDeclaration"] = "pv_sandbox_decl",
            ["PanicFrame"] = "pv_panic_frame",
            ["PanicConstants"] = "PV_PANIC",
        };
        Assert.Equal(expected.OrderBy(kv => kv.Key), actual.OrderBy(kv => kv.Key));
    }

    public static TheoryData<Type, int, (string Field, int Offset)[]> StructPins => new()
    {
        {
            typeof(BootInfo), 80,
            [
                ("Size", 0), ("AbiMajor", 4), ("AbiMinor", 6), ("HypercallPage", 8), ("MemorySize", 16),
                ("HeapStart", 24), ("CommandLine", 32), ("CommandLineLength", 40), ("VcpuCount", 44),
                ("Features0", 48), ("Reserved0", 56), ("BootModules", 64), ("BootModuleCount", 72), ("Reserved1", 76),
            ]
        },
        { typeof(BootModule), 32, [("Kind", 0), ("Flags", 4), ("Address", 8), ("Size", 16), ("Reserved", 24)] },
        { typeof(LinuxArgumentsHeader), 8, [("Argc", 0), ("Envc", 4)] },
        { typeof(AbiNote), 8, [("AbiMajor", 0), ("AbiMinor", 2), ("Flags", 4)] },
        { typeof(ManifestHeader), 8, [("Count", 0), ("Reserved", 4)] },
        { typeof(ManifestEntry), 32, [("Kind", 0), ("Flags", 4), ("Name", 8)] },
        {
            typeof(DeviceInfo), 64,
            [
                ("Kind", 0), ("Flags", 4), ("Name", 8), ("Sectors", 32), ("SectorSize", 40), ("Mtu", 44), ("Mac", 48),
                ("MaxRingOrder", 54), ("Reserved", 56),
            ]
        },
        {
            typeof(DeviceDescriptor), 64,
            [
                ("Type", 0), ("Version", 4), ("Flags", 8), ("QueueCount", 12), ("MaxRingOrder", 14), ("ConfigSize", 16),
                ("Reserved0", 20), ("Name", 24), ("Reserved1", 48), ("Reserved2", 56),
            ]
        },
        { typeof(QueueDescriptor), 16, [("Address", 0), ("Order", 8), ("Port", 12)] },
        { typeof(BlockConfig), 16, [("Sectors", 0), ("SectorSize", 8), ("Reserved", 12)] },
        { typeof(NetConfig), 16, [("Mac", 0), ("Reserved0", 6), ("Mtu", 8), ("Reserved1", 12)] },
        { typeof(RingHeader), 64, [("ReqProd", 0), ("ReqEvent", 4), ("RspProd", 8), ("RspEvent", 12), ("Reserved", 16)] },
        {
            typeof(BlockRequest), 64,
            [
                ("Id", 0), ("Operation", 8), ("Flags", 12), ("Sector", 16), ("Buffer", 24), ("Length", 32),
                ("Reserved0", 36), ("Reserved1", 40), ("Reserved2", 48), ("Reserved3", 56),
            ]
        },
        { typeof(BlockResponse), 64, [("Id", 0), ("Status", 8), ("Length", 16), ("Reserved0", 20)] },
        { typeof(NetTxRequest), 32, [("Id", 0), ("Buffer", 8), ("Length", 16), ("Flags", 20), ("Reserved", 24)] },
        { typeof(NetTxResponse), 32, [("Id", 0), ("Status", 8)] },
        { typeof(NetRxRequest), 32, [("Id", 0), ("Buffer", 8), ("Capacity", 16), ("Reserved0", 20), ("Reserved1", 24)] },
        { typeof(NetRxResponse), 32, [("Id", 0), ("Status", 8), ("Length", 16), ("Reserved", 20)] },
        { typeof(SandboxDeclaration), 64, [("Kind", 0), ("Flags", 4), ("Address", 8), ("Name", 16)] },
        {
            typeof(PanicFrame), 176,
            [
                ("Size", 0), ("Signal", 4), ("Vector", 8), ("ErrorCode", 12), ("FaultAddress", 16), ("Rax", 24), ("Rbx", 32),
                ("Rcx", 40), ("Rdx", 48), ("Rsi", 56), ("Rdi", 64), ("Rsp", 72), ("Rbp", 80), ("R8", 88), ("R9", 96),
                ("R10", 104), ("R11", 112), ("R12", 120), ("R13", 128), ("R14", 136), ("R15", 144), ("Rip", 152),
                ("Rflags", 160), ("Reserved", 168),
            ]
        },
    };

    [Theory]
    [MemberData(nameof(StructPins))]
    public void StructLayouts_ArePinned(Type type, int size, (string Field, int Offset)[] fields)
    {
        Assert.Equal(size, Marshal.SizeOf(type));
        Assert.Equal(size, (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(type).Invoke(null, null)!);
        var actual = type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).Select(f => f.Name).ToHashSet();
        Assert.Equal(fields.Select(f => f.Field).ToHashSet(), actual);
        foreach ((string field, int offset) in fields)
        {
            Assert.True(offset == (int)Marshal.OffsetOf(type, field), $"{type.Name}.{field} is at {(int)Marshal.OffsetOf(type, field)}, pinned {offset}");
        }
    }

    [Fact]
    public void StructFieldTypes_ArePinned()
    {
        Assert.Equal(typeof(uint), typeof(BootInfo).GetField("Size")!.FieldType);
        Assert.Equal(typeof(ushort), typeof(BootInfo).GetField("AbiMajor")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(BootInfo).GetField("HypercallPage")!.FieldType);
        Assert.Equal(typeof(uint), typeof(BootInfo).GetField("CommandLineLength")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(BootInfo).GetField("Features0")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(BootInfo).GetField("BootModules")!.FieldType);
        Assert.Equal(typeof(uint), typeof(BootInfo).GetField("BootModuleCount")!.FieldType);
        Assert.Equal(typeof(uint), typeof(BootModule).GetField("Kind")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(BootModule).GetField("Address")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(BootModule).GetField("Size")!.FieldType);
        Assert.Equal(typeof(uint), typeof(LinuxArgumentsHeader).GetField("Argc")!.FieldType);
        Assert.Equal(typeof(uint), typeof(LinuxArgumentsHeader).GetField("Envc")!.FieldType);
        Assert.Equal(typeof(ushort), typeof(AbiNote).GetField("AbiMinor")!.FieldType);
        Assert.Equal(typeof(uint), typeof(ManifestEntry).GetField("Kind")!.FieldType);
        FixedBufferAttribute name = typeof(ManifestEntry).GetField("Name")!.GetCustomAttribute<FixedBufferAttribute>()!;
        Assert.Equal(typeof(byte), name.ElementType);
        Assert.Equal(24, name.Length);

        Assert.Equal(typeof(uint), typeof(DeviceInfo).GetField("Kind")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(DeviceInfo).GetField("Sectors")!.FieldType);
        Assert.Equal(typeof(uint), typeof(DeviceInfo).GetField("Mtu")!.FieldType);
        Assert.Equal(typeof(ushort), typeof(DeviceInfo).GetField("MaxRingOrder")!.FieldType);
        Assert.Equal((typeof(byte), 24), FixedBuffer(typeof(DeviceInfo), "Name"));
        Assert.Equal((typeof(byte), 6), FixedBuffer(typeof(DeviceInfo), "Mac"));
        Assert.Equal((typeof(byte), 48), FixedBuffer(typeof(RingHeader), "Reserved"));
        foreach (string f in new[] { "ReqProd", "ReqEvent", "RspProd", "RspEvent" })
        {
            Assert.Equal(typeof(uint), typeof(RingHeader).GetField(f)!.FieldType);
        }
        Assert.Equal(typeof(ulong), typeof(BlockRequest).GetField("Id")!.FieldType);
        Assert.Equal(typeof(uint), typeof(BlockRequest).GetField("Operation")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(BlockRequest).GetField("Sector")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(BlockRequest).GetField("Buffer")!.FieldType);
        Assert.Equal(typeof(uint), typeof(BlockRequest).GetField("Length")!.FieldType);
        Assert.Equal(typeof(long), typeof(BlockResponse).GetField("Status")!.FieldType);
        Assert.Equal(typeof(uint), typeof(BlockResponse).GetField("Length")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(NetTxRequest).GetField("Buffer")!.FieldType);
        Assert.Equal(typeof(uint), typeof(NetTxRequest).GetField("Length")!.FieldType);
        Assert.Equal(typeof(long), typeof(NetTxResponse).GetField("Status")!.FieldType);
        Assert.Equal(typeof(uint), typeof(NetRxRequest).GetField("Capacity")!.FieldType);
        Assert.Equal(typeof(long), typeof(NetRxResponse).GetField("Status")!.FieldType);
        Assert.Equal(typeof(uint), typeof(NetRxResponse).GetField("Length")!.FieldType);
        Assert.Equal(typeof(uint), typeof(SandboxDeclaration).GetField("Kind")!.FieldType);
        Assert.Equal(typeof(uint), typeof(SandboxDeclaration).GetField("Flags")!.FieldType);
        Assert.Equal(typeof(ulong), typeof(SandboxDeclaration).GetField("Address")!.FieldType);
        Assert.Equal((typeof(byte), 48), FixedBuffer(typeof(SandboxDeclaration), "Name"));
    }

    private static (Type, int) FixedBuffer(Type type, string field)
    {
        FixedBufferAttribute a = type.GetField(field)!.GetCustomAttribute<FixedBufferAttribute>()!;
        return (a.ElementType, a.Length);
    }

    [Fact]
    public void BootInfoCurrentSize_MatchesLayout()
    {
        Assert.Equal(BootInfo.CurrentSize, Unsafe.SizeOf<BootInfo>());
    }

    [Theory]
    [InlineData(1, 0, 1, 0)]
    [InlineData(1, 2, 1, 0)]
    [InlineData(1, 2, 1, 2)]
    [InlineData(7, 65535, 7, 65535)]
    public void AbiVersion_HostRunsSameMajorAndOlderOrEqualMinor(ushort hostMajor, ushort hostMinor, ushort guestMajor, ushort guestMinor)
    {
        var host = new AbiVersion(hostMajor, hostMinor);
        var guest = new AbiVersion(guestMajor, guestMinor);
        Assert.True(host.CanRun(guest));
        Assert.False(host.TryExplainRefusal(guest, out string? reason));
        Assert.Null(reason);
    }

    [Fact]
    public void AbiVersion_RefusesNewerMinorAndOtherMajorWithDistinctMessages()
    {
        var host = new AbiVersion(1, 2);

        Assert.False(host.CanRun(new AbiVersion(1, 3)));
        Assert.True(host.TryExplainRefusal(new AbiVersion(1, 3), out string? newerMinor));
        Assert.Contains("1.3", newerMinor, StringComparison.Ordinal);
        Assert.Contains("newer", newerMinor, StringComparison.Ordinal);

        Assert.False(host.CanRun(new AbiVersion(2, 0)));
        Assert.True(host.TryExplainRefusal(new AbiVersion(2, 0), out string? newerMajor));
        Assert.Contains("major versions must match", newerMajor, StringComparison.Ordinal);

        Assert.False(host.CanRun(new AbiVersion(0, 9)));
        Assert.True(host.TryExplainRefusal(new AbiVersion(0, 9), out string? olderMajor));
        Assert.Contains("major versions must match", olderMajor, StringComparison.Ordinal);

        Assert.NotEqual(newerMinor, newerMajor);
        Assert.DoesNotContain("major versions must match", newerMinor, StringComparison.Ordinal);
        Assert.DoesNotContain("newer", newerMajor, StringComparison.Ordinal);
    }

    [Fact]
    public void AbiVersion_PackingIsPinned()
    {
        Assert.Equal(0x0001_0000u, new AbiVersion(1, 0).Packed);
        Assert.Equal(0x0003_0007u, new AbiVersion(3, 7).Packed);
        Assert.Equal(new AbiVersion(0xFFFF, 0xFFFE), AbiVersion.FromPacked(0xFFFF_FFFEu));
        Assert.Equal(new AbiVersion(AbiVersionConstants.Major, AbiVersionConstants.Minor), AbiVersion.Current);
        Assert.Equal("1.1", AbiVersion.Current.ToString());
    }

    [Theory]
    [InlineData(0x0FFFu, false)]
    [InlineData(0x1000u, true)]
    [InlineData(0x1FFFu, true)]
    [InlineData(0x2000u, false)]
    [InlineData(0u, false)]
    [InlineData(uint.MaxValue, false)]
    public void UserRange_Boundaries(uint code, bool user)
    {
        Assert.Equal(user, HypercallRanges.IsUserDefined(code));
    }
}
