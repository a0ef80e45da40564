using Microsoft.Extensions.Logging;
using Paravirt.Hypervisor.Linux;
using Paravirt.Hypervisor.Tests.Hypercalls;

namespace Paravirt.Hypervisor.Tests.Linux;

/// <summary>The host side of the Linux personality: the embedded library OS, the memory layout, the arguments module and the hypercalls it uses.</summary>
public sealed class LinuxPersonalityTests : IDisposable
{
    private readonly GuestMemory _memory = new(64UL << 20);

    public void Dispose() => _memory.Dispose();

    private static GuestImage LinuxImage()
    {
        ElfBuilder b = ElfBuilder.Valid();
        b.RemoveNotes();
        return ElfLoader.Parse(b.Build(), AbiVersion.Current);
    }

    [Fact]
    public void TheLibraryOsIsEmbeddedAndLoadsAtOneMegabyteWithAPhysicalEntry()
    {
        GuestImage os = LinuxPersonality.LibraryOs;
        Assert.Equal(GuestImageKind.Paravirt, os.Kind);
        Assert.Equal(AbiVersion.Current, os.AbiVersion);
        Assert.Equal(EntryConvention.ImageMinAddress, os.Segments[0].Address);
        Assert.Equal(EntryConvention.ImageMinAddress, os.Entry); // entry.S's _start is the first byte of .text
        Assert.All(os.Segments, s => Assert.True(s.Address + s.MemorySize < 16UL << 20, "the library OS stays small"));
    }

