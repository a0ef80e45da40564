using System.Net.NetworkInformation;
using Paravirt.Hypervisor.Devices.Block;
using Paravirt.Hypervisor.Devices.Console;
using Paravirt.Hypervisor.Devices.Net;

namespace Paravirt.Cli;

/// <summary>A <c>--disk</c> flag: <c>PATH[,ro][,name=NAME][,vm=N]</c>.</summary>
internal sealed record DiskSpec(string Path, bool ReadOnly, string? Name, int Vm);

/// <summary>A <c>--net</c> flag: <c>switch:NAME</c> or <c>tap:IFNAME</c>, then <c>[,name=NAME][,mac=MAC][,mtu=N][,vm=N]</c>.</summary>
internal sealed record NetSpec(bool Tap, string Target, string? Name, PhysicalAddress? Mac, uint Mtu, int? Vm);

/// <summary>Parses the device flags and builds each VM's devices. Every error is one line for the user.</summary>
internal static class DeviceSpecs
{
    public const string DiskSyntax = "PATH[,ro][,name=NAME][,vm=N]";
    public const string NetSyntax = "switch:NAME|tap:IFNAME[,name=NAME][,mac=MAC][,mtu=N][,vm=N]";

    /// <summary>Parses <c>--disk</c> values; false with a message on bad syntax.</summary>
    public static bool TryParseDisk(string value, int vmCount, out DiskSpec? spec, out string error)
    {
        spec = null;
        string[] parts = value.Split(',');
        if (parts[0].Length == 0)
        {
            error = $"--disk '{value}' names no file; use {DiskSyntax}";
            return false;
        }
        bool readOnly = false;
        string? name = null;
        int vm = 0;
        foreach (string part in parts.Skip(1))
        {
            if (part == "ro")
            {
                readOnly = true;
            }
            else if (part == "rw")
            {
                readOnly = false;
            }
            else if (!TryCommon(part, value, "--disk", DiskSyntax, vmCount, ref name, ref vm, out error))
            {
                return false;
            }
        }
        spec = new DiskSpec(parts[0], readOnly, name, vm);
        error = "";
        return true;
    }

    /// <summary>Parses <c>--net</c> values; false with a message on bad syntax.</summary>
    public static bool TryParseNet(string value, int vmCount, out NetSpec? spec, out string error)
    {
        spec = null;
        string[] parts = value.Split(',');
        int colon = parts[0].IndexOf(':', StringComparison.Ordinal);
        string kind = colon < 0 ? parts[0] : parts[0][..colon];
        string target = colon < 0 ? "" : parts[0][(colon + 1)..];
        if (kind is not ("switch" or "tap") || target.Length == 0)
        {
            error = $"--net '{value}' is not a network; use {NetSyntax}";
            return false;
        }
        string? name = null;
        int vm = -1;
        PhysicalAddress? mac = null;
        uint mtu = NetConstants.DefaultMtu;
        foreach (string part in parts.Skip(1))
        {
            if (part.StartsWith("mac=", StringComparison.Ordinal))
            {
                string text = part[4..].Replace(':', '-');
                if (!PhysicalAddress.TryParse(text, out mac) || mac.GetAddressBytes().Length != 6 || (mac.GetAddressBytes()[0] & 1) != 0)
                {
                    error = $"--net '{value}': '{part[4..]}' is not a unicast MAC address such as 02:00:00:00:00:01";
                    return false;
                }
            }
            else if (part.StartsWith("mtu=", StringComparison.Ordinal))
            {
                if (!uint.TryParse(part[4..], NumberStyles.None, CultureInfo.InvariantCulture, out mtu) || mtu is < NetDevice.MinMtu or > NetDevice.MaxMtu)
                {
                    error = $"--net '{value}': the MTU must be a number from {NetDevice.MinMtu} to {NetDevice.MaxMtu}";
                    return false;
                }
            }
            else if (!TryCommon(part, value, "--net", NetSyntax, vmCount, ref name, ref vm, out error))
            {
                return false;
            }
        }
        spec = new NetSpec(kind == "tap", target, name, mac, mtu, vm < 0 ? null : vm);
        error = "";
        return true;
    }

    private static bool TryCommon(string part, string value, string flag, string syntax, int vmCount, ref string? name, ref int vm, out string error)
    {
        error = "";
        if (part.StartsWith("name=", StringComparison.Ordinal))
        {
            name = part[5..];
            return true;
        }
        if (part.StartsWith("vm=", StringComparison.Ordinal))
        {
            if (!int.TryParse(part[3..], NumberStyles.None, CultureInfo.InvariantCulture, out vm) || vm >= vmCount)
            {
                error = $"{flag} '{value}': vm={part[3..]} is not one of the {vmCount} image(s) (0 to {vmCount - 1})";
                return false;
            }
            return true;
        }
        error = $"{flag} '{value}': unknown option '{part}'; use {syntax}";
        return false;
    }

