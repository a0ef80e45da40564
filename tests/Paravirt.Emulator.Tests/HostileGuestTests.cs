using Paravirt.Hypervisor.Devices;
using Paravirt.Hypervisor.Devices.Block;
using Paravirt.Scenarios;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// Regression tests for the emulator's hostile-guest defects (issue 13, items 4-6): a rep string instruction over
/// all of memory honours budgets and interrupts, host writes into guest code are seen by the guest as on KVM, and a
/// guest that generates code cannot grow the host's memory past the code cache's cap.
/// </summary>
public sealed class HostileGuestTests
{
    [Fact]
    public void RepLodsb_OverAllOfMemory_StopsAtTheBudget_CountingEveryIteration()
    {
        // rcx is huge: without per-iteration counting the rep would run to the end of memory and fault.
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.xor(esi, esi);
            a.mov(rcx, -1L);
            a.rep.lodsb();
            a.hlt();
        });
        const ulong budget = 1_000_000;
        using EmuGuest guest = EmuHarness.Create(code, budget: budget, memorySize: 64UL << 20);
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.BudgetExhausted, exit.Kind);
        VcpuRegisters r = guest.Vcpu.GetRegisters();
        Assert.Equal(budget, guest.Vcpu.InstructionsRetired);
        ulong iterations = budget - 2; // xor and mov came first
        Assert.Equal(iterations, r.Rsi);
        Assert.Equal(ulong.MaxValue - iterations, r.Rcx);
        Assert.Equal(EmuHarness.AddressOf(code, [0xF3, 0xAC]), r.Rip); // still on the rep, as after an interrupt on hardware
    }

    [Fact]
    public void RepStosb_BulkFill_CountsEachIterationAgainstTheBudget()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(edi, 0x20_0000);
            a.mov(ecx, 1_000_000);
            a.mov(al, 0xAB);
            a.rep.stosb();
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code, budget: 1003, memorySize: 4UL << 20);
        Assert.Equal(VcpuExitKind.BudgetExhausted, guest.Vcpu.Run().Kind);
        VcpuRegisters r = guest.Vcpu.GetRegisters();
        Assert.Equal(1_000_000UL - 1000, r.Rcx);
        Assert.Equal(0x20_0000UL + 1000, r.Rdi);
        Assert.Equal(0xAB, guest.Memory.GetSpan(new GuestAddress(0x20_0000 + 999), 1)[0]);
        Assert.Equal(0, guest.Memory.GetSpan(new GuestAddress(0x20_0000 + 1000), 1)[0]);
    }

    [Fact]
    public void RepScasb_OverHundredsOfMegabytes_IsInterruptedPromptly_AndResumes()
    {
        // repe scasb over 254 MiB of zeros (element by element: no bulk path) up to a marker byte near the end.
        const ulong memory = 256UL << 20, start = 2UL << 20, marker = memory - 0x1000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.xor(eax, eax);
            a.mov(edi, (uint)start);
            a.mov(rcx, -1L);
            a.repe.scasb();
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code, memorySize: memory);
        guest.Memory.GetSpan(new GuestAddress(marker), 1)[0] = 1;
        IVcpu vcpu = guest.Vcpu;
        VcpuExit exit = default;
        var runner = new Thread(() => exit = vcpu.Run());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        runner.Start();
        Thread.Sleep(20);
        vcpu.Interrupt();
        Assert.True(runner.Join(TimeSpan.FromSeconds(30)), "the vCPU did not stop");
        Assert.Equal(VcpuExitKind.Interrupted, exit.Kind);
        VcpuRegisters r = vcpu.GetRegisters();
        Assert.True(r.Rdi < marker, $"the scan finished (rdi 0x{r.Rdi:x}) before the interrupt was taken");
        Assert.Equal(EmuHarness.AddressOf(code, [0xF3, 0xAE]), r.Rip); // on the rep, which resumes where it stopped
        Assert.Equal(ulong.MaxValue - (r.Rdi - start), r.Rcx);
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal(marker + 1, vcpu.GetRegisters().Rdi);
    }

    [Fact]
    public void HostWriteOverCodeTheGuestAlreadyRan_RunsTheNewCode()
    {
        // The guest calls a function, reports its result with an out, and calls it again; in between the host
        // rewrites the function through GuestMemory (as a block device read into guest memory does). On KVM the
        // guest runs the new bytes; so must the emulator, interpreted and translated.
        const ulong function = EmuHarness.CodeAddress + 0x1000;
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label again = a.CreateLabel(), warm = a.CreateLabel();
            a.mov(ebx, 100);
            a.Label(ref warm);          // run the function often enough to be translated to IL
            a.mov(rax, (long)function);
            a.call(rax);
            a.dec(ebx);
            a.jnz(warm);
            a.Label(ref again);
            a.mov(rax, (long)function);
            a.call(rax);
            a.@out(0x80, eax);
            a.jmp(again);
        });
        byte[] Function(int value) => EmuHarness.Assemble(a =>
        {
            a.mov(eax, value);
            a.add(eax, 0);
            a.ret();
        }, function);
        using EmuGuest guest = EmuHarness.Create(code);
        guest.Memory.Write(new GuestAddress(function), Function(1));
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal((VcpuExitKind.IoOut, 1UL), (exit.Kind, exit.Data));
        guest.Memory.Write(new GuestAddress(function), Function(2));
        exit = guest.Vcpu.Run();
        Assert.Equal((VcpuExitKind.IoOut, 2UL), (exit.Kind, exit.Data));
        guest.Memory.GetSpan(new GuestAddress(function), 16)[0] = 0xC3; // a span handed out for writing counts too
        exit = guest.Vcpu.Run();
        Assert.Equal((VcpuExitKind.IoOut, function), (exit.Kind, exit.Data)); // a bare ret: eax still holds the call target
    }

    [Fact]
    public void CodeReadFromDiskOverCodeTheGuestRan_RunsTheNewCode()
    {
        // The real device path: the block device writes the sector into guest memory through GuestMemory.
        string disk = CodeFromDiskGuest.WriteDisk();
        try
        {
            using var device = new BlockDevice("disk0", disk);
            var runner = new GuestRunner(new BackendSelector([new EmulatorBackend()]), new HypercallDispatcher([new CoreHypercalls(), new DeviceHypercalls()]));
            GuestImage image = ElfLoader.Parse(CodeFromDiskGuest.Build(), Paravirt.Abi.AbiVersion.Current);
            RunResult result = runner.Run(image, runner.DefaultOptions with { Backend = "emulator", Devices = [device], Timeout = TimeSpan.FromSeconds(30) });
            Assert.True(result.Outcome == RunOutcome.Exited, result.Message);
            Assert.Equal(12, result.ExitStatus); // 1 from the code the guest wrote, then 2 from the code the disk wrote
        }
        finally
        {
            File.Delete(disk);
        }
    }

    [Fact]
    public void CodeGeneratingGuest_CannotGrowHostMemoryPastTheCodeCacheCap()
    {
        // 16,384 distinct 256-instruction blocks: a 1-byte nop sled called at every offset of 44 of each 300 bytes
        // (299 nops and a ret), so each call decodes a new full-size block. Without a byte cap the decoded ops alone
        // would hold ~230 MB; the cap (64 MiB estimated) bounds what stays allocated.
        const int chunk = 300, startsPerChunk = 44, chunks = 373;
        const ulong sled = 0x20_0000;
        byte[] loop = EmuHarness.Assemble(a =>
        {
            Label outer = a.CreateLabel(), inner = a.CreateLabel();
            a.xor(r12d, r12d);              // chunk
            a.Label(ref outer);
            a.xor(r13d, r13d);              // start within the chunk
            a.Label(ref inner);
            a.imul(rax, r12, chunk);
            a.add(rax, r13);
            a.mov(rbx, (long)sled);
            a.add(rax, rbx);
            a.call(rax);
            a.inc(r13d);
            a.cmp(r13d, startsPerChunk);
            a.jb(inner);
            a.inc(r12d);
            a.cmp(r12d, chunks);
            a.jb(outer);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(loop, memorySize: 4UL << 20);
        Span<byte> code = guest.Memory.GetSpan(new GuestAddress(sled), chunk * chunks);
        code.Fill(0x90);
        for (int c = 0; c < chunks; c++)
        {
            code[(c * chunk) + chunk - 1] = 0xC3;
        }
        long before = GC.GetTotalMemory(forceFullCollection: true);
        Assert.Equal(VcpuExitKind.Halt, guest.Vcpu.Run().Kind);
        long grown = GC.GetTotalMemory(forceFullCollection: true) - before;
        GC.KeepAlive(guest);
        Assert.True(grown < 96L << 20, $"the host holds {grown >> 20} MiB more after the guest made its code");
    }
}
