using Iced.Intel;
using Paravirt.Abi;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Scenarios;

/// <summary>
/// Hand-assembled raw guests (flat code at the image base, no ELF) for the KVM tests: tests/Paravirt.Scenarios and
/// tests/Paravirt.Hypervisor.Tests compile this one file (the second links it), so the hypercall loop both drive is
/// written once.
/// </summary>
internal static class RawGuestCode
{
    /// <summary>Where raw code is placed and entered: the lowest address an image may use.</summary>
    internal const ulong ImageBase = EntryConvention.ImageMinAddress;

    /// <summary>Assembles <paramref name="a"/> for <see cref="ImageBase"/>.</summary>
    internal static byte[] Assemble(Assembler a)
    {
        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), ImageBase);
        return stream.ToArray();
    }

    /// <summary>
    /// A counted hypercall loop: r12 = <paramref name="iterations"/> counts down and rbx holds
    /// <paramref name="entry"/>; each round sets eax = <paramref name="code"/>, lets <paramref name="arguments"/> load
    /// the argument registers (r12 is the round), calls rbx, and lets <paramref name="check"/> test the result in rax
    /// (jumping to the returned <paramref name="bad"/> label, which the caller binds, on a wrong one). What follows the
    /// loop is the caller's to emit.
    /// </summary>
    internal static Assembler HypercallLoop(int iterations, ulong entry, uint code, Action<Assembler> arguments, Action<Assembler, Label> check, out Label bad)
    {
        var a = new Assembler(64);
        Label loop = a.CreateLabel();
        bad = a.CreateLabel();
        a.mov(r12, iterations);
        a.mov(rbx, entry);
        a.Label(ref loop);
        a.mov(eax, code);
        arguments(a);
        a.call(rbx);
        check(a, bad);
        a.dec(r12);
        a.jnz(loop);
        return a;
    }

    /// <summary>A loop round's check that the result is 2 * r12 + 1 (what the hosts' test handlers return for A1 = r12).</summary>
    internal static void ExpectTwiceR12PlusOne(Assembler a, Label bad)
    {
        a.lea(rcx, __[r12 + r12 + 1]);
        a.cmp(rax, rcx);
        a.jne(bad);
    }
}
