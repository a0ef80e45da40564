namespace Paravirt.Testing;

/// <summary>
/// A fact that runs a program as an unprivileged user (nobody, through setpriv) that opens /dev/net/tun: needs Linux,
/// a root test run (to drop privileges), setpriv and the TUN device.
/// </summary>
public sealed class AsNobodyFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when any of those is missing.</summary>
    public AsNobodyFactAttribute()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
        {
            Skip = "running the CLI as an unprivileged user needs Linux and a root test run (to drop privileges)";
        }
        else if (!File.Exists("/usr/bin/setpriv"))
        {
            Skip = "setpriv (util-linux) is not installed";
        }
        else if (!File.Exists("/dev/net/tun"))
        {
            Skip = "the kernel offers no /dev/net/tun here";
        }
    }
}
