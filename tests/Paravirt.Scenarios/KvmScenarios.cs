using System.Runtime.Versioning;
using Iced.Intel;
using Paravirt.Hypervisor.Memory;
using static Iced.Intel.AssemblerRegisters;
using static Paravirt.Scenarios.RawGuestCode;

namespace Paravirt.Scenarios;

/// <summary>A scenario's check failed; the message says what was expected and what happened.</summary>
internal sealed class ScenarioFailedException(string message) : Exception(message);

/// <summary>The scenario cannot run on this backend (the message says why); it is reported as SKIP, not as a failure.</summary>
internal sealed class ScenarioSkippedException(string message) : Exception(message);

/// <summary>Scenarios that run guests on the real KVM backend. Each returns a short detail line or throws.</summary>
[SupportedOSPlatform("linux")]
internal static class KvmScenarios
{
    private const ulong PageEntry = GuestLayout.HypercallPage + HypercallPage.EntryOffset;
    private const uint TestCode = 0x1F01, DoneCode = 0x1F02, MismatchCode = 0x1F03;
    private const ulong Xor = 0x5A5A_5A5A_5A5A_5A5A;
    private const ulong A2 = 0x1122_3344_5566_7788, A3 = 0x8877_6655_4433_2211, A4 = 0xFFFF_0000_FFFF_0000, A5 = 0x0123_4567_89AB_CDEF;
    private const int LongModeIterations = 1000;

