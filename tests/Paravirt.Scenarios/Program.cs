using Paravirt.Scenarios;

// Runs the guest scenarios and prints one line per scenario:
//   SCENARIO <name> PASS|FAIL|SKIP <detail>
// then "SCENARIOS DONE <n> passed, <m> failed". Exit code 0 only when every scenario passed and at least one ran.
// Usage: Paravirt.Scenarios <guest-image-dir> [scenario-name ...]
//        Paravirt.Scenarios <guest-image-dir> --bench-linux [runs]     (bench/linux.sh)
// Run directly on this machine's /dev/kvm by tests/kvm-direct/run.sh (kvm_pvm on this project's machines), and
// built with NativeAOT and run inside a nested-KVM VM by tests/nested-kvm/run.sh.

string guestDir = args.Length > 0 ? args[0] : Path.Combine("artifacts", "guests");
if (args.Length > 1 && args[1] == "--bench-linux")
{
    // bench/linux.sh: start-up and system call round trip of the Linux samples, guest against native (BENCH lines)
    return LinuxBench.Run(guestDir, args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 3);
}
HashSet<string> only = [.. args.Skip(1)];

if (!OperatingSystem.IsLinux())
{
    Console.WriteLine("SCENARIOS DONE 0 passed, 0 failed (the KVM scenarios need Linux)");
    return 1;
}

int passed = 0, failed = 0, skipped = 0;
foreach ((string name, Func<string> run) in KvmScenarios.All(guestDir).Concat(DeviceScenarios.All(guestDir)).Concat(CrossBackendScenarios.All(guestDir)).Concat(LinuxScenarios.All(guestDir)).Concat(SandboxScenarios.All(guestDir)).Concat(DebugScenarios.All(guestDir)))
{
    if (only.Count > 0 && !only.Contains(name))
    {
        continue;
    }
    string line;
    try
    {
        line = $"SCENARIO {name} PASS {run()}";
        passed++;
    }
    catch (ScenarioSkippedException e)
    {
        line = $"SCENARIO {name} SKIP {e.Message}";
        skipped++;
    }
#pragma warning disable CA1031 // a scenario's failure of any kind is reported, and the next scenario runs
    catch (Exception e)
#pragma warning restore CA1031
    {
        line = $"SCENARIO {name} FAIL {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}";
        failed++;
    }
    Console.Out.Flush();
    Console.WriteLine(line);
    Console.Out.Flush();
}
Console.WriteLine($"SCENARIOS DONE {passed} passed, {failed} failed{(skipped > 0 ? $", {skipped} skipped" : "")}");
return failed == 0 && passed > 0 ? 0 : 1;
