using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Emulator.Tests;

/// <summary>The emulator's guest debugging (IVcpuDebug): breakpoints, single-step, write watchpoints, host code writes.</summary>
public sealed class DebugTests
{
    /// <summary>A loop that sums 10..1 into rax and stores rax to 0x8000 each round, then hlt; the addresses of its instructions.</summary>
    private static byte[] Loop(out ulong storeAddress, out ulong loopTop, out int storeLength)
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label l = a.CreateLabel();
            a.xor(eax, eax);
            a.mov(ecx, 10);
            a.Label(ref l);
            a.add(rax, rcx);
            a.mov(__qword_ptr[0x8000], rax);
            a.dec(ecx);
            a.jnz(l);
            a.hlt();
        });
        List<Instruction> ins = Decode(code);
        loopTop = ins[2].IP;
        storeAddress = ins[3].IP;
        storeLength = ins[3].Length;
        return code;
    }

    private static byte[] Loop(out ulong storeAddress, out ulong loopTop) => Loop(out storeAddress, out loopTop, out _);

    private static List<Instruction> Decode(byte[] code)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), EmuHarness.CodeAddress);
        var list = new List<Instruction>();
        while (decoder.IP < EmuHarness.CodeAddress + (ulong)code.Length)
        {
            list.Add(decoder.Decode());
        }
        return list;
    }

    /// <summary>A guest with its own IDT whose #DE handler sets rbx and halts; divides by zero after <c>lidt</c>. Returns the addresses of the div and the handler.</summary>
    private static EmuGuest GuestWithOwnIdt(out ulong div, out ulong handler)
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label idtr = a.CreateLabel(), de = a.CreateLabel();
            a.lidt(__[idtr]);
            a.xor(ecx, ecx);
            a.div(ecx);                                   // #DE, delivered through the guest's IDT
            a.hlt();
            a.Label(ref de);
            a.mov(ebx, 0x77);
            a.hlt();
            EmuHarness.Idtr(a, ref idtr);
        });
        List<Instruction> ins = Decode(code);
        div = ins.First(i => i.Mnemonic == Mnemonic.Div).IP;
        handler = ins.First(i => i.Mnemonic == Mnemonic.Mov && i.Immediate32 == 0x77).IP;
        EmuGuest guest = EmuHarness.Create(code);
        EmuHarness.WriteInterruptGate(guest.Memory, 0, handler); // #DE
        return guest;
    }

    [Fact]
    public void With_the_guests_own_IDT_a_breakpoint_in_its_exception_handler_stops_there()
    {
        using EmuGuest guest = GuestWithOwnIdt(out _, out ulong handler);
        guest.Vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { Breakpoints = [handler] });
        VcpuExit exit = guest.Vcpu.Run();
        Assert.True(exit.Kind == VcpuExitKind.Debug, $"{exit.Kind} {exit.Detail}");
        Assert.Equal((DebugStopReason.Breakpoint, handler), (exit.DebugReason, exit.Rip));
        Assert.NotEqual(0x77UL, guest.Vcpu.GetRegisters().Rbx);
        guest.Vcpu.Debug.SetGuestDebug(GuestDebugSettings.None);
        exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        Assert.Equal(0x77UL, guest.Vcpu.GetRegisters().Rbx); // the guest's handler ran, not the emulator's fault exit
    }

    [Fact]
    public void With_the_guests_own_IDT_stepping_a_faulting_instruction_stops_at_the_handlers_first_instruction()
    {
        using EmuGuest guest = GuestWithOwnIdt(out ulong div, out ulong handler);
        guest.Vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { Breakpoints = [div] });
        VcpuExit exit = guest.Vcpu.Run();
        Assert.Equal((VcpuExitKind.Debug, div), (exit.Kind, exit.Rip));
        guest.Vcpu.Debug.SetGuestDebug(new GuestDebugSettings { SingleStep = true });
        exit = guest.Vcpu.Run();
        Assert.Equal((VcpuExitKind.Debug, DebugStopReason.SingleStep, handler), (exit.Kind, exit.DebugReason, exit.Rip));
        exit = guest.Vcpu.Run();
        Assert.Equal(VcpuExitKind.Debug, exit.Kind);
        Assert.Equal(0x77UL, guest.Vcpu.GetRegisters().Rbx); // one step: the handler's mov ran
    }

    [Fact]
    public void The_emulator_declares_guest_debug_and_offers_it_on_its_vcpus()
    {
        Assert.True(new EmulatorBackend().Capabilities.HasFlag(BackendCapabilities.GuestDebug));
        Assert.True(new EmulatorBackend().Capabilities.HasFlag(BackendCapabilities.PageTables)); // linear addresses go through its MMU
        using EmuGuest guest = EmuHarness.Create(EmuHarness.Assemble(a => a.hlt()));
        Assert.NotNull(guest.Vcpu.Debug);
    }

    [Fact]
    public void A_breakpoint_stops_before_its_instruction_every_time_it_is_reached()
    {
        byte[] code = Loop(out ulong store, out _);
        using EmuGuest guest = EmuHarness.Create(code);
        IVcpu vcpu = guest.Vcpu;
        vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { Breakpoints = [store] });
        ulong expected = 0;
        for (ulong round = 10; round >= 1; round--)
        {
            VcpuExit exit = vcpu.Run();
            Assert.Equal(VcpuExitKind.Debug, exit.Kind);
            Assert.Equal(DebugStopReason.Breakpoint, exit.DebugReason);
            Assert.Equal(store, exit.Rip);
            expected += round;
            Assert.Equal(expected, vcpu.GetRegisters().Rax); // the add before it ran, the store not yet
            // Step over the breakpoint the way gdb does: remove, step, insert again.
            vcpu.Debug.SetGuestDebug(new GuestDebugSettings { SingleStep = true });
            Assert.Equal(DebugStopReason.SingleStep, vcpu.Run().DebugReason);
            vcpu.Debug.SetGuestDebug(new GuestDebugSettings { Breakpoints = [store] });
        }
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal(55UL, vcpu.GetRegisters().Rax);
    }

    [Fact]
    public void Single_step_runs_exactly_one_instruction_per_run()
    {
        byte[] code = Loop(out _, out ulong top);
        using EmuGuest guest = EmuHarness.Create(code);
        IVcpu vcpu = guest.Vcpu;
        vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { SingleStep = true });
        var rips = new List<ulong>();
        VcpuExit exit;
        while ((exit = vcpu.Run()).Kind == VcpuExitKind.Debug)
        {
            Assert.Equal(DebugStopReason.SingleStep, exit.DebugReason);
            rips.Add(exit.Rip);
        }
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        Assert.Equal(2 + (10 * 4), rips.Count); // xor, mov, 10 x (add, mov, dec, jnz); the hlt ends the run
        Assert.Equal((ulong)rips.Count + 1, vcpu.InstructionsRetired);
        Assert.Equal(top, rips[1]);
        Assert.Equal(55UL, vcpu.GetRegisters().Rax);
    }

    [Fact]
    public void Stepping_over_an_out_stops_after_the_out_completed()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            a.mov(eax, 1);
            a.@out(0xE2, al);
            a.mov(ebx, 2);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.Create(code);
        IVcpu vcpu = guest.Vcpu;
        vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { SingleStep = true });
        Assert.Equal(DebugStopReason.SingleStep, vcpu.Run().DebugReason); // mov
        VcpuExit io = vcpu.Run();
        Assert.Equal(VcpuExitKind.IoOut, io.Kind);                        // the out exits first, as on KVM
        VcpuExit after = vcpu.Run();
        Assert.Equal(DebugStopReason.SingleStep, after.DebugReason);      // then the step ends right after it
        Assert.Equal(io.Rip + 2, after.Rip);
        Assert.Equal(0UL, vcpu.GetRegisters().Rbx);                      // the next instruction has not run
    }

    [Fact]
    public void A_write_watchpoint_stops_right_after_the_store_and_reports_the_watched_address()
    {
        byte[] code = Loop(out ulong store, out _, out int storeLength);
        using EmuGuest guest = EmuHarness.Create(code);
        IVcpu vcpu = guest.Vcpu;
        vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { Watchpoints = [new GuestWatchpoint(0x8004, 4, WatchpointKind.Write)] });
        VcpuExit exit = vcpu.Run();
        Assert.Equal(DebugStopReason.Watchpoint, exit.DebugReason);
        Assert.Equal(0x8004UL, exit.Address);
        Assert.Equal(store + (ulong)storeLength, exit.Rip); // the 8-byte store overlapping the watched bytes has completed
        Assert.Equal(10UL, guest.Vcpu.GetRegisters().Rax);
        Assert.Equal(4UL, vcpu.InstructionsRetired); // xor, mov, add, store

        vcpu.Debug.SetGuestDebug(new GuestDebugSettings { Watchpoints = [new GuestWatchpoint(0x9000, 8, WatchpointKind.Write)] });
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind); // nothing writes there
        Assert.Equal(55UL, vcpu.GetRegisters().Rax);
        Assert.Throws<NotSupportedException>(() => vcpu.Debug.SetGuestDebug(new GuestDebugSettings { Watchpoints = [new GuestWatchpoint(0x8000, 8, WatchpointKind.Read)] }));
    }

    [Fact]
    public void A_watchpoint_on_a_page_holding_code_keeps_self_modifying_code_working()
    {
        // mov dword [rip+1], 42 rewrites the immediate of the mov eax, 7 right after it: the watchpoint and the code
        // map share the page's flags byte.
        byte[] code =
        [
            0xC7, 0x05, 0x01, 0x00, 0x00, 0x00, 0x2A, 0x00, 0x00, 0x00, // mov dword [rip+1], 42 (rip+1 = +11)
            0xB8, 0x07, 0x00, 0x00, 0x00,                               // +10: mov eax, 7 (imm32 at +11)
            0xF4,                                                       // hlt
        ];
        using EmuGuest guest = EmuHarness.Create(code);
        IVcpu vcpu = guest.Vcpu;
        vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { Watchpoints = [new GuestWatchpoint(EmuHarness.CodeAddress + 11, 4, WatchpointKind.Write)] });
        VcpuExit exit = vcpu.Run();
        Assert.Equal(DebugStopReason.Watchpoint, exit.DebugReason);
        vcpu.Debug.SetGuestDebug(GuestDebugSettings.None);
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal(42UL, vcpu.GetRegisters().Rax);
    }

    [Fact]
    public void Host_writes_to_code_through_the_debugger_drop_the_decoded_blocks()
    {
        byte[] code = EmuHarness.Assemble(a =>
        {
            Label top = a.CreateLabel();
            a.Label(ref top);
            a.mov(eax, 1);
            a.hlt();
        });
        using EmuGuest guest = EmuHarness.RunToHalt(code);
        (GuestMemory memory, _, IVcpu vcpu) = guest;
        Assert.Equal(1UL, vcpu.GetRegisters().Rax);
        // A debugger patches the immediate (as gdb's "set {int}addr = 5" would) and restarts at the top.
        memory.Write(new GuestAddress(EmuHarness.CodeAddress + 1), BitConverter.GetBytes(5));
        vcpu.Debug!.CodeWritten(EmuHarness.CodeAddress + 1, 4);
        vcpu.SetRegisters(vcpu.GetRegisters() with { Rip = EmuHarness.CodeAddress });
        Assert.Equal(VcpuExitKind.Halt, vcpu.Run().Kind);
        Assert.Equal(5UL, vcpu.GetRegisters().Rax);
    }

    [Fact]
    public void Breakpoints_change_nothing_but_where_the_vcpu_stops()
    {
        byte[] code = Loop(out ulong store, out ulong top);
        using EmuGuest plain = EmuHarness.Create(code);
        Assert.Equal(VcpuExitKind.Halt, plain.Vcpu.Run().Kind);

        using EmuGuest debugged = EmuHarness.Create(code);
        debugged.Vcpu.Debug!.SetGuestDebug(new GuestDebugSettings { HardwareBreakpoints = [top], Breakpoints = [store] });
        int stops = 0;
        VcpuExit exit;
        while ((exit = debugged.Vcpu.Run()).Kind == VcpuExitKind.Debug)
        {
            stops++;
            // Resume past the breakpoint by moving it out of the way for one step.
            debugged.Vcpu.Debug.SetGuestDebug(new GuestDebugSettings { SingleStep = true });
            debugged.Vcpu.Run();
            debugged.Vcpu.Debug.SetGuestDebug(new GuestDebugSettings { HardwareBreakpoints = [top], Breakpoints = [store] });
        }
        Assert.Equal(VcpuExitKind.Halt, exit.Kind);
        Assert.Equal(20, stops);
        Assert.Equal(plain.Vcpu.GetRegisters(), debugged.Vcpu.GetRegisters());
        Assert.Equal(plain.Vcpu.InstructionsRetired, debugged.Vcpu.InstructionsRetired);
    }
}
