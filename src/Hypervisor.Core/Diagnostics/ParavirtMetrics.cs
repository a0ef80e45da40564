using System.Diagnostics.Metrics;

namespace Paravirt.Hypervisor.Diagnostics;

/// <summary>
/// Paravirt's instruments, on the meter <see cref="MeterName"/>: VM exits by kind, hypercalls by code, guest runs
/// and their duration. Created through <see cref="IMeterFactory"/> when the application registered metrics
/// (<c>services.AddMetrics()</c>), otherwise on a private meter. Recording is skipped cheaply when nobody listens.
/// </summary>
public sealed class ParavirtMetrics : IDisposable
{
    /// <summary>The meter name to listen to (e.g. <c>dotnet-counters monitor --counters Paravirt.Hypervisor</c>).</summary>
    public const string MeterName = "Paravirt.Hypervisor";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Counter<long> _exits;
    private readonly Counter<long> _hypercalls;
    private readonly Counter<long> _runs;
    private readonly Histogram<double> _runDuration;
    private readonly Counter<long> _deviceBytes;

    /// <summary>Creates the instruments.</summary>
    public ParavirtMetrics(IMeterFactory? meterFactory = null)
    {
        if (meterFactory is null)
        {
            _meter = new Meter(MeterName);
            _ownsMeter = true;
        }
        else
        {
            _meter = meterFactory.Create(MeterName);
        }
        _exits = _meter.CreateCounter<long>("paravirt.vm.exits", "{exit}", "VM exits handled by the host, by kind.");
        _hypercalls = _meter.CreateCounter<long>("paravirt.hypercalls", "{call}", "Hypercalls dispatched, by function code (codes nobody registered: name \"other\", no code).");
        _runs = _meter.CreateCounter<long>("paravirt.guest.runs", "{run}", "Guest runs finished, by outcome.");
        _runDuration = _meter.CreateHistogram<double>("paravirt.guest.run.duration", "s", "Wall-clock duration of guest runs.");
        _deviceBytes = _meter.CreateCounter<long>("paravirt.device.bytes", "By", "Bytes moved by paravirtual devices, by device and direction (read, write, tx, rx).");
    }

    internal void RecordExit(string backend, VcpuExitKind kind)
    {
        if (_exits.Enabled)
        {
            _exits.Add(1, new KeyValuePair<string, object?>("paravirt.backend", backend), new KeyValuePair<string, object?>("paravirt.exit.kind", kind.ToString()));
        }
    }

    /// <summary>
    /// Counts one hypercall. Registered codes are tagged with their code and name; every unregistered code shares
    /// the one tag set <c>paravirt.hypercall.name = "other"</c>, so a guest cannot grow the number of time series.
    /// </summary>
    internal void RecordHypercall(ulong code, string? name)
    {
        if (_hypercalls.Enabled)
        {
            if (name is null)
            {
                _hypercalls.Add(1, new KeyValuePair<string, object?>("paravirt.hypercall.name", "other"));
            }
            else
            {
                _hypercalls.Add(1, new KeyValuePair<string, object?>("paravirt.hypercall.code", code), new KeyValuePair<string, object?>("paravirt.hypercall.name", name));
            }
        }
    }

    internal void RecordDeviceBytes(string device, string direction, long bytes)
    {
        if (bytes > 0 && _deviceBytes.Enabled)
        {
            _deviceBytes.Add(bytes, new KeyValuePair<string, object?>("paravirt.device", device), new KeyValuePair<string, object?>("paravirt.device.direction", direction));
        }
    }

    internal void RecordRun(string backend, string outcome, TimeSpan elapsed)
    {
        var b = new KeyValuePair<string, object?>("paravirt.backend", backend);
        var o = new KeyValuePair<string, object?>("paravirt.run.outcome", outcome);
        _runs.Add(1, b, o);
        _runDuration.Record(elapsed.TotalSeconds, b, o);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }
}