    [Fact]
    public void ArgumentsModuleIsAHeaderThenNulTerminatedStrings()
    {
        byte[] m = LinuxPersonality.EncodeArguments(["/app", "a b", "é"], ["HOME=/", "X="]);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(m));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(4)));
        Assert.Equal("/app\0a b\0é\0HOME=/\0X=\0", Encoding.UTF8.GetString(m, 8, m.Length - 8));
    }

    [Theory]
    [InlineData("NOEQUALS")]
    [InlineData("=value")]
    [InlineData("A=b\0c")]
    public void BadEnvironmentStringsAreRefused(string entry) =>
        Assert.Throws<ArgumentException>(() => LinuxPersonality.EncodeArguments(["/app"], [entry]));

    [Fact]
    public void OversizedArgumentsAreRefusedWithTheLimit()
    {
        var ex = Assert.Throws<ArgumentException>(() => LinuxPersonality.EncodeArguments(["/app", new string('x', (int)LinuxConstants.MaxArgumentsSize)], []));
        Assert.Contains(LinuxConstants.MaxArgumentsSize.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadPlacesTheLibraryOsTheApplicationAndItsArgumentsAndWritesTheModuleTable()
    {
        GuestImage app = LinuxImage();
        byte[] args = LinuxPersonality.EncodeArguments(["/app"], ["A=1"]);
        _memory.GetSpan(new GuestAddress(GuestLayout.BootModules), GuestLayout.BootModulesSize).Fill(0xCC);

        LinuxLayout layout = LinuxPersonality.Load(app, _memory, args);

        Assert.Equal(LinuxPersonality.LibraryOs.Entry, layout.Entry);
        Assert.Equal(GuestLayout.BootModules, layout.BootModules);
        Assert.Equal(2u, layout.BootModuleCount);
        BootModule exe = _memory.Read<BootModule>(new GuestAddress(GuestLayout.BootModules));
        BootModule arg = _memory.Read<BootModule>(new GuestAddress(GuestLayout.BootModules + 32));
        Assert.Equal((uint)BootModuleKind.LinuxExecutable, exe.Kind);
        Assert.Equal((uint)BootModuleKind.LinuxArguments, arg.Kind);
        Assert.Equal(0UL, exe.Address % EntryConvention.PageSize);
        Assert.Equal(0UL, arg.Address % EntryConvention.PageSize);
        Assert.True(exe.Address >= LinuxPersonality.LibraryOs.End, "the application lies above the library OS");
        Assert.True(arg.Address >= exe.Address + exe.Size);
        Assert.True(layout.HeapStart >= arg.Address + arg.Size && layout.HeapStart % EntryConvention.PageSize == 0);
        Assert.Equal(app.FileBytes.ToArray(), _memory.GetSpan(new GuestAddress(exe.Address), exe.Size).ToArray());
        Assert.Equal(args, _memory.GetSpan(new GuestAddress(arg.Address), arg.Size).ToArray());
        Assert.True(_memory.GetSpan(new GuestAddress(GuestLayout.BootModules + 64), GuestLayout.BootModulesSize - 64).IndexOfAnyExcept((byte)0) < 0, "the rest of the table is cleared");
        Assert.True(_memory.GetSpan(new GuestAddress(exe.Address + exe.Size), arg.Address - exe.Address - exe.Size).IndexOfAnyExcept((byte)0) < 0, "the application's last page is zero-padded");
    }

    [Fact]
    public void TooLittleMemoryIsOneLineThatNamesTheNeed()
    {
        using var small = new GuestMemory(GuestMemory.MinSize);
        var ex = Assert.Throws<ImageFormatException>(() => LinuxPersonality.Load(LinuxImage(), small, LinuxPersonality.EncodeArguments(["/app"], [])));
        Assert.Contains("--memory", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', ex.Message);
    }

    // ---- hypercalls -----------------------------------------------------------------------------------------------

    private sealed class Logger : ILogger
    {
        public List<string> Lines { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Add(formatter(state, exception));
    }

    private readonly Logger _log = new();

    private GuestSession Session() => new(_memory, HypercallDispatcherTests.EmptyImage(), Stream.Null, default) { Logger = _log };

    private static long Call(GuestSession s, HypercallCode code, ulong a1 = 0, ulong a2 = 0, ulong a3 = 0) =>
        new HypercallDispatcher([new CoreHypercalls()]).Dispatch(new HypercallArgs((ulong)code, a1, a2, a3, 0, 0), s);

    [Fact]
    public void RandomFillsTheBufferAndIsOffered()
    {
        GuestSession s = Session();
        Assert.True(s.OfferedFeatures.HasFlag(FeatureBits.Entropy));
        Assert.Equal(64, Call(s, HypercallCode.Random, 0x20_0000, 64));
        Assert.True(_memory.GetSpan(new GuestAddress(0x20_0000), 64).IndexOfAnyExcept((byte)0) >= 0, "64 random bytes are not all zero");
        Assert.Equal(4096, Call(s, HypercallCode.Random, 0x20_0000, 1 << 20)); // at most a page per call
    }

    [Fact]
    public void RandomIntoMemoryOutsideTheGuestIsAFault() =>
        Assert.Equal((long)HypercallStatus.Fault, Call(Session(), HypercallCode.Random, _memory.Size - 8, 64));

    [Fact]
    public void ExitSignalEndsTheRunWith128PlusTheSignal()
    {
        GuestSession s = Session();
        Call(s, HypercallCode.ExitSignal, 11, 0, 0x401136);
        Assert.True(s.ExitRequested);
        Assert.Equal(139, s.ExitStatus);
        Assert.Equal("the Linux application was killed by SIGSEGV (signal 11): a fault at address 0x0, rip 0x401136", s.FatalSignal!.Describe());
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(65UL)]
    [InlineData(ulong.MaxValue)]
    public void ExitSignalWithANonsenseSignalExitsWith255(ulong signal)
    {
        GuestSession s = Session();
        Call(s, HypercallCode.ExitSignal, signal);
        Assert.Equal(255, s.ExitStatus);
        Assert.Null(s.FatalSignal);
    }

    [Fact]
    public void UnimplementedSyscallsAreCountedAndNamedOnce()
    {
        GuestSession s = Session();
        Call(s, HypercallCode.SyscallUnimplemented, 334, 0x401000);
        Call(s, HypercallCode.SyscallUnimplemented, 334, 0x401000);
        Call(s, HypercallCode.SyscallUnimplemented, 99999, 0x401000);
        Assert.Equal(2, s.UnimplementedSyscalls[334]);
        Assert.Equal(1, s.UnimplementedSyscalls[99999]);
        Assert.Equal(2, _log.Lines.Count);
        Assert.Contains("334 (rseq)", _log.Lines[0], StringComparison.Ordinal);
        Assert.Contains("99999", _log.Lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public void AHostileGuestCannotGrowTheUnimplementedTableWithoutBound()
    {
        GuestSession s = Session();
        for (ulong n = 0; n < 5000; n++)
        {
            Assert.Equal(0, Call(s, HypercallCode.SyscallUnimplemented, 100_000 + n));
        }
        Assert.Equal(1024, s.UnimplementedSyscalls.Count);
    }

    [Fact]
    public void SyscallNamesComeFromTheKernelTable()
    {
        Assert.Equal("read", LinuxSyscallNames.Get(0));
        Assert.Equal("clone3", LinuxSyscallNames.Get(435));
        Assert.Null(LinuxSyscallNames.Get(100_000));
        Assert.Equal("334 (rseq)", LinuxSyscallNames.Describe(334));
        Assert.Equal("4000", LinuxSyscallNames.Describe(4000));
    }
}
