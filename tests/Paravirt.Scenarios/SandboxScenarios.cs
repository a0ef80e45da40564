using MessagePack;
using Paravirt.Hypervisor.Sandboxes;

namespace Paravirt.Scenarios;

/// <summary>
/// Sandboxes on KVM for real: typed calls, a host function, snapshot and restore through KVM_GET_DIRTY_LOG, the stack
/// guard page as a hole between memory slots, and a sandbox made from a snapshot. Statically typed calls and
/// <see cref="MessagePackSerializerOptions.Standard"/> only: this program is published with NativeAOT.
/// </summary>
internal static class SandboxScenarios
{
    public static IEnumerable<(string Name, Func<string> Run)> All(string guestDir) =>
    [
        ("kvm-sandbox", () => Sandboxes(guestDir)),
    ];

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new InvalidOperationException(message);
        }
    }

    private static string Sandboxes(string guestDir)
    {
        string image = Path.Combine(guestDir, "plugin-guest.elf");
        Check(File.Exists(image), $"{image} is missing (build samples/plugin-guest first)");
        var options = new SandboxOptions
        {
            Backend = "kvm",
            CallTimeout = TimeSpan.FromSeconds(60),
            SerializerOptions = MessagePackSerializerOptions.Standard,
            HostFunctions = new HostFunctionCollection().Add("GetGreeting", () => "Hello from KVM"),
        };
        using Sandbox sandbox = Sandbox.Create(image, options);
        Check(sandbox.Backend == "kvm", $"backend {sandbox.Backend}");
        long sum = sandbox.Call<long, long, long>("Add", 40, 2);
        Check(sum == 42, $"Add(40, 2) = {sum}");
        string greeting = sandbox.Call<string, string>("Greet", "kvm");
        Check(greeting == "Hello from KVM, kvm!", $"Greet = {greeting}");

        using SandboxSnapshot clean = sandbox.Snapshot();
        long c1 = Count(sandbox), c2 = Count(sandbox);
        ulong dirtied = sandbox.Call<ulong, ulong>("Dirty", 200);
        sandbox.Restore(clean);
        int restored = sandbox.LastRestoredPages;
        Check(c1 == 1 && c2 == 2 && dirtied == 200, $"Count {c1}, {c2}; Dirty {dirtied}");
        Check(restored >= 200, $"the restore copied {restored} pages; the guest dirtied 200 (KVM_GET_DIRTY_LOG missed some)");
        long afterRestore = Count(sandbox);
        Check(afterRestore == 1, $"Count after restore = {afterRestore}");

        ulong guard = Paravirt.Hypervisor.Loading.ElfLoader.LoadFile(image, Paravirt.Abi.AbiVersion.Current).StackGuard ?? 0;
        SandboxCallFailedException? overflow = null;
        try
        {
            sandbox.Call<ulong, ulong>("Overflow", 0);
        }
        catch (SandboxCallFailedException ex)
        {
            overflow = ex;
        }
        Check(overflow is not null, "Overflow returned");
        Check(overflow!.Failure == SandboxFailure.StackOverflow && overflow.FaultAddress is ulong a && a >= guard && a < guard + 4096,
            $"Overflow: {overflow.Failure} at 0x{overflow.FaultAddress:x} ({overflow.Message}); guard page 0x{guard:x}");
        Check(sandbox.State == SandboxState.Poisoned, "not poisoned after the overflow");
        sandbox.Restore(clean);
        long recovered = sandbox.Call<long, long, long>("Add", 1, 1);
        Check(recovered == 2, $"Add after restore = {recovered}");

        using Sandbox fork = Sandbox.Create(clean, options);
        long forkCount = Count(fork);
        Check(forkCount == 1, $"the fork's Count = {forkCount}");
        return $"typed calls, host function, restore of {restored} dirty pages, stack overflow at 0x{overflow.FaultAddress:x}, fork";
    }

    private static long Count(Sandbox sandbox) => new MessagePackReader(sandbox.CallRaw("Count", [0x90])).ReadInt64();
}
