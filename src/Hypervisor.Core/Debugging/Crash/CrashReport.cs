using System.Globalization;
using System.Text;

namespace Paravirt.Hypervisor.Debugging;

/// <summary>How a backtrace frame was found.</summary>
public enum FrameSource
{
    /// <summary>The faulting instruction (rip).</summary>
    Rip,
    /// <summary>Unwound with the image's DWARF call-frame information (<c>.eh_frame</c>/<c>.debug_frame</c>).</summary>
    CallFrameInfo,
    /// <summary>Unwound by following saved frame pointers (rbp chain); may skip or invent frames in code built without them.</summary>
    FramePointer,
    /// <summary>The return address on top of the stack, for a leaf without unwind information (e.g. the hypercall stub).</summary>
    StackTop,
}

/// <summary>One backtrace frame.</summary>
/// <param name="Index">0 = where the guest stopped, 1 = its caller, ...</param>
/// <param name="Address">The instruction pointer (frames above 0: the return address).</param>
/// <param name="Function">The function (ELF symbol; NativeAOT methods under ILC's names), or null.</param>
/// <param name="Offset">Bytes from the function's start.</param>
/// <param name="File">Source file from the DWARF line table, or null.</param>
/// <param name="Line">Source line, or 0.</param>
/// <param name="Source">How the frame was found.</param>
public sealed record CrashFrame(int Index, ulong Address, string? Function, ulong Offset, string? File, int Line, FrameSource Source)
{
    /// <summary><c>#1 0x100300 in main+0x1c (hello.c:30)</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"#{Index} 0x{Address:x}");
        if (Function is not null)
        {
            sb.Append(" in ").Append(Function);
            if (Offset != 0)
            {
                sb.Append(CultureInfo.InvariantCulture, $"+0x{Offset:x}");
            }
        }
        if (File is not null)
        {
            sb.Append(CultureInfo.InvariantCulture, $" ({File}:{Line})");
        }
        if (Source is FrameSource.FramePointer or FrameSource.StackTop)
        {
            sb.Append(Source == FrameSource.FramePointer ? " [frame pointer]" : " [stack top]");
        }
        return sb.ToString();
    }
}

/// <summary>One disassembled instruction around the crash.</summary>
/// <param name="Address">Its address.</param>
/// <param name="Bytes">Its encoding.</param>
/// <param name="Text">Intel-syntax text (Iced).</param>
/// <param name="Location">Function and offset, e.g. <c>divide+0x4</c>, or empty.</param>
/// <param name="IsCurrent">True for the instruction at rip.</param>
public sealed record CrashInstruction(ulong Address, byte[] Bytes, string Text, string Location, bool IsCurrent);

/// <summary>
/// What a guest crash looked like, as data (<see cref="Running.RunResult.Crash"/>): the fault, the registers and
/// control state, the instructions around rip and a symbolized backtrace. <see cref="ToString"/> gives the text the
/// CLI prints to stderr.
/// </summary>
public sealed class CrashReport
{
    internal CrashReport(GuestFaultInfo fault, VcpuState state, IReadOnlyList<CrashFrame> frames, IReadOnlyList<CrashInstruction> code, string? panicMessage, CrashFrame? location)
    {
        Location = location;
        Fault = fault;
        State = state;
        Frames = frames;
        Code = code;
        PanicMessage = panicMessage;
    }

    /// <summary>What went wrong.</summary>
    public GuestFaultInfo Fault { get; }

    /// <summary>The vCPU state at the fault (for a panic: the registers the guest reported, or those at the panic call).</summary>
    public VcpuState State { get; }

    /// <summary>General-purpose registers, rip and rflags.</summary>
    public VcpuRegisters Registers => State.Registers;

    /// <summary>The backtrace, innermost first.</summary>
    public IReadOnlyList<CrashFrame> Frames { get; }

    /// <summary>The instructions around rip.</summary>
    public IReadOnlyList<CrashInstruction> Code { get; }

    /// <summary>
    /// The frame the failure is attributed to: the faulting instruction, or for a panic the first frame outside the
    /// Guest SDK's panic path (<c>pv_panic</c>, C# <c>FailFast</c> and throw helpers, the hypercall stub).
    /// </summary>
    public CrashFrame? Location { get; }

