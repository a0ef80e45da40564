// plugin-host: a .NET application that runs untrusted plugin code in Paravirt sandboxes.
//
//   dotnet run --project samples/plugin-host [-- path/to/plugin-guest.elf [backend]]
//
// Loads the C guest samples/plugin-guest, lists the functions its image declares, calls them with typed records
// (MessagePack on the wire), gives it a host function, snapshots it after initialization, restores between calls,
// and shows a crashing call poisoning the sandbox and a restore recovering it. Exit status 0 when every step
// behaved as described.
using Paravirt.Hypervisor.Sandboxes;

string image = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "../../../../../artifacts/guests/plugin-guest.elf");
string backend = args.Length > 1 ? args[1] : "auto";

var options = new SandboxOptions
{
    Backend = backend,
    CallTimeout = TimeSpan.FromSeconds(5),
    HostFunctions = new HostFunctionCollection().Add("GetGreeting", () => "Hello from the host"),
};
using Sandbox sandbox = Sandbox.Create(image, options);
Console.WriteLine($"plugin-host: {Path.GetFileName(image)} on {sandbox.Backend}, functions: {string.Join(", ", sandbox.Functions.Order(StringComparer.Ordinal))}");

// Typed calls: a record goes in, a record comes back.
Point scaled = sandbox.Call<Point>("Scale", new Point(3, -4), 10);
Console.WriteLine($"plugin-host: Scale({new Point(3, -4)}, 10) = {scaled}");
Console.WriteLine($"plugin-host: Add(40, 2) = {sandbox.Call<long>("Add", 40, 2)}");
Console.WriteLine($"plugin-host: Greet(\"plugin\") = {sandbox.Call<string>("Greet", "plugin")}");

// Snapshot after initialization; restore between calls so each starts from that state.
using SandboxSnapshot clean = sandbox.Snapshot();
long first = sandbox.Call<long>("Count");
long second = sandbox.Call<long>("Count");
sandbox.Restore(clean);
long afterRestore = sandbox.Call<long>("Count");
Console.WriteLine($"plugin-host: Count() = {first}, {second}; after Restore: {afterRestore}");

// A crashing call poisons the sandbox; calls are refused until a restore.
try
{
    sandbox.Call<object>("Overflow", 0);
}
catch (SandboxCallFailedException ex)
{
    Console.WriteLine($"plugin-host: Overflow(0) failed: {ex.Failure} at 0x{ex.FaultAddress:x}; state {sandbox.State}");
}
bool refused = false;
try
{
    sandbox.Call<long>("Add", 1, 1);
}
catch (SandboxPoisonedException)
{
    refused = true;
}
sandbox.Restore(clean);
long recovered = sandbox.Call<long>("Add", 1, 1);
Console.WriteLine($"plugin-host: poisoned sandbox refused a call: {refused}; after Restore: Add(1, 1) = {recovered}, state {sandbox.State}");

// Fork: a new sandbox from the snapshot, without running the guest's initialization again.
using Sandbox fork = Sandbox.Create(clean, options);
Console.WriteLine($"plugin-host: a sandbox made from the snapshot says Count() = {fork.Call<long>("Count")}");

bool ok = scaled == new Point(30, -40) && first == 1 && second == 2 && afterRestore == 1 && refused && recovered == 2;
Console.WriteLine(ok ? "plugin-host: all steps behaved as expected" : "plugin-host: UNEXPECTED RESULT");
return ok ? 0 : 1;

/// <summary>A record the host and the guest exchange (a MessagePack map {"X": .., "Y": ..}).</summary>
public sealed record Point(int X, int Y);
