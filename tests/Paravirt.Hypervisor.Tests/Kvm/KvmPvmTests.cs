using Iced.Intel;
using Paravirt.Abi;
using Paravirt.Hypervisor.Backends.Kvm;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Tests.Kvm;

/// <summary>
/// The pieces of the KVM backend's PVM flavour that can be checked anywhere: the bootstrap stub and where it and
/// the PVM vCPU structs live. The flavour itself runs for real wherever /dev/kvm comes from kvm_pvm ([KvmFact]
/// tests and the scenarios in eng/test.sh).
/// </summary>
public sealed class KvmPvmTests
{
    [Fact]
    public void Bootstrap_stub_registers_the_vcpu_struct_and_halts_touching_only_rax_rcx_rdx()
    {
        byte[] code = new byte[GuestLayout.PvmBootstrapStride];
        const ulong vcpuStruct = 0x1_2345_6000;
        int length = KvmPvm.WriteBootstrap(code, vcpuStruct);
        Assert.Equal(KvmPvm.BootstrapLength, length);
        Assert.True(length <= (int)GuestLayout.PvmBootstrapStride);

        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code[..length]), GuestLayout.PvmBootstrap);
        var formatter = new NasmFormatter();
        formatter.Options.HexPrefix = "0x";
        formatter.Options.HexSuffix = null;
        formatter.Options.UppercaseHex = false;
        var text = new List<string>();
        while (decoder.IP < GuestLayout.PvmBootstrap + (ulong)length)
        {
            decoder.Decode(out Instruction instruction);
            var output = new StringOutput();
            formatter.Format(instruction, output);
            text.Add(output.ToStringAndReset());
        }
        Assert.Equal(["mov ecx,0x4b564d10", "mov eax,0x23456000", "mov edx,1", "wrmsr", "hlt"], text);
    }

    [Fact]
    public void Pvm_pages_fit_in_the_reserved_area_between_the_command_line_and_the_page_tables()
    {
        Assert.Equal(GuestLayout.CommandLine + (ulong)GuestLayout.CommandLineMax, GuestLayout.PvmBootstrap);
        Assert.True(GuestLayout.PvmBootstrap + (ulong)GuestLayout.PvmMaxVcpus * GuestLayout.PvmBootstrapStride <= GuestLayout.PvmVcpuStructs);
        Assert.Equal(GuestLayout.Pml4, GuestLayout.PvmVcpuStructs + (ulong)GuestLayout.PvmMaxVcpus * EntryConvention.PageSize);
        Assert.Equal(10, GuestLayout.PvmMaxVcpus);
    }
}
