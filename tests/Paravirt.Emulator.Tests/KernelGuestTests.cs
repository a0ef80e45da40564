using System.Text;
using Paravirt.Scenarios;
using Xunit.Abstractions;
using static Paravirt.Scenarios.KernelGuest;

namespace Paravirt.Emulator.Tests;

/// <summary>
/// The kernel-style guest (tests/Paravirt.Scenarios/KernelGuest.cs) on the emulator, through the full VMM: every
/// event it logs must be what the architecture specifies (vector, error code, saved RIP, saved CS/SS, CR2). The
/// nested-KVM scenario <c>same-output-kernel</c> runs the same image on KVM and compares the two logs.
/// </summary>
public sealed class KernelGuestTests(ITestOutputHelper output)
{
    private const ulong NoError = ulong.MaxValue;

    internal static (RunResult Result, string Output) Run(byte[] elf)
    {
        var runner = new GuestRunner(new BackendSelector([new EmulatorBackend()]), new HypercallDispatcher([new CoreHypercalls()]));
        GuestImage image = ElfLoader.Parse(elf, Paravirt.Abi.AbiVersion.Current);
        using var console = new MemoryStream();
        RunResult result = runner.Run(image, runner.DefaultOptions with { Backend = "emulator", ConsoleOutput = console, Timeout = TimeSpan.FromSeconds(60) });
        return (result, Encoding.ASCII.GetString(console.ToArray()));
    }

    [Fact]
    public void KernelGuest_TakesEveryExceptionInterruptAndSystemCall_AsTheArchitectureSays()
    {
        byte[] elf = Build(out Addresses at, withIdtIndexErrorCode: true);
        (RunResult result, string log) = Run(elf);
        output.WriteLine(log);
        Assert.True(result.Outcome == RunOutcome.Exited && result.ExitStatus == 0, $"{result.Outcome}: {result.Message}\n{log}");
        List<Event> events = ParseLog(log);
        Dictionary<string, ulong> k = at.Kernel, u = at.User;
        const ulong kcs = KernelCs, kss = KernelDs, ucs = UserCs, uss = UserDs;
        Event[] expected =
        [
            new(0, NoError, k["k_de"], kcs, kss, 0),                            // #DE: div by zero
            new(6, NoError, k["k_ud"], kcs, kss, 0),                            // #UD: ud2
            new(3, NoError, k["k_int3_after"], kcs, kss, 0),                    // #BP: int3 is a trap
            new(13, 0, k["k_gp"], kcs, kss, 0),                                 // #GP(0): non-canonical address
            new(14, 0, k["k_pf_read"], kcs, kss, Unmapped),                     // #PF not present, supervisor read
            new(14, 3, k["k_pf_write"], kcs, kss, UserReadOnly),                // #PF P|W: CR0.WP protects read-only pages
            new(14, 0x11, NxPage, kcs, kss, NxPage),                            // #PF P|I: fetch from an NX page
            new(0x80, NoError, k["k_int80_after"], kcs, kss, 0),                // INT 0x80
            new(13, KernelCs, k["k_ltr"], kcs, kss, 0),                         // #GP(selector): LTR of a code segment
            new(7, NoError, k["k_nm_x87"], kcs, kss, 0),                        // #NM: x87 with CR0.TS set
            new(7, NoError, k["k_nm_sse"], kcs, kss, 0),                        // #NM: SSE with CR0.TS set
            new(16, NoError, k["k_mf"], kcs, kss, 0),                           // #MF: at the fwait after the unmasked fdiv by zero
            new(14, 0, k["k_pf_fld"], kcs, kss, Unmapped),                      // #PF: fld m80 crossing into the unmapped page
            new(14, 2, k["k_pf_fxsave"], kcs, kss, Unmapped),                   // #PF W: fxsave's 512 bytes cross into it
            new(TimerVector, NoError, 0, kcs, kss, 0),                          // the timer, held while IF=0
            new(8, 0, 0, kcs, kss, Unmapped + 0x7F8),                           // #DF on IST1 (#PF while delivering #PF)
            new(SyscallEvent, 7, u["u_syscall"] + 2, kcs, kss, 0x202),          // SYSCALL: rcx, r11, CS/SS from STAR
            new(0x80, NoError, u["u_int80_after"], ucs, uss, 0),                // INT 0x80 from CPL 3 (gate DPL 3)
            new(3, NoError, u["u_int3_after"], ucs, uss, 0),                    // INT3 from CPL 3
            new(14, 5, u["u_read_kernel"], ucs, uss, KernelData),               // #PF P|U: supervisor page
            new(14, 7, u["u_write_ro"], ucs, uss, UserReadOnly),                // #PF P|W|U: read-only page
            new(13, 0, u["u_hlt"], ucs, uss, 0),                                // #GP(0): hlt at CPL 3
            new(13, 0, u["u_out"], ucs, uss, 0),                                // #GP(0): out at CPL 3, IOPL 0, no bitmap
            new(13, 0, u["u_cli"], ucs, uss, 0),                                // #GP(0): cli at CPL 3
            new(13, (0x81 * 8) + 2, u["u_int81"], ucs, uss, 0),                 // #GP(vector * 8 + 2, SDM; QEMU TCG: * 16): INT through a DPL-0 gate
            new(13, 0, u["u_cr0"], ucs, uss, 0),                                // #GP(0): mov from CR0 at CPL 3
            new(13, 0, u["u_rdmsr"], ucs, uss, 0),                              // #GP(0): rdmsr at CPL 3
            new(14, 0x15, UserData, ucs, uss, UserData),                        // #PF P|U|I: fetch from NX user data
            new(1, NoError, u["u_step_after"], ucs, uss, 0),                    // #DB: single step after the nop
        ];
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(i < events.Count, $"only {events.Count} events logged; expected {expected[i]} next");
            Assert.True(expected[i] == events[i], $"event {i}: expected {expected[i]}, logged {events[i]}");
        }
        Assert.Equal(((ulong)SyscallEvent, 50UL), (events[^4].Vector, events[^4].ErrorCode)); // SYSCALL 50: arm the timer
        Assert.Equal(new Event(TimerVector, NoError, 0, ucs, uss, 0), events[^3]); // the timer at CPL 3
        Assert.Equal(((ulong)SyscallEvent, 99UL), (events[^2].Vector, events[^2].ErrorCode));
        Assert.Equal((ulong)SummaryEvent, events[^1].Vector);
        Assert.Equal(expected.Length + 4, events.Count);
        Event last = events[^1];
        Assert.Equal(1UL, last.ErrorCode);                                      // syscalls counted (7 only)
        Assert.Equal(1007UL, last.Rip);                                         // SYSRET returned rax
        Assert.Equal(2UL, last.Cs);                                             // timer ticks
        Assert.Equal(UserStackTop, last.Cr2);                                   // the user rsp saved through GS
    }
}
