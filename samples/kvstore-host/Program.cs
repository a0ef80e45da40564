// kvstore-host: a .NET program that gives a guest a paravirtual device of its own making.
//
//   dotnet run --project samples/kvstore-host [-- path/to/kvstore-guest.elf [backend]]
//
// KvStoreDevice (KvStoreDevice.cs) is a key-value store written only against the public device API. The program
// stores a greeting, runs samples/kvstore-guest with the device, and checks what the guest left in the store.
// Exit status 0 when the guest passed its checks and the store holds what it should.
using KvStore;
using Microsoft.Extensions.DependencyInjection;
using Paravirt.Abi;
using Paravirt.Hypervisor;
using Paravirt.Hypervisor.Loading;
using Paravirt.Hypervisor.Running;

string image = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "../../../../../artifacts/guests/kvstore-guest.elf");
string backend = args.Length > 1 ? args[1] : "auto";

var services = new ServiceCollection();
services.AddParavirt(o => o.DefaultTimeout = TimeSpan.FromSeconds(60));
using ServiceProvider provider = services.BuildServiceProvider();
GuestRunner runner = provider.GetRequiredService<GuestRunner>();

using var kv = new KvStoreDevice("kv0", capacity: 64);
kv.Set("greeting", "Hello from the host's key-value device");

RunResult result = runner.Run(ElfLoader.LoadFile(image, AbiVersion.Current), new GuestRunOptions
{
    Backend = backend,
    ConsoleOutput = Console.OpenStandardOutput(),
    Devices = [kv],
});

Console.WriteLine($"kvstore-host: guest {result.Outcome} with status {result.ExitStatus} on {result.Backend}; {kv.Requests} requests, {kv.Count} entries");
bool ok = result.Outcome == RunOutcome.Exited && result.ExitStatus == 0
    && kv.Get("result") == "ok" && kv.Get("key-7") == "value-49" && kv.Get("key-0") is null && !kv.IsBroken;
Console.WriteLine(ok ? "kvstore-host: the guest drove the user-defined device as expected"
                     : $"kvstore-host: unexpected: result={kv.Get("result")}, key-7={kv.Get("key-7")}, key-0={kv.Get("key-0")}, broken={kv.BrokenReason} {result.Message}");
return ok ? 0 : 1;
