using Iced.Intel;
using Decoder = Iced.Intel.Decoder;

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

    [Theory]
    [InlineData(new byte[] { 0x90, 0xE6, 0xE2 }, 0xE2, 1, 2)]            // out 0xE2, al (the hypercall stub)
    [InlineData(new byte[] { 0x90, 0xE7, 0x80 }, 0x80, 4, 2)]            // out 0x80, eax
    [InlineData(new byte[] { 0x66, 0xE7, 0x80 }, 0x80, 2, 3)]            // out 0x80, ax
    [InlineData(new byte[] { 0x90, 0x90, 0xEE }, 0x1234, 1, 1)]          // out dx, al
    [InlineData(new byte[] { 0x90, 0x90, 0xEF }, 0x1234, 4, 1)]          // out dx, eax
    [InlineData(new byte[] { 0x90, 0x66, 0xEF }, 0x1234, 2, 2)]          // out dx, ax
    [InlineData(new byte[] { 0x90, 0xE6, 0xE2 }, 0xE3, 1, 0)]            // imm8 names another port
    [InlineData(new byte[] { 0x90, 0xE6, 0xE2 }, 0xE2, 4, 0)]            // width does not match the opcode
    [InlineData(new byte[] { 0x90, 0x90, 0xEF }, 0x1234, 2, 0)]          // 16-bit needs the 66 prefix
    [InlineData(new byte[] { 0x90, 0x90, 0x6E }, 0x1234, 1, 0)]          // outsb: left alone
    [InlineData(new byte[] { 0xE2 }, 0xE2, 1, 0)]                         // too few bytes
    public void Completed_out_length_is_found_from_the_bytes_before_rip(byte[] before, int port, int size, int expected)
    {
        Assert.Equal(expected, KvmPvm.CompletedOutLength(before, (ushort)port, (byte)size));
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