    /// <summary>
    /// Creates every VM's devices: a console when the image's manifest asks for one or the image is a Linux executable (output to
    /// <paramref name="output"/>, input from <paramref name="input"/> for VM 0 only), the disks, and the nets (a switch
    /// net without <c>vm=</c> gives every VM a port on the same switch). On error, disposes what it created and
    /// throws <see cref="DeviceConfigurationException"/> or <see cref="ArgumentException"/> with one line.
    /// </summary>
    public static List<VirtualDevice>[] Create(IReadOnlyList<GuestImage> images, IReadOnlyList<DiskSpec> disks, IReadOnlyList<NetSpec> nets, Stream output, Stream? input)
    {
        var perVm = new List<VirtualDevice>[images.Count];
        var switches = new Dictionary<string, NetSwitch>(StringComparer.Ordinal);
        try
        {
            for (int vm = 0; vm < images.Count; vm++)
            {
                var devices = perVm[vm] = [];
                foreach (ManifestDevice m in images[vm].Manifest.Where(m => m.Kind == DeviceKind.Console))
                {
                    devices.Add(new ConsoleDevice(m.Name, output, vm == 0 ? input : null));
                }
                if (images[vm].Kind == GuestImageKind.LinuxExecutable)
                {
                    // the Linux application's standard input (fd 0); its output goes through the console_write hypercall
                    devices.Add(new ConsoleDevice("console0", output, vm == 0 ? input : null));
                }
                int diskIndex = 0;
                foreach (DiskSpec d in disks.Where(d => d.Vm == vm))
                {
                    devices.Add(new BlockDevice(d.Name ?? $"disk{diskIndex}", d.Path, d.ReadOnly));
                    diskIndex++;
                }
                int netIndex = 0;
                foreach (NetSpec n in nets.Where(n => n.Vm == vm || (n.Vm is null && (!n.Tap || vm == 0))))
                {
                    INetBackend backend;
                    if (n.Tap)
                    {
                        if (!OperatingSystem.IsLinux())
                        {
                            throw new DeviceConfigurationException($"--net tap:{n.Target}: TAP network devices need Linux; use switch:NAME");
                        }
                        backend = new TapBackend(n.Target);
                    }
                    else
                    {
                        if (!switches.TryGetValue(n.Target, out NetSwitch? sw))
                        {
                            switches[n.Target] = sw = new NetSwitch(n.Target);
                        }
                        backend = sw.CreatePort();
                    }
                    devices.Add(new NetDevice(n.Name ?? $"net{netIndex}", backend, n.Mac, n.Mtu, vm));
                    netIndex++;
                }
                CheckManifest(images[vm], devices, vm, images.Count);
            }
            return perVm;
        }
        catch
        {
            foreach (List<VirtualDevice>? list in perVm)
            {
                list?.ForEach(d => d.Dispose());
            }
            throw;
        }
    }

    /// <summary>Devices the guest's manifest requires must be configured, with the right kind.</summary>
    private static void CheckManifest(GuestImage image, List<VirtualDevice> devices, int vm, int vmCount)
    {
        string where = vmCount > 1 ? $" (image {vm})" : "";
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (VirtualDevice d in devices)
        {
            if (!names.Add(d.Name))
            {
                throw new ArgumentException($"two devices are named '{d.Name}'{where}; give one a different name=NAME");
            }
        }
        foreach (ManifestDevice m in image.Manifest)
        {
            VirtualDevice? d = devices.Find(d => d.Name == m.Name);
            if (d is null && !m.Optional)
            {
                string flag = m.Kind == DeviceKind.Block ? $"--disk PATH,name={m.Name}" : m.Kind == DeviceKind.Net ? $"--net switch:NAME,name={m.Name}" : "a console";
                throw new ArgumentException($"the guest{where} needs {m.Kind.ToString().ToLowerInvariant()} device '{m.Name}'; add {flag}");
            }
            if (d is not null && d.Kind != m.Kind)
            {
                throw new ArgumentException($"the guest{where} expects '{m.Name}' to be a {m.Kind.ToString().ToLowerInvariant()} device, but it is a {d.Kind.ToString().ToLowerInvariant()} device");
            }
        }
    }
}
