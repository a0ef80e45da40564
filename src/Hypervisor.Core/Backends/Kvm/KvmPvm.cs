using static Paravirt.Hypervisor.Backends.Kvm.KvmIoctls;

namespace Paravirt.Hypervisor.Backends.Kvm;

/// <summary>Which kernel module serves <c>/dev/kvm</c>, as far as the backend has to know.</summary>
internal enum KvmFlavor
{
    /// <summary><c>kvm_intel</c> or <c>kvm_amd</c>: hardware virtualization.</summary>
    Hardware,

    /// <summary>
    /// <c>kvm_pvm</c> alone (PVM, KVM without hardware virtualization): a vCPU is run by KVM's instruction emulator
    /// (no SSE) until the guest registers a PVM vCPU struct, then natively at hardware CPL 3 on shadow page tables
    /// that must map the guest's pages user-accessible. See <see cref="KvmPvm"/> and Kvm/README.md.
    /// </summary>
    Pvm,
}

/// <summary>
/// What the backend does differently under <c>kvm_pvm</c>, all of it found by the experiments in
/// <c>tools/pvm-probe</c> on the PVM this project's machines run (Linux 6.18, <c>kvm_pvm</c> with the parameters
/// <c>pvm_native=Y</c>, <c>pvm_emul_batch=1024</c>); Kvm/README.md has the evidence. In short: the vCPU stays in
/// PVM's "non-PVM mode", emulated instruction by instruction, until the guest itself writes the guest-physical
/// address of a PVM vCPU struct page to MSR <see cref="MsrVcpuStruct"/> (the host's <c>KVM_SET_MSRS</c> of the same
/// value is accepted but leaves the vCPU misbehaving on <c>hlt</c>); from then on it runs natively. So each vCPU
/// first runs a host-written bootstrap stub in host-reserved memory (WRMSR, HLT) and only then starts at the
/// guest's entry with the registers the entry convention promises: guests see nothing of it.
/// </summary>
internal static class KvmPvm
{
    /// <summary>The kernel module whose <c>/dev/kvm</c> this is about.</summary>
    internal const string Module = "kvm_pvm";

    /// <summary>The PVM vCPU-struct MSR: guest-physical address of a page PVM keeps the vCPU's event state in (offset 0 is <c>event_flags</c>, as in the upstream PVM spec's <c>pvm_vcpu_struct</c>).</summary>
    internal const uint MsrVcpuStruct = 0x4B56_4D10;
    /// <summary>A read-only MSR that holds <see cref="Signature"/>.</summary>
    internal const uint MsrSignature = 0x4B56_4D11;
    /// <summary>"PVM" (<c>0x4d5650</c>, the upstream <c>PVM_SIGNATURE</c>).</summary>
    internal const ulong Signature = 0x4D_5650;

    /// <summary>Bytes of the bootstrap stub <see cref="WriteBootstrap"/> writes.</summary>
    internal const int BootstrapLength = 18;

    /// <summary>
    /// How long the bootstrap (five instructions, emulated: about 0.1 ms) may take before the vCPU is kicked out of
    /// it: only a guard against a kvm_pvm that never halts there, generous for a loaded machine.
    /// </summary>
    internal static readonly TimeSpan BootstrapTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Whether <c>/dev/kvm</c> comes from <c>kvm_pvm</c> alone (no hardware-virtualization module is loaded).</summary>
    internal static bool ServesDevKvm()
    {
        static bool Loaded(string module) => Directory.Exists($"/sys/module/{module}");
        return Loaded(Module) && !Loaded("kvm_intel") && !Loaded("kvm_amd");
    }

    /// <summary>
    /// Writes the bootstrap stub: <c>mov ecx, MsrVcpuStruct; mov eax, lo; mov edx, hi; wrmsr; hlt</c>. Only
    /// <c>rax</c>, <c>rcx</c>, <c>rdx</c> change, no flags, no memory; the host reloads every register afterwards.
    /// </summary>
    /// <returns>The stub's length: the halt exit's RIP is the stub's address plus this.</returns>
    internal static int WriteBootstrap(Span<byte> code, ulong vcpuStruct)
    {
        code[0] = 0xB9; // mov ecx, imm32
        BinaryPrimitives.WriteUInt32LittleEndian(code[1..], MsrVcpuStruct);
        code[5] = 0xB8; // mov eax, imm32
        BinaryPrimitives.WriteUInt32LittleEndian(code[6..], (uint)vcpuStruct);
        code[10] = 0xBA; // mov edx, imm32
        BinaryPrimitives.WriteUInt32LittleEndian(code[11..], (uint)(vcpuStruct >> 32));
        code[15] = 0x0F; // wrmsr
        code[16] = 0x30;
        code[17] = 0xF4; // hlt
        return BootstrapLength;
    }

