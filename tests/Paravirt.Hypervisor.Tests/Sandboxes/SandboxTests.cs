using MessagePack;

namespace Paravirt.Hypervisor.Tests.Sandboxes;

/// <summary>A record as MessagePack-CSharp's contractless resolver sends it: a map {"X": .., "Y": ..}.</summary>
public sealed record Point(int X, int Y);

/// <summary>The same record with keys: an array [X, Y].</summary>
[MessagePackObject]
public sealed record KeyedPoint([property: Key(0)] int X, [property: Key(1)] int Y);

/// <summary>Sandboxes on the emulator with the C guest samples/plugin-guest: typed calls, host functions, snapshots, poisoning.</summary>
public sealed class SandboxTests
{
    internal static string PluginImage => RepoPaths.GuestImage("plugin-guest");

    internal static SandboxOptions Options(HostFunctionCollection? hostFunctions = null) => new()
    {
        Backend = "emulator",
        CallTimeout = TimeSpan.FromSeconds(20),
        HostFunctions = hostFunctions ?? new HostFunctionCollection().Add("GetGreeting", () => "Hello"),
    };

    [Fact]
    public void The_host_lists_the_guest_functions_and_the_stack_guard_from_the_image_before_running_it()
    {
        GuestImage image = ElfLoader.LoadFile(PluginImage, AbiVersion.Current);
        Assert.Superset(new HashSet<string> { "Add", "Scale", "Greet", "Count", "RoundTrip", "Overflow", "Spin" }, image.Functions.ToHashSet());
        Assert.NotNull(image.StackGuard);
        Assert.Equal(0UL, image.StackGuard!.Value % 4096);
    }

