using System.Runtime.CompilerServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Paravirt.Bench;

/// <summary>The host side of one hypercall, called the same way from the vCPU loop and from the reference loop.</summary>
internal interface IHypercallHandler
{
    long Handle(in HypercallArgs args);
}

/// <summary>Answers at once: a value computed from the argument, so the guest can check every answer arrived.</summary>
internal sealed class EchoHandler : IHypercallHandler
{
    // Not inlined into the caller's loop, so the reference measures a real call (dynamic PGO may still turn the
    // interface dispatch into a guarded direct call, as it does for any hot interface call site in user code).
    [MethodImpl(MethodImplOptions.NoInlining)]
    public long Handle(in HypercallArgs args) => (long)(args.A1 * 3) + 1;
}

/// <summary>
/// <c>hypercall COUNT RUNS [BACKEND]</c>: hypercall round trips against a .NET interface call of the same handler,
/// in one process, best of RUNS for each. The guest (assembled here) calls the hypercall page COUNT times in a loop
/// and sums the answers; the host loop is the bare vCPU's: <see cref="IVcpu.Run"/>, <see cref="HypercallTrap.TryRead"/>,
/// the handler through <see cref="IHypercallHandler"/>, <see cref="HypercallTrap.Complete"/>. The reference calls
/// the same handler through the same interface 10 million times (after a warm-up, so tiered compilation has
/// settled). Timed with Stopwatch over the whole loop, not BenchmarkDotNet: both sides must be measured in the same
/// process within the same second on a shared machine, and one round trip only exists inside a running guest loop.
/// Prints key=value lines: ns per round trip, ns per interface call, and the bytes allocated per round trip.
/// </summary>
internal static class HypercallBench
{
    private const ulong ImageBase = 0x10_0000;
    private const uint EchoCode = 0x1000, DoneCode = 0x1001; // the user-defined range: nothing built in is called

    public static int Run(int count, int runs, string backendName)
    {
        byte[] code = AssembleGuest(count);
        IHypercallHandler handler = new EchoHandler();
        ulong expected = 0;
        for (ulong i = (ulong)count; i > 0; i--)
        {
            expected += (i * 3) + 1;
        }

        IHypervisorBackend backend = backendName == KvmBackend.BackendName ? new KvmBackend() : new EmulatorBackend();
        if (backend.Probe() is { IsAvailable: false } probe)
        {
            Console.WriteLine($"unavailable=\"{probe.Reason}\"");
            return 0;
        }
        for (int i = 0; i < 5; i++)
        {
            CallLoop(handler, ReferenceCalls / 10); // tiered JIT: let the loop and the handler reach their final code
        }
        double bestTrip = double.MaxValue, bestCall = double.MaxValue, bytesPerTrip = double.NaN;
        for (int run = 1; run <= runs; run++)
        {
            using var memory = new GuestMemory(16UL << 20);
            memory.Write(new GuestAddress(ImageBase), code);
            memory.Write(new GuestAddress(GuestLayout.HypercallPage), HypercallStub.Bytes);
            using IVirtualMachine vm = backend.CreateVirtualMachine(memory, new VirtualMachineOptions());
            using IVcpu vcpu = vm.CreateVcpu(new VcpuStartState(ImageBase, memory.Size, GuestLayout.BootInfo));

            long allocated = GC.GetAllocatedBytesForCurrentThread();
            long t0 = Stopwatch.GetTimestamp();
            int trips = 0;
            while (true)
            {
                VcpuExit exit = vcpu.Run();
                if (!HypercallTrap.TryRead(vcpu, exit, out HypercallArgs args))
                {
                    Console.Error.WriteLine($"{backend.Name}: {exit.Kind} at 0x{exit.Rip:x} {exit.Detail} after {trips} hypercalls");
                    return 1;
                }
                if (args.Code == DoneCode)
                {
                    if (args.A1 != expected)
                    {
                        Console.Error.WriteLine($"{backend.Name}: the guest summed {args.A1}, expected {expected}");
                        return 1;
                    }
                    break;
                }
                HypercallTrap.Complete(vcpu, handler.Handle(in args));
                trips++;
            }
            double tripNs = Stopwatch.GetElapsedTime(t0).TotalNanoseconds / count;
            long grown = GC.GetAllocatedBytesForCurrentThread() - allocated;
            if (trips != count)
            {
                Console.Error.WriteLine($"{backend.Name}: {trips} hypercalls, expected {count}");
                return 1;
            }

            long t1 = Stopwatch.GetTimestamp();
            long sum = CallLoop(handler, ReferenceCalls);
            double callNs = Stopwatch.GetElapsedTime(t1).TotalNanoseconds / ReferenceCalls;
            if (sum != ReferenceSum)
            {
                Console.Error.WriteLine($"the reference loop summed {sum}, expected {ReferenceSum}");
                return 1;
            }

            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{backend.Name} run {run}: {tripNs:F1} ns per round trip, {callNs:F2} ns per interface call, {grown} bytes allocated"));
            if (tripNs < bestTrip)
            {
                bestTrip = tripNs;
                bytesPerTrip = (double)grown / count;
            }
            bestCall = Math.Min(bestCall, callNs);
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"backend={backend.Name} count={count} round_trip_ns={bestTrip:F1} interface_call_ns={bestCall:F2} allocated_bytes_per_round_trip={bytesPerTrip:F3}"));
        return 0;
    }

    private const int ReferenceCalls = 10_000_000;
    private const long ReferenceSum = (3L * ReferenceCalls * (ReferenceCalls - 1) / 2) + ReferenceCalls;

    /// <summary>The reference: <paramref name="calls"/> calls of the handler through the interface, as the vCPU loop makes them.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static long CallLoop(IHypercallHandler handler, int calls)
    {
        long sum = 0;
        for (int i = 0; i < calls; i++)
        {
            var args = new HypercallArgs(EchoCode, (ulong)i, 0, 0, 0, 0);
            sum += handler.Handle(in args);
        }
        return sum;
    }

    /// <summary>r12 = COUNT; loop { rax = call page(EchoCode, r12); r13 += rax } ; call page(DoneCode, r13); hlt.</summary>
    private static byte[] AssembleGuest(int count)
    {
        var a = new Assembler(64);
        Label loop = a.CreateLabel();
        a.mov(r12, count);
        a.xor(r13d, r13d);
        a.mov(rbx, GuestLayout.HypercallPage);
        a.Label(ref loop);
        a.mov(eax, EchoCode);
        a.mov(rdi, r12);
        a.call(rbx);
        a.add(r13, rax);
        a.dec(r12);
        a.jnz(loop);
        a.mov(eax, DoneCode);
        a.mov(rdi, r13);
        a.call(rbx);
        a.hlt();
        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), ImageBase);
        return stream.ToArray();
    }
}