    /// <summary>The guest's panic message, for <see cref="GuestFaultKind.Panic"/>.</summary>
    public string? PanicMessage { get; }

    /// <summary>The full multi-line report.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        CrashFrame? top = Location;
        sb.Append(Fault.Description);
        if (top is not null)
        {
            sb.Append(CultureInfo.InvariantCulture, $" at 0x{top.Address:x}");
            if (top.Function is not null)
            {
                sb.Append(" in ").Append(top.Function);
                if (top.Offset != 0)
                {
                    sb.Append(CultureInfo.InvariantCulture, $"+0x{top.Offset:x}");
                }
            }
            if (top.File is not null)
            {
                sb.Append(CultureInfo.InvariantCulture, $" ({top.File}:{top.Line})");
            }
        }
        sb.AppendLine();
        if (Fault.Address is ulong address)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"  fault address 0x{address:x}");
        }
        VcpuRegisters r = Registers;
        sb.AppendLine("  registers:");
        Row(sb, ("rax", r.Rax), ("rbx", r.Rbx), ("rcx", r.Rcx), ("rdx", r.Rdx));
        Row(sb, ("rsi", r.Rsi), ("rdi", r.Rdi), ("rbp", r.Rbp), ("rsp", r.Rsp));
        Row(sb, ("r8", r.R8), ("r9", r.R9), ("r10", r.R10), ("r11", r.R11));
        Row(sb, ("r12", r.R12), ("r13", r.R13), ("r14", r.R14), ("r15", r.R15));
        sb.AppendLine(CultureInfo.InvariantCulture, $"    rip 0x{r.Rip:x16}  rflags 0x{r.Rflags:x8} [{FlagNames(r.Rflags)}]");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    cs 0x{State.Cs.Selector:x4}  ss 0x{State.Ss.Selector:x4}  ds 0x{State.Ds.Selector:x4}  es 0x{State.Es.Selector:x4}  fs 0x{State.Fs.Selector:x4} (base 0x{State.Fs.Base:x})  gs 0x{State.Gs.Selector:x4} (base 0x{State.Gs.Base:x})");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    cr0 0x{State.Cr0:x}  cr2 0x{State.Cr2:x}  cr3 0x{State.Cr3:x}  cr4 0x{State.Cr4:x}  efer 0x{State.Efer:x}");
        if (Code.Count > 0)
        {
            sb.AppendLine("  code:");
            foreach (CrashInstruction i in Code)
            {
                string bytes = Convert.ToHexString(i.Bytes).ToLowerInvariant();
                string location = i.Location.Length > 0 ? $" <{i.Location}>" : "";
                sb.AppendLine(CultureInfo.InvariantCulture, $"  {(i.IsCurrent ? "=>" : "  ")} 0x{i.Address:x}{location}:  {bytes,-22} {i.Text}");
            }
        }
        sb.AppendLine("  backtrace:");
        if (Frames.Count == 0)
        {
            sb.AppendLine("    (none: rip is not in the image)");
        }
        foreach (CrashFrame f in Frames)
        {
            sb.Append("    ").AppendLine(f.ToString());
        }
        return sb.ToString();
    }

    private static void Row(StringBuilder sb, params (string Name, ulong Value)[] registers)
    {
        sb.Append("   ");
        foreach ((string name, ulong value) in registers)
        {
            sb.Append(CultureInfo.InvariantCulture, $" {name,3} 0x{value:x16}");
        }
        sb.AppendLine();
    }

    private static string FlagNames(ulong f)
    {
        var names = new List<string>();
        foreach ((ulong bit, string name) in new (ulong, string)[] { (0x1, "CF"), (0x4, "PF"), (0x10, "AF"), (0x40, "ZF"), (0x80, "SF"), (0x100, "TF"), (0x200, "IF"), (0x400, "DF"), (0x800, "OF") })
        {
            if ((f & bit) != 0)
            {
                names.Add(name);
            }
        }
        return string.Join(' ', names);
    }
}