    /// <summary>
    /// The length of the <c>out</c> that PVM has already executed when it reports a port write: it emulates the
    /// trapping instruction and commits it (rip past it) before <c>KVM_EXIT_IO</c>, where hardware KVM stops at the
    /// instruction and finishes it on the next <c>KVM_RUN</c>. Found from the bytes just before rip
    /// (<paramref name="before"/>, ending at rip) and the exit's port and width: <c>out imm8</c> (E6/E7, 66 E7) or
    /// <c>out dx</c> (EE/EF, 66 EF). 0 when the bytes are no such instruction (prefixed or string forms): the exit then
    /// keeps PVM's rip. Only the reported rip depends on it; execution does not.
    /// </summary>
    internal static int CompletedOutLength(ReadOnlySpan<byte> before, ushort port, byte size)
    {
        byte b1 = At(before, 1), b2 = At(before, 2), b3 = At(before, 3);
        bool immediate = port <= 0xFF && b1 == port;
        return size switch
        {
            1 when immediate && b2 == 0xE6 => 2,
            1 when b1 == 0xEE => 1,
            4 when immediate && b2 == 0xE7 => 2,
            4 when b1 == 0xEF => 1,
            2 when immediate && b2 == 0xE7 && b3 == 0x66 => 3,
            2 when b1 == 0xEF && b2 == 0x66 => 2,
            _ => 0,
        };

        static byte At(ReadOnlySpan<byte> bytes, int back) => bytes.Length >= back ? bytes[^back] : (byte)0;
    }

    /// <summary>
    /// Checks that this <c>kvm_pvm</c> has the MSR interface the bootstrap relies on: a scratch vCPU's
    /// <see cref="MsrSignature"/> reads <see cref="Signature"/>. Null when it does, otherwise why not.
    /// </summary>
    [SupportedOSPlatform("linux")]
    internal static string? CheckInterface(Kvm kvm)
    {
        try
        {
            using KvmFd vm = kvm.CreateVmFd();
            int fd = vm.Ioctl(KVM_CREATE_VCPU, 0UL, out int errno);
            if (fd < 0)
            {
                return $"{Kvm.DevicePath} is provided by {Module} (PVM) and KVM_CREATE_VCPU failed (errno {errno})";
            }
            using var vcpu = new KvmFd(fd);
            if (!TryGetMsr(vcpu, MsrSignature, out ulong value) || value != Signature)
            {
                return $"{Kvm.DevicePath} is provided by {Module} (PVM, no hardware virtualization) without the vCPU-struct MSR interface this backend bootstraps PVM mode with (MSR 0x{MsrSignature:x} {(value == 0 ? "is absent" : $"reads 0x{value:x}")}, expected 0x{Signature:x}): guests would run in KVM's instruction emulator, where SSE fails; use --backend emulator";
            }
            return null;
        }
        catch (BackendUnavailableException e)
        {
            return $"{Kvm.DevicePath} is provided by {Module} (PVM): {e.Message}";
        }
    }

    /// <summary><c>KVM_GET_MSRS</c> of one MSR; false when the kernel does not know it.</summary>
    [SupportedOSPlatform("linux")]
    internal static unsafe bool TryGetMsr(KvmFd vcpu, uint index, out ulong value)
    {
        var msrs = new kvm_msrs_one { header = new kvm_msrs { nmsrs = 1 }, entry = new kvm_msr_entry { index = index } };
        // Safe: msrs is a local holding the header and the one entry nmsrs announces.
        int n = vcpu.Ioctl(KVM_GET_MSRS, &msrs, out _);
        value = n == 1 ? msrs.entry.data : 0;
        return n == 1;
    }
}