    internal static IEnumerable<(string Name, Func<string> Run)> All(string guestDir) =>
    [
        ("kvm-probe", Probe),
        ("kvm-longmode-out", LongModeOut),
        ("kvm-state-roundtrip", StateRoundTrip),
        ("kvm-hello", () => Sample(guestDir, "hello", "Hello from a Paravirt unikernel!", 7, commandLine: "from-kvm")),
        ("kvm-hello-cs", () => Sample(guestDir, "hello-cs", "Hello from a C# Paravirt unikernel!", 7)),
        ("kvm-subset-cs", () => Sample(guestDir, "subset-cs", "subset-cs: 0 failures", 0)),
        ("kvm-interrupt-storm", InterruptStorm),
        ("kvm-timeout", Timeout),
        ("kvm-fault-hlt", FaultHlt),
        ("kvm-fault-mmio", FaultMmio),
    ];

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new ScenarioFailedException(message);
        }
    }

    /// <summary>The probe says yes, and the API facts the backend relies on hold.</summary>
    private static string Probe()
    {
        BackendAvailability a = new KvmBackend().Probe();
        Check(a.IsAvailable, $"probe says unavailable: {a.Reason}");
        using Kvm kvm = Kvm.Open();
        int api = kvm.GetApiVersion();
        int sync = kvm.CheckExtension(KvmIoctls.KVM_CAP_SYNC_REGS);
        int mmap = kvm.GetVcpuMmapSize();
        Check(api == 12, $"API version {api}, expected 12");
        Check((sync & 1) != 0, $"KVM_CAP_SYNC_REGS = {sync}, KVM_SYNC_X86_REGS missing");
        Check(kvm.CheckExtension(KvmIoctls.KVM_CAP_IMMEDIATE_EXIT) > 0, "no KVM_CAP_IMMEDIATE_EXIT");
        return $"{a.Reason}; api {api}, sync regs 0x{sync:x}, vcpu mmap {mmap} bytes";
    }

    /// <summary>
    /// Ends a hypercall loop's code with its mismatch report (at <paramref name="bad"/>: the wrong result goes to the
    /// host in rdi with MismatchCode, through the hypercall page whose entry is in rbx) and starts it on KVM.
    /// </summary>
    private static RawKvmGuest StartWithMismatchReport(Assembler a, Label bad)
    {
        a.Label(ref bad);
        a.mov(rdi, rax);
        a.mov(eax, MismatchCode);
        a.call(rbx);
        a.hlt();
        return RawKvmGuest.Start(Assemble(a));
    }

    /// <summary>
    /// Hand-assembled long-mode code at 1 MiB calls the hypercall page 1,000 times with six full 64-bit registers,
    /// checks each result the host returns in rax, and uses SSE (which needs CPUID and CR4 set up right).
    /// </summary>
    private static string LongModeOut()
    {
        Assembler a = HypercallLoop(LongModeIterations, PageEntry, TestCode, g =>
        {
            g.movq(xmm1, r12);          // SSE round trip (needs CPUID and CR4.OSFXSR right): rdi = r12 through xmm1
            g.movq(rdi, xmm1);
            g.mov(rsi, A2);
            g.mov(rdx, A3);
            g.mov(r10, A4);
            g.mov(r8, A5);
        }, (g, bad) =>
        {
            g.mov(rcx, Xor); // the host returns A1 ^ Xor
            g.xor(rcx, r12);
            g.cmp(rax, rcx);
            g.jne(bad);
        }, out Label bad);
        a.mov(eax, DoneCode);
        a.mov(edi, LongModeIterations);
        a.call(rbx);
        a.hlt();
        using RawKvmGuest guest = StartWithMismatchReport(a, bad);
        IVcpu vcpu = guest.Vcpu;

        var sw = Stopwatch.StartNew();
        int hypercalls = 0;
        ulong expected = LongModeIterations;
        while (true)
        {
            VcpuExit exit = vcpu.Run();
            Check(HypercallTrap.IsHypercall(exit), $"exit {hypercalls + 1}: {exit.Kind} at rip 0x{exit.Rip:x} {exit.Detail}, expected a hypercall");
            Check(exit.Address == HypercallPage.IoPort, $"hypercall exit on port 0x{exit.Address:x}");
            hypercalls++;
            HypercallArgs h = HypercallTrap.ReadArguments(vcpu.GetRegisters());
            if (h.Code == DoneCode)
            {
                Check(h.A1 == LongModeIterations, $"done hypercall rdi = {h.A1}");
                break;
            }
            Check(h.Code != MismatchCode, $"the guest saw rax = 0x{h.A1:x} after hypercall {hypercalls - 1}, expected 0x{expected + 1 ^ Xor:x}");
            Check(h.Code == TestCode, $"hypercall {hypercalls}: code 0x{h.Code:x}, expected 0x{TestCode:x}");
            Check(h.A1 == expected, $"hypercall {hypercalls}: rdi = {h.A1}, expected {expected}");
            Check(h.A2 == A2 && h.A3 == A3 && h.A4 == A4 && h.A5 == A5,
                $"hypercall {hypercalls}: rsi, rdx, r10, r8 = {h.A2:x}, {h.A3:x}, {h.A4:x}, {h.A5:x}");
            Check(exit.Rip - GuestLayout.HypercallPage <= HypercallStub.TrapLength, $"hypercall exit rip 0x{exit.Rip:x}, expected the stub at 0x{GuestLayout.HypercallPage:x}");
            HypercallTrap.Complete(vcpu, (long)(h.A1 ^ Xor));
            expected--;
        }
        sw.Stop();
        VcpuRegisters regs = vcpu.GetRegisters();
        Check(regs.R12 == 0, $"guest r12 = {regs.R12} after the loop");
        Check(hypercalls == LongModeIterations + 1, $"{hypercalls} hypercalls");
        return $"{hypercalls} hypercall exits, args and results round-tripped, {sw.Elapsed.TotalMicroseconds / hypercalls:F0} us/exit";
    }

    /// <summary>
    /// The full vCPU state (GPRs, segments, control registers, system MSRs, XSAVE) taken at a hypercall exit moves to
    /// a vCPU of another VM (with a copy of the memory) and the guest continues there exactly once past the out.
    /// </summary>
    private static string StateRoundTrip()
    {
        var a = new Assembler(64);
        a.mov(rax, 0x0102_0304_0506_0708);
        a.movq(xmm3, rax);
        a.mov(eax, TestCode);
        a.mov(rbx, PageEntry);
        a.call(rbx);                // the host answers 41
        a.add(rax, 1);
        a.mov(rdi, rax);
        a.movq(rsi, xmm3);
        a.mov(eax, DoneCode);
        a.call(rbx);
        a.hlt();
        byte[] code = Assemble(a);

        using RawKvmGuest first = RawKvmGuest.Start(code);
        VcpuExit exit = first.Vcpu.Run();
        Check(HypercallTrap.IsHypercall(exit), $"first exit {exit.Kind} {exit.Detail}");
        HypercallTrap.Complete(first.Vcpu, 41);
        VcpuState state = first.Vcpu.GetState();
        Check(state.Registers.Rax == 41, $"state rax = {state.Registers.Rax}, expected the hypercall result 41");
        Check(state.Registers.Rip == exit.Rip + HypercallStub.TrapLength, $"state rip 0x{state.Registers.Rip:x}: the out at 0x{exit.Rip:x} is not complete");
        Check(state.Cs.Long && state.Cs.Present && (state.Efer & 0x400) != 0, $"CS {state.Cs}, EFER 0x{state.Efer:x}: not long mode");
        Check(BitConverter.ToUInt64(state.Xmm(3)) == 0x0102_0304_0506_0708, $"xmm3 = {Convert.ToHexString(state.Xmm(3))}");
        state.Lstar = 0xFFFF_8000_1234_5000;
        state.KernelGsBase = 0x5000;

        using RawKvmGuest second = RawKvmGuest.Start(code);
        first.Memory.GetSpan(new GuestAddress(0), first.Memory.Size).CopyTo(second.Memory.GetSpan(new GuestAddress(0), second.Memory.Size));
        second.Vcpu.SetState(state);
        VcpuState reread = second.Vcpu.GetState();
        Check(reread.Lstar == state.Lstar && reread.KernelGsBase == 0x5000, $"MSRs after SetState: LSTAR 0x{reread.Lstar:x}, KERNEL_GS_BASE 0x{reread.KernelGsBase:x}");
        foreach (RawKvmGuest g in new[] { first, second })
        {
            exit = g.Vcpu.Run();
            Check(HypercallTrap.IsHypercall(exit), $"second exit {exit.Kind} {exit.Detail}");
            HypercallArgs done = HypercallTrap.ReadArguments(g.Vcpu.GetRegisters());
            Check(done.Code == DoneCode && done.A1 == 42 && done.A2 == 0x0102_0304_0506_0708,
                $"{(g == first ? "original" : "restored")} vCPU: code 0x{done.Code:x}, rdi {done.A1} (expected 42), rsi 0x{done.A2:x}");
        }
        return $"state moved at a hypercall exit (rip 0x{state.Registers.Rip:x}, {state.ExtendedState.Length}-byte XSAVE image); both vCPUs continued once past the out";
    }

    /// <summary>
    /// Hypercalls keep their results while another thread kicks the vCPU every millisecond: kicks that land inside
    /// KVM_RUN, just before it, or between a hypercall exit and its completion all end as Interrupted exits that
    /// the loop resumes from, and no hypercall result is lost or applied twice.
    /// </summary>
    private static string InterruptStorm()
    {
        const int Count = 100_000_000; // more than the host lets it do
        const int WantInterrupted = 50, WantHypercalls = 2000;
        Assembler a = HypercallLoop(Count, PageEntry, TestCode, g => g.mov(rdi, r12), ExpectTwiceR12PlusOne, out Label bad);
        using RawKvmGuest guest = StartWithMismatchReport(a, bad);
        IVcpu vcpu = guest.Vcpu;

        using var stop = new ManualResetEventSlim();
        int kicks = 0;
        var kicker = new Thread(() =>
        {
            while (!stop.Wait(1))
            {
                vcpu.Interrupt();
                Interlocked.Increment(ref kicks);
            }
        });
        var sw = Stopwatch.StartNew();
        kicker.Start();
        int hypercalls = 0, interrupted = 0;
        try
        {
            while (interrupted < WantInterrupted || hypercalls < WantHypercalls)
            {
                Check(sw.Elapsed < TimeSpan.FromSeconds(60), $"only {interrupted} Interrupted exits and {hypercalls} hypercalls in 60 s ({kicks} kicks)");
                VcpuExit exit = vcpu.Run();
                if (exit.Kind == VcpuExitKind.Interrupted)
                {
                    interrupted++;
                    continue;
                }
                Check(HypercallTrap.IsHypercall(exit), $"{exit.Kind} at rip 0x{exit.Rip:x} {exit.Detail} after {hypercalls} hypercalls");
                HypercallArgs h = HypercallTrap.ReadArguments(vcpu.GetRegisters());
                Check(h.Code != MismatchCode, $"the guest saw a wrong result 0x{h.A1:x} after {hypercalls} hypercalls");
                Check(h.A1 == (ulong)(Count - hypercalls), $"hypercall {hypercalls + 1}: rdi = {h.A1}, expected {Count - hypercalls} (a hypercall was lost or repeated)");
                hypercalls++;
                HypercallTrap.Complete(vcpu, (long)(2 * h.A1 + 1));
            }
        }
        finally
        {
            stop.Set();
            kicker.Join();
        }
        return $"{hypercalls} hypercalls intact under {Volatile.Read(ref kicks)} kicks ({interrupted} Interrupted exits) in {sw.ElapsedMilliseconds} ms";
    }

    /// <summary>
    /// A sample built by the normal build (hello with the C guest SDK; the C# ones NativeAOT against the guest core
    /// library) prints <paramref name="expected"/> and exits with <paramref name="status"/> on KVM, as it does on the
    /// emulator (CSharpGuestTests).
    /// </summary>
    private static string Sample(string guestDir, string name, string expected, int status, string commandLine = "")
    {
        string path = Path.Combine(guestDir, name + ".elf");
        Check(File.Exists(path), $"{path} is missing (build samples/{name} first)");
        GuestImage image = ElfLoader.LoadFile(path, AbiVersion.Current);
        using var console = new MemoryStream();
        RunResult r = NewRunner().Run(image, new GuestRunOptions
        {
            Backend = KvmBackend.BackendName,
            ConsoleOutput = console,
            Timeout = TimeSpan.FromSeconds(30),
            CommandLine = commandLine,
        });
        string output = Encoding.UTF8.GetString(console.ToArray());
        foreach (string line in output.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n'))
        {
            Console.WriteLine($"  {name}.elf on kvm | {line}");
        }
        Console.WriteLine($"  {name}.elf on kvm | ({r.Outcome}, status {r.ExitStatus}: {r.Message})");
        Check(r.Backend == KvmBackend.BackendName, $"ran on {r.Backend}");
        Check(r.Outcome == RunOutcome.Exited, $"{r.Outcome}: {r.Message}");
        Check(output.Contains(expected, StringComparison.Ordinal), $"console output lacks \"{expected}\": \"{output.ReplaceLineEndings(" ")}\"");
        Check(!output.Contains("FAIL", StringComparison.Ordinal), "a check failed");
        Check(r.ExitStatus == status, $"exit status {r.ExitStatus}, expected {status}");
        return $"\"{expected}\" printed, exit status {r.ExitStatus}, {Sum(r.Statistics.Hypercalls.Values)} hypercalls in {r.Statistics.Elapsed.TotalMilliseconds:F0} ms";
    }

    /// <summary>A guest that spins forever is stopped by the 1 s timeout: proves Interrupt kicks a vCPU out of KVM_RUN.</summary>
    private static string Timeout()
    {
        var a = new Assembler(64);
        Label spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
        var sw = Stopwatch.StartNew();
        RunResult r = RunRaw(Assemble(a), 4UL << 20, TimeSpan.FromSeconds(1));
        sw.Stop();
        Check(r.Outcome == RunOutcome.TimedOut, $"{r.Outcome}: {r.Message}, expected TimedOut");
        Check(sw.Elapsed < TimeSpan.FromSeconds(10), $"took {sw.Elapsed.TotalSeconds:F1} s to stop");
        return $"TimedOut after {sw.Elapsed.TotalMilliseconds:F0} ms: {r.Message}";
    }

    /// <summary>A stray <c>hlt</c> is a clean fault that names the instruction and where.</summary>
    private static string FaultHlt()
    {
        var a = new Assembler(64);
        a.nop();
        a.hlt();
        RunResult r = RunRaw(Assemble(a), 4UL << 20, TimeSpan.FromSeconds(10));
        Check(r.Outcome == RunOutcome.Faulted, $"{r.Outcome}: {r.Message}, expected Faulted");
        Check(r.Message.Contains("hlt", StringComparison.Ordinal) && r.Message.Contains("0x10000", StringComparison.Ordinal), $"message: {r.Message}");
        return r.Message;
    }

    /// <summary>
    /// A write past the end of guest memory (3 MiB of memory; the identity map covers whole 2 MiB pages, so 3.5 MiB is
    /// mapped but backed by no memory slot) is an MMIO exit and a clean fault that names the address.
    /// </summary>
    private static string FaultMmio()
    {
        var a = new Assembler(64);
        a.mov(rax, 0x38_0000);
        a.mov(__qword_ptr[rax], 0x42);
        a.hlt();
        RunResult r = RunRaw(Assemble(a), 3UL << 20, TimeSpan.FromSeconds(10));
        Check(r.Outcome == RunOutcome.Faulted, $"{r.Outcome}: {r.Message}, expected Faulted");
        Check(r.Message.Contains("0x380000", StringComparison.Ordinal), $"message does not name 0x380000: {r.Message}");
        return r.Message;
    }

    /// <summary>Raw code at 1 MiB in 4 MiB of memory with boot info and hypercall page, on a KVM vCPU (no loader, no runner).</summary>
    private sealed class RawKvmGuest : IDisposable
    {
        private readonly GuestMemory _memory;
        private readonly IVirtualMachine _vm;

        private RawKvmGuest(GuestMemory memory, IVirtualMachine vm, IVcpu vcpu) => (_memory, _vm, Vcpu) = (memory, vm, vcpu);

        public IVcpu Vcpu { get; }

        public GuestMemory Memory => _memory;

        public static RawKvmGuest Start(byte[] code)
        {
            var memory = new GuestMemory(4UL << 20);
            IVirtualMachine? vm = null;
            try
            {
                memory.Write(new GuestAddress(ImageBase), code);
                GuestRunner.PrepareMemory(memory, ImageBase + (ulong)code.Length, []);
                vm = new KvmBackend().CreateVirtualMachine(memory, new VirtualMachineOptions());
                return new RawKvmGuest(memory, vm, vm.CreateVcpu(new VcpuStartState(ImageBase, memory.Size, GuestLayout.BootInfo)));
            }
            catch
            {
                vm?.Dispose();
                memory.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            Vcpu.Dispose();
            _vm.Dispose();
            _memory.Dispose();
        }
    }

    private static GuestRunner NewRunner() =>
        new(new BackendSelector([new KvmBackend()]), new HypercallDispatcher([new CoreHypercalls()]));

    /// <summary>Runs raw code placed at 1 MiB through the full <see cref="GuestRunner"/> on KVM.</summary>
    private static RunResult RunRaw(byte[] code, ulong memorySize, TimeSpan timeout)
    {
        var image = new GuestImage(code, ImageBase, [new ImageSegment(ImageBase, 0, (ulong)code.Length, (ulong)code.Length, Flags: 5)], AbiVersion.Current, []);
        return NewRunner().Run(image, new GuestRunOptions { Backend = KvmBackend.BackendName, MemorySize = memorySize, Timeout = timeout });
    }

    private static long Sum(IEnumerable<long> values) => values.Sum();
}
