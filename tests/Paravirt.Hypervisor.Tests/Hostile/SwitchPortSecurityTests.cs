using System.Net.NetworkInformation;
using Paravirt.Hypervisor.Tests.Devices;

namespace Paravirt.Hypervisor.Tests.Hostile;

/// <summary>
/// The in-memory switch does not trust its guests (issue 13): a port's source MAC is the one the host assigned, so a
/// guest can neither steal another VM's unicast traffic by sending with its MAC nor, by filling a MAC table, make
/// the switch flood later VMs' traffic to it.
/// </summary>
public sealed class SwitchPortSecurityTests
{
    private static readonly byte[] Broadcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    [Fact]
    public void A_guest_sending_with_another_vms_mac_does_not_receive_that_vms_traffic()
    {
        var sw = new NetSwitch("lan");
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 0));
        using var victim = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        using var attacker = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 2));
        a.PostRx(8);
        victim.PostRx(8);
        attacker.PostRx(8);

        // The victim speaks first, then the attacker claims the victim's MAC.
        victim.Send(NetGuest.Frame(Broadcast, victim.Mac, 60, 0x01));
        attacker.Send(NetGuest.Frame(Broadcast, victim.Mac, 60, 0x02));
        a.Harness.Poll(1);
        victim.Harness.Poll(1);
        attacker.Harness.Poll(1);
        a.Receive();
        victim.Receive();
        attacker.Receive();

        byte[] secret = NetGuest.Frame(victim.Mac, a.Mac, 100, 0x5E);
        Assert.Equal([0L], a.Send(secret));
        victim.Harness.Poll(1, timeoutMs: 100);
        attacker.Harness.Poll(1, timeoutMs: 100);
        Assert.Empty(attacker.Receive());
        Assert.Equal(secret, Assert.Single(victim.Receive()).Frame);
    }

    [Fact]
    public void A_guest_filling_the_mac_table_does_not_see_a_later_vms_unicast_traffic()
    {
        var sw = new NetSwitch("lan");
        using var attacker = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 0));
        attacker.PostRx(16);
        byte[] mac = new byte[6];
        for (int i = 0; i < 5000; i++)
        {
            mac[0] = 0x02;
            mac[2] = (byte)(i >> 16);
            mac[3] = (byte)(i >> 8);
            mac[4] = (byte)i;
            mac[5] = 0x77;
            attacker.Send(NetGuest.Frame(Broadcast, mac, 60, 0x03));
        }
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 1));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 2));
        a.PostRx(8);
        b.PostRx(8);
        attacker.Harness.Poll(1);
        attacker.Receive();

        // A and B talk unicast; neither has sent a frame before, so a learning switch would not know them.
        byte[] toB = NetGuest.Frame(b.Mac, a.Mac, 80, 0xAB);
        byte[] toA = NetGuest.Frame(a.Mac, b.Mac, 80, 0xBA);
        Assert.Equal([0L], a.Send(toB));
        Assert.Equal([0L], b.Send(toA));
        a.Harness.Poll(1, timeoutMs: 100);
        b.Harness.Poll(1, timeoutMs: 100);
        attacker.Harness.Poll(1, timeoutMs: 100);
        Assert.Empty(attacker.Receive());
        Assert.Equal(toB, Assert.Single(b.Receive()).Frame);
        Assert.Equal(toA, Assert.Single(a.Receive()).Frame);
    }

    [Fact]
    public void Frames_with_a_source_mac_other_than_the_ports_are_dropped_and_counted()
    {
        var sw = new NetSwitch("lan");
        using var a = new NetGuest(new NetDevice("net0", sw.CreatePort(), vmIndex: 0));
        using var b = new NetGuest(new NetDevice("net0", sw.CreatePort(), PhysicalAddress.Parse("02-00-00-00-00-0B")));
        b.PostRx(8);
        a.Send(NetGuest.Frame(Broadcast, [0x02, 0, 0, 0, 0, 0x66], 60, 0x04));
        b.Harness.Poll(1, timeoutMs: 50);
        Assert.Empty(b.Receive());
        Assert.Equal(0, a.Device.TxFrames);
        Assert.Equal(1, a.Device.TxSpoofed);
    }

    [Fact]
    public void A_switch_port_accepts_only_its_own_source_mac_and_each_mac_once()
    {
        var sw = new NetSwitch("lan");
        var received = new List<byte[]>();
        using INetBackend a = sw.CreatePort();
        using INetBackend b = sw.CreatePort();
        a.Start(_ => true, PhysicalAddress.Parse("02-00-00-00-00-0A"));
        b.Start(f => { received.Add(f.ToArray()); return true; }, PhysicalAddress.Parse("02-00-00-00-00-0B"));
        byte[] bMac = [0x02, 0, 0, 0, 0, 0x0B];
        Assert.False(a.Send(NetGuest.Frame(bMac, [0x02, 0, 0, 0, 0, 0x0C], 60, 1))); // not a's MAC
        Assert.False(a.Send(new byte[13]));                                          // no header
        Assert.Equal(2, sw.FramesSpoofed);
        Assert.True(a.Send(NetGuest.Frame(bMac, [0x02, 0, 0, 0, 0, 0x0A], 60, 2)));
        Assert.Single(received);
        using INetBackend c = sw.CreatePort();
        Assert.Throws<Paravirt.Hypervisor.Devices.DeviceConfigurationException>(() => c.Start(_ => true, PhysicalAddress.Parse("02-00-00-00-00-0A")));
    }
}
