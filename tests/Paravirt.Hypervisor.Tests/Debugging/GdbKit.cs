using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Paravirt.Hypervisor.Tests.Debugging;

/// <summary>
/// A test that drives the real gdb. Runs on Linux x86-64 only (elsewhere it skips, saying so); on Linux gdb must be
/// installed (eng/install-deps.sh does it), and a missing gdb fails the test rather than skipping it.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class GdbFactAttribute : FactAttribute
{
    public GdbFactAttribute()
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
        {
            Skip = "gdb tests run on Linux x86-64 (guests are x86-64 ELF images debugged by the host's gdb)";
        }
    }
}

/// <summary>A test that builds or runs x86-64 code with the host's toolchain (gcc, make): Linux x86-64 only.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class LinuxX64FactAttribute : FactAttribute
{
    public LinuxX64FactAttribute()
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
        {
            Skip = "builds guests with gcc: Linux x86-64 only";
        }
    }
}

/// <summary>Runs gdb in batch mode and the paravirt CLI with its stub, as a user would.</summary>
internal static partial class GdbKit
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(90);

    /// <summary>The gdb executable; fails the test clearly when it is missing.</summary>
    public static string GdbPath
    {
        get
        {
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
            {
                string candidate = Path.Combine(dir, "gdb");
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
            Assert.Fail("gdb is not installed: run eng/install-deps.sh (apt-get install gdb)");
            return "";
        }
    }

    /// <summary><c>gdb -nx -batch -ex ... IMAGE [CORE]</c>; returns its exit code and everything it printed.</summary>
    public static (int Exit, string Output) Batch(string image, string? core, params string[] commands)
    {
        var psi = new ProcessStartInfo(GdbPath) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in (string[])["-nx", "-batch", "-ex", "set confirm off", "-ex", "set pagination off"])
        {
            psi.ArgumentList.Add(a);
        }
        foreach (string c in commands)
        {
            psi.ArgumentList.Add("-ex");
            psi.ArgumentList.Add(c);
        }
        psi.ArgumentList.Add(image);
        if (core is not null)
        {
            psi.ArgumentList.Add(core);
        }
        using Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(Limit))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"gdb did not finish within {Limit.TotalSeconds} s:\n{stdout.Result}\n{stderr.Result}");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>
    /// Starts <c>paravirt run IMAGE --gdb 127.0.0.1:0 ARGS</c> (the CLI next to the tests) and waits for its
    /// "waiting for a connection on ADDRESS" line; the caller connects there.
    /// </summary>
    /// <summary>
    /// Runs <paramref name="image"/> in paravirt with the GDB stub (plus <paramref name="paravirtArgs"/>), drives it
    /// with gdb's batch <paramref name="commands"/> and waits for paravirt to end: what each of the two said, and
    /// how each ended.
    /// </summary>
    public static (int GdbExit, string Gdb, int Exit, string Stdout, string Stderr) Debug(string image, string[] paravirtArgs, params string[] commands)
    {
        using ParavirtProcess paravirt = StartParavirt(image, paravirtArgs);
        (int gdbExit, string gdb) = Batch(image, null, [paravirt.Target, .. commands]);
        (int exit, string stdout, string stderr) = paravirt.WaitForExit();
        return (gdbExit, gdb, exit, stdout, stderr);
    }

    public static ParavirtProcess StartParavirt(string image, params string[] extra)
    {
        // Standard input is closed: a guest that reads its console input (a Linux application's fd 0) sees its end.
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "paravirt.dll"));
        psi.ArgumentList.Add("run");
        psi.ArgumentList.Add(image);
        psi.ArgumentList.Add("--gdb");
        psi.ArgumentList.Add("127.0.0.1:0");
        foreach (string e in extra)
        {
            psi.ArgumentList.Add(e);
        }
        Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stderr = new StringBuilder();
        var stdout = new StringBuilder();
        var ready = new TaskCompletionSource<IPEndPoint>(TaskCreationOptions.RunContinuationsAsynchronously);
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                ready.TrySetException(new InvalidOperationException("paravirt ended before it listened:\n" + stderr));
                return;
            }
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }
            Match m = Waiting().Match(e.Data);
            if (m.Success)
            {
                ready.TrySetResult(IPEndPoint.Parse(m.Groups[1].Value));
            }
        };
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stdout)
                {
                    stdout.AppendLine(e.Data);
                }
            }
        };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        if (!ready.Task.Wait(Limit))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("paravirt did not start listening:\n" + stderr);
        }
        return new ParavirtProcess(p, ready.Task.Result, stdout, stderr);
    }

    [GeneratedRegex(@"waiting for a connection on (\S+) ")]
    private static partial Regex Waiting();
}

/// <summary>A running <c>paravirt run --gdb</c>.</summary>
internal sealed class ParavirtProcess(Process process, IPEndPoint endPoint, StringBuilder stdout, StringBuilder stderr) : IDisposable
{
    public IPEndPoint EndPoint => endPoint;

    public string Target => $"target remote {endPoint}";

    /// <summary>Waits for the CLI to end; returns its exit code, guest output and stderr.</summary>
    public (int Exit, string Stdout, string Stderr) WaitForExit()
    {
        if (!process.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("paravirt did not exit:\n" + stderr);
        }
        process.WaitForExit(); // drains the asynchronous readers
        lock (stdout)
        {
            lock (stderr)
            {
                return (process.ExitCode, stdout.ToString(), stderr.ToString());
            }
        }
    }

    public void Dispose()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
        }
        process.Dispose();
    }
}

/// <summary>A bare RSP client for what gdb cannot be made to do on purpose: malformed input, Ctrl-C at a chosen moment.</summary>
internal sealed class RspClient : IDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;

    public RspClient(IPEndPoint endPoint)
    {
        _tcp = new TcpClient();
        _tcp.Connect(endPoint);
        _stream = _tcp.GetStream();
        _stream.ReadTimeout = 30_000;
    }

    public void SendRaw(ReadOnlySpan<byte> bytes) => _stream.Write(bytes);

    public void SendRaw(string text) => SendRaw(Encoding.Latin1.GetBytes(text));

    /// <summary>Sends <c>$payload#xx</c> (no escaping: the tests send what they mean).</summary>
    public void Send(string payload)
    {
        byte sum = 0;
        foreach (char c in payload)
        {
            sum += (byte)c;
        }
        SendRaw($"${payload}#{sum:x2}");
    }

    /// <summary>Reads until one whole packet; returns its payload (acks before it are skipped).</summary>
    public string Receive()
    {
        var sb = new StringBuilder();
        int b;
        while ((b = _stream.ReadByte()) != '$')
        {
            if (b < 0)
            {
                throw new EndOfStreamException("the stub closed the connection");
            }
        }
        while ((b = _stream.ReadByte()) != '#')
        {
            if (b < 0)
            {
                throw new EndOfStreamException("the stub closed the connection mid-packet");
            }
            sb.Append((char)b);
        }
        _stream.ReadByte();
        _stream.ReadByte();
        return sb.ToString();
    }

    /// <summary>Sends a packet and returns the reply packet.</summary>
    public string Ask(string payload)
    {
        Send(payload);
        return Receive();
    }

    public void Dispose()
    {
        _stream.Dispose();
        _tcp.Dispose();
    }
}