    [Fact]
    public void A_record_goes_in_and_a_record_comes_back()
    {
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options());
        Assert.Equal("emulator", sandbox.Backend);
        Assert.Equal(42L, sandbox.Call<long>("Add", 40, 2));
        Assert.Equal(new Point(30, -40), sandbox.Call<Point>("Scale", new Point(3, -4), 10));
        Assert.Equal(new Point(-6, 8), sandbox.Call<Point>("Scale", new KeyedPoint(3, -4), -2)); // array form in, map out
        Assert.Equal(500500L, sandbox.Call<long>("Initialized"));
        Assert.Equal(SandboxState.Ready, sandbox.State);
    }

    public static TheoryData<object?> EveryTypeFamily() => new()
    {
        null, true, false,
        0, 1, 127, 128, 255, 256, 65535, 65536, -1, -32, -33, -128, -129, -32768, -32769, int.MinValue, int.MaxValue,
        long.MinValue, long.MaxValue, ulong.MaxValue, (ulong)long.MaxValue + 1,
        1.5f, -0.0f, float.MaxValue, Math.PI, double.NegativeInfinity, double.Epsilon,
        "", "hello", new string('x', 31), new string('y', 32), new string('z', 300), new string('w', 70_000), "grüße, 世界",
        new byte[0], new byte[] { 1, 2, 3 }, new byte[300], new byte[70_000],
        new object?[0], new object?[] { 1, "two", null, new object?[] { 3.0 } }, Enumerable.Range(0, 20).Cast<object?>().ToArray(),
        new Dictionary<string, object?> { ["a"] = 1, ["b"] = new object?[] { true } },
        Enumerable.Range(0, 20).ToDictionary(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture), i => (object?)i),
        new DateTime(2026, 11, 5, 12, 34, 56, DateTimeKind.Utc),
        new DateTime(1969, 1, 1, 0, 0, 0, 123, DateTimeKind.Utc),
        new DateTime(2500, 1, 1, 0, 0, 0, 1, DateTimeKind.Utc),
    };

    [Theory]
    [MemberData(nameof(EveryTypeFamily))]
    public void Every_MessagePack_type_family_survives_the_guest_typed_reader_and_writer(object? value)
    {
        Sandbox sandbox = SharedSandbox.Value; // one sandbox for every value (initialized once)
        lock (SharedSandbox)
        {
            byte[] sent = MessagePackSerializer.Serialize(value, SandboxOptions.DefaultSerializerOptions);
            byte[] back = sandbox.CallRaw("RoundTrip", [0x91, .. sent]);
            Assert.Equal(Normalize(sent), Normalize(back));
            byte[] echoed = sandbox.CallRaw("Echo", [0x91, .. sent]);
            Assert.Equal(sent, echoed);
        }
    }

    /// <summary>The guest writes the shortest encoding; compare values, not encodings.</summary>
    private static string Normalize(byte[] payload) => MessagePackSerializer.ConvertToJson(payload);

    private static readonly Lazy<Sandbox> SharedSandbox = new(() => Sandbox.Create(PluginImage, Options()));

    [Fact]
    public void A_guest_error_carries_its_status_and_message_and_leaves_the_sandbox_usable()
    {
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options());
        GuestFunctionException ex = Assert.Throws<GuestFunctionException>(() => sandbox.Call<object>("Fail", "the plugin says no"));
        Assert.Equal(HypercallStatus.Invalid, ex.Status);
        Assert.Equal("the plugin says no", ex.GuestMessage);
        Assert.Equal(SandboxState.Ready, sandbox.State);
        Assert.Equal(3L, sandbox.Call<long>("Add", 1, 2));

        GuestFunctionException wrongType = Assert.Throws<GuestFunctionException>(() => sandbox.Call<long>("Add", "one", 2));
        Assert.Equal(HypercallStatus.Invalid, wrongType.Status);
        GuestFunctionException notAnInt = Assert.Throws<GuestFunctionException>(() => sandbox.Call<long>("Greet", "x"));
        Assert.Equal(HypercallStatus.Protocol, notAnInt.Status); // the result is a string
        Assert.Throws<ArgumentException>(() => sandbox.Call<long>("NoSuchFunction"));
        Assert.Throws<ArgumentException>(() => sandbox.Call<string>("Echo", new string('x', 300_000))); // larger than the call buffer
        Assert.Equal(SandboxState.Ready, sandbox.State);
    }

    [Fact]
    public void The_guest_calls_host_functions_and_gets_typed_errors_when_they_throw_or_do_not_exist()
    {
        HostFunctionCollection functions = new HostFunctionCollection()
            .Add("GetGreeting", () => "Good morning")
            .Add("Double", (long x) => x * 2)
            .Add("Describe", (Point p) => $"({p.X}|{p.Y})")
            .Add<long, long>("Throws", _ => throw new InvalidOperationException("the host function broke"));
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options(functions));
        Assert.Equal("Good morning, plugin!", sandbox.Call<string>("Greet", "plugin"));
        Assert.Equal(42L, sandbox.Call<long>("CallHost", "Double", 21));
        Assert.Equal("(1|2)", sandbox.Call<string>("CallHost", "Describe", new Point(1, 2)));

        GuestFunctionException threw = Assert.Throws<GuestFunctionException>(() => sandbox.Call<long>("CallHost", "Throws", 1));
        Assert.Equal(HypercallStatus.HostFunctionFailed, threw.Status);
        Assert.Contains("the host function broke", threw.GuestMessage, StringComparison.Ordinal);

        GuestFunctionException missing = Assert.Throws<GuestFunctionException>(() => sandbox.Call<long>("CallHost", "Nope", 1));
        Assert.Equal(HypercallStatus.NotFound, missing.Status);

        GuestFunctionException badArg = Assert.Throws<GuestFunctionException>(() => sandbox.Call<long>("CallHost", "Double", "not a number"));
        Assert.Equal(HypercallStatus.Invalid, badArg.Status);
        Assert.Equal(SandboxState.Ready, sandbox.State);
    }

    [Fact]
    public void Restore_returns_memory_registers_and_state_to_the_snapshot_and_copies_only_changed_pages()
    {
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options());
        using SandboxSnapshot clean = sandbox.Snapshot();
        Assert.Equal(1L, sandbox.Call<long>("Count"));
        Assert.Equal(2L, sandbox.Call<long>("Count"));
        sandbox.Restore(clean);
        Assert.InRange(sandbox.LastRestoredPages, 1, 64); // the counter, the stack, the call and result buffers
        Assert.Equal(1L, sandbox.Call<long>("Count"));

        Assert.Equal(200UL, sandbox.Call<ulong>("Dirty", 200));
        sandbox.Restore(clean);
        Assert.InRange(sandbox.LastRestoredPages, 200, 264);
        Assert.Equal(1L, sandbox.Call<long>("Count"));

        // A second snapshot layered on the first: both restore exactly.
        Assert.Equal(2L, sandbox.Call<long>("Count"));
        using SandboxSnapshot two = sandbox.Snapshot();
        Assert.Equal(3L, sandbox.Call<long>("Count"));
        sandbox.Restore(clean);
        Assert.Equal(1L, sandbox.Call<long>("Count"));
        sandbox.Restore(two);
        Assert.Equal(3L, sandbox.Call<long>("Count"));
        sandbox.Restore(two);
        Assert.Equal(3L, sandbox.Call<long>("Count"));

        // A disposed snapshot is refused before anything changes.
        two.Dispose();
        Assert.Throws<ObjectDisposedException>(() => sandbox.Restore(two));
        Assert.Throws<ObjectDisposedException>(() => Sandbox.Create(two, Options()));
        Assert.Equal(4L, sandbox.Call<long>("Count"));
    }

    [Fact]
    public void Device_state_is_part_of_the_snapshot_for_restore_and_for_sandboxes_made_from_it()
    {
        var parentOutput = new MemoryStream();
        var forkOutput = new MemoryStream();
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options() with { Devices = [() => new Paravirt.Hypervisor.Devices.Console.ConsoleDevice("console", parentOutput)] });
        using SandboxSnapshot clean = sandbox.Snapshot();
        Assert.Equal(3L, sandbox.Call<long>("Log", "one"));
        Assert.Equal(3L, sandbox.Call<long>("Log", "two"));
        sandbox.Restore(clean); // the guest's ring goes back: so must the device's position in it
        Assert.Equal(5L, sandbox.Call<long>("Log", "three"));
        Assert.Equal("onetwothree", System.Text.Encoding.ASCII.GetString(parentOutput.ToArray()));
        Assert.False(sandbox.Devices[0].IsBroken, sandbox.Devices[0].BrokenReason);

        using Sandbox fork = Sandbox.Create(clean, Options() with { Devices = [() => new Paravirt.Hypervisor.Devices.Console.ConsoleDevice("console", forkOutput)] });
        Assert.Equal(4L, fork.Call<long>("Log", "fork"));
        Assert.Equal("fork", System.Text.Encoding.ASCII.GetString(forkOutput.ToArray()));
        Assert.True(fork.Devices[0].IsAttached);

        Assert.Throws<ArgumentException>(() => Sandbox.Create(clean, Options())); // the same devices, or none fits
    }

    [Fact]
    public void RestoreAfterEachCall_starts_every_call_from_the_initialized_state()
    {
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options() with { RestoreAfterEachCall = true });
        Assert.Equal(1L, sandbox.Call<long>("Count"));
        Assert.Equal(1L, sandbox.Call<long>("Count"));
        Assert.Throws<SandboxCallFailedException>(() => sandbox.Call<object>("Crash"));
        Assert.Equal(SandboxState.Ready, sandbox.State); // restored automatically
        Assert.Equal(1L, sandbox.Call<long>("Count"));
    }

    [Fact]
    public void A_crash_poisons_the_sandbox_until_it_is_restored()
    {
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options());
        using SandboxSnapshot clean = sandbox.Snapshot();
        SandboxCallFailedException crash = Assert.Throws<SandboxCallFailedException>(() => sandbox.Call<object>("Crash"));
        Assert.Equal(SandboxFailure.Faulted, crash.Failure);
        Assert.Contains("invalid opcode", crash.Message, StringComparison.Ordinal);
        Assert.Equal(SandboxState.Poisoned, sandbox.State);
        Assert.Throws<SandboxPoisonedException>(() => sandbox.Call<long>("Add", 1, 1));
        Assert.Throws<InvalidOperationException>(() => sandbox.Snapshot());
        sandbox.Restore(clean);
        Assert.Equal(SandboxState.Ready, sandbox.State);
        Assert.Equal(2L, sandbox.Call<long>("Add", 1, 1));
    }

    [Fact]
    public void A_stack_overflow_is_reported_as_such_with_the_address_in_the_guard_page()
    {
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options());
        using SandboxSnapshot clean = sandbox.Snapshot();
        ulong guard = sandbox.Machine.Image.StackGuard!.Value;
        SandboxCallFailedException ex = Assert.Throws<SandboxCallFailedException>(() => sandbox.Call<object>("Overflow", 0));
        Assert.Equal(SandboxFailure.StackOverflow, ex.Failure);
        Assert.NotNull(ex.FaultAddress);
        Assert.InRange(ex.FaultAddress!.Value, guard, guard + 4095);
        Assert.Contains("stack overflow", ex.Message, StringComparison.Ordinal);
        sandbox.Restore(clean);
        Assert.Equal(5L, sandbox.Call<long>("Add", 2, 3));
    }

    [Fact]
    public void Timeouts_budgets_cancellation_and_exit_each_poison_with_their_reason()
    {
        using Sandbox sandbox = Sandbox.Create(PluginImage, Options() with { CallTimeout = TimeSpan.FromMilliseconds(200) });
        using SandboxSnapshot clean = sandbox.Snapshot();
        Assert.Equal(SandboxFailure.TimedOut, Assert.Throws<SandboxCallFailedException>(() => sandbox.Call<object>("Spin")).Failure);
        sandbox.Restore(clean);
        Assert.Equal(SandboxFailure.Exited, Assert.Throws<SandboxCallFailedException>(() => sandbox.Call<object>("Exit", 3)).Failure);
        sandbox.Restore(clean);
        // Cancellation on a sandbox whose call timeout is far away: with the 200 ms one above, a loaded machine fired
        // the 100 ms cancellation after the timeout (seen in make test at load 20: TimedOut instead of Canceled).
        using (Sandbox patient = Sandbox.Create(PluginImage, Options() with { CallTimeout = TimeSpan.FromMinutes(1) }))
        using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            Assert.Equal(SandboxFailure.Canceled, Assert.Throws<SandboxCallFailedException>(() => patient.Call<object>("Spin", [], cts.Token)).Failure);
        }
        Assert.Equal(7L, sandbox.Call<long>("Add", 3, 4));

        using Sandbox budgeted = Sandbox.Create(PluginImage, Options() with { CallInstructionBudget = 100_000 });
        Assert.Equal(7L, budgeted.Call<long>("Add", 3, 4)); // a short call fits
        Assert.Equal(SandboxFailure.BudgetExhausted, Assert.Throws<SandboxCallFailedException>(() => budgeted.Call<object>("Spin")).Failure);
    }

    [Fact]
    public void Sandboxes_made_from_a_snapshot_skip_initialization_and_are_independent()
    {
        using Sandbox parent = Sandbox.Create(PluginImage, Options());
        Assert.Equal(1L, parent.Call<long>("Count"));
        using SandboxSnapshot snapshot = parent.Snapshot();
        using Sandbox a = Sandbox.Create(snapshot, Options());
        using Sandbox b = Sandbox.Create(snapshot, Options());
        Assert.Equal(2L, a.Call<long>("Count"));
        Assert.Equal(3L, a.Call<long>("Count"));
        Assert.Equal(2L, b.Call<long>("Count"));
        Assert.Equal(2L, parent.Call<long>("Count"));
        Assert.Equal(500500L, b.Call<long>("Initialized"));
        a.Restore(snapshot);
        Assert.Equal(2L, a.Call<long>("Count"));
    }

    [Fact]
    public void Many_sandboxes_run_in_parallel_each_with_its_own_state()
    {
        using Sandbox seed = Sandbox.Create(PluginImage, Options());
        using SandboxSnapshot snapshot = seed.Snapshot();
        var sandboxes = Enumerable.Range(0, 8).Select(_ => Sandbox.Create(snapshot, Options())).ToArray();
        try
        {
            long[][] counts = new long[sandboxes.Length][];
            Parallel.For(0, sandboxes.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
            {
                counts[i] = [.. Enumerable.Range(0, 10).Select(_ => sandboxes[i].Call<long>("Count"))];
            });
            foreach (long[] c in counts)
            {
                Assert.Equal(Enumerable.Range(1, 10).Select(x => (long)x), c);
            }
        }
        finally
        {
            foreach (Sandbox s in sandboxes)
            {
                s.Dispose();
            }
        }
    }

    [Fact]
    public void A_second_concurrent_call_on_one_sandbox_is_refused()
    {
        HostFunctionCollection functions = new HostFunctionCollection()
            .Add("GetGreeting", () => "Hello")
            .Add("Reenter", (long _) => Holder.Sandbox!.Call<long>("Add", 1, 1));
        using Sandbox s = Sandbox.Create(PluginImage, Options(functions));
        Holder.Sandbox = s;
        GuestFunctionException ex = Assert.Throws<GuestFunctionException>(() => s.Call<long>("CallHost", "Reenter", 0));
        Assert.Equal(HypercallStatus.HostFunctionFailed, ex.Status);
        Assert.Contains("one call at a time", ex.GuestMessage, StringComparison.Ordinal);
        Assert.Equal(SandboxState.Ready, s.State);
    }

    [Fact]
    public void Disposing_a_sandbox_during_a_call_on_another_thread_stops_the_call_first()
    {
        Sandbox sandbox = Sandbox.Create(PluginImage, Options() with { CallTimeout = null });
        Task<object> spin = Task.Run(() => sandbox.Call<object>("Spin"));
        Assert.True(SpinWait.SpinUntil(() => sandbox.IsBusy, TimeSpan.FromSeconds(30)), "the call did not start");
        Thread.Sleep(50);
        sandbox.Dispose();
        AggregateException ex = Assert.Throws<AggregateException>(() => spin.Wait(TimeSpan.FromSeconds(30)));
        Assert.Equal(SandboxFailure.Canceled, Assert.IsType<SandboxCallFailedException>(ex.InnerException).Failure);
        Assert.Equal(SandboxState.Disposed, sandbox.State);
        Assert.Throws<ObjectDisposedException>(() => sandbox.Call<long>("Add", 1, 2));
    }

    private static class Holder
    {
        public static Sandbox? Sandbox { get; set; }
    }

    [Fact]
    public void A_CSharp_guest_serves_the_same_calls_through_the_core_library()
    {
        using Sandbox sandbox = Sandbox.Create(RepoPaths.GuestImage("plugin-cs"), Options(new HostFunctionCollection().Add("GetGreeting", () => "Hej")));
        Assert.Equal(["Add", "Count", "Fail", "Greet", "Scale"], sandbox.Functions.Order(StringComparer.Ordinal));
        Assert.Equal(42L, sandbox.Call<long>("Add", 40, 2));
        Assert.Equal(new Point(-30, 40), sandbox.Call<Point>("Scale", new Point(3, -4), -10));
        Assert.Equal("Hej, C#!", sandbox.Call<string>("Greet", "C#"));
        GuestFunctionException ex = Assert.Throws<GuestFunctionException>(() => sandbox.Call<object>("Fail", "no"));
        Assert.Equal(HypercallStatus.Invalid, ex.Status);
        Assert.Equal("no", ex.GuestMessage);
        using SandboxSnapshot clean = sandbox.Snapshot();
        Assert.Equal(1L, sandbox.Call<long>("Count"));
        Assert.Equal(2L, sandbox.Call<long>("Count"));
        sandbox.Restore(clean);
        Assert.Equal(1L, sandbox.Call<long>("Count"));
        Assert.Equal(HypercallStatus.Invalid, Assert.Throws<GuestFunctionException>(() => sandbox.Call<long>("Add", "x", 1)).Status);
    }

    [Fact]
    public async Task The_plugin_host_sample_runs_every_step_on_the_emulator()
    {
        Integration.SampleProgram.Result run = await Integration.SampleProgram.RunAsync("plugin-host", PluginImage, "emulator");
        string output = run.Output;
        Assert.True(run.ExitCode == 0, $"plugin-host: {run}");
        Assert.Contains("plugin-host: all steps behaved as expected", output, StringComparison.Ordinal);
        Assert.Contains("StackOverflow", output, StringComparison.Ordinal);
    }

    [Fact]
    public void An_image_without_guest_functions_is_not_a_sandbox()
    {
        SandboxInitializationException ex = Assert.Throws<SandboxInitializationException>(() => Sandbox.Create(RepoPaths.GuestImage("hello"), Options()));
        Assert.Contains("no guest functions", ex.Message, StringComparison.Ordinal);
    }
}
