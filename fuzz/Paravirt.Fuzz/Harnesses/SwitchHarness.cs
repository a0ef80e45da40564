using System.Buffers.Binary;
using System.Net.NetworkInformation;

namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The in-memory switch: up to 6 ports with host-assigned MACs; the input is a sequence of frames sent from chosen
/// ports (any bytes, any source MAC). Port security must hold: every frame a port receives came from another port
/// and carries that port's MAC as its source, and a unicast frame reaches only the port that owns its destination.
/// </summary>
internal sealed class SwitchHarness : Harness
{
    public override void Run(ReadOnlySpan<byte> data)
    {
        var r = new FuzzReader(data);
        var sw = new NetSwitch("fuzz");
        int portCount = 2 + (r.U8() % 5);
        var ports = new INetBackend[portCount];
        var macs = new ulong[portCount];
        var received = new List<(int Port, byte[] Frame)>();
        try
        {
            for (int i = 0; i < portCount; i++)
            {
                int port = i;
                // Locally administered unicast MACs; a few inputs make two ports ask for the same MAC.
                byte[] mac = [0x02, 0, 0, 0, 0, (byte)(r.U8() % 8)];
                ports[i] = sw.CreatePort();
                try
                {
                    ports[i].Start(f => { received.Add((port, f.ToArray())); return (f.Length & 7) != 3; }, new PhysicalAddress(mac));
                    macs[i] = Mac(mac);
                }
                catch (Paravirt.Hypervisor.Devices.DeviceConfigurationException)
                {
                    macs[i] = ulong.MaxValue; // refused: the MAC is taken; this port never started
                }
            }
            for (int step = 0; step < 64 && !r.AtEnd; step++)
            {
                int from = r.U8() % portCount;
                int length = r.U8() + (r.U8() % 8 == 0 ? 1400 : 0);
                byte[] frame = new byte[length];
                r.Bytes(length).CopyTo(frame);
                byte control = r.U8();
                if (length >= 12 && (control & 1) == 0)
                {
                    BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(6), 0x0200); // the sender's own MAC, most of the time
                    BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(8), (uint)macs[from]);
                }
                if (length >= 6 && (control & 2) == 0)
                {
                    ulong dst = (control & 4) != 0 ? 0xFFFF_FFFF_FFFFUL : macs[r.U8() % portCount];
                    BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)(dst >> 32));
                    BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(2), (uint)dst);
                }
                Exercised++;
                received.Clear();
                ports[from].Send(frame);
                foreach ((int port, byte[] got) in received)
                {
                    Check(port, from, frame, got, macs);
                }
            }
        }
        finally
        {
            foreach (INetBackend p in ports)
            {
                p?.Dispose();
            }
        }
        if (sw.PortCount != 0)
        {
            throw new FuzzFindingException($"{sw.PortCount} ports left after every port was disposed");
        }
    }

    private static void Check(int port, int from, byte[] sent, byte[] got, ulong[] macs)
    {
        if (port == from)
        {
            throw new FuzzFindingException($"port {from} received its own frame back");
        }
        if (!got.AsSpan().SequenceEqual(sent))
        {
            throw new FuzzFindingException("a delivered frame differs from the one sent");
        }
        if (got.Length < 14 || Mac(got.AsSpan(6)) != macs[from])
        {
            throw new FuzzFindingException($"port {port} received a frame whose source is not the sender's MAC (spoofed or headerless)");
        }
        bool group = (got[0] & 1) != 0;
        if (!group && Mac(got) != macs[port])
        {
            throw new FuzzFindingException($"port {port} received unicast for another port's MAC");
        }
    }

    private static ulong Mac(ReadOnlySpan<byte> p) =>
        ((ulong)BinaryPrimitives.ReadUInt16BigEndian(p) << 32) | BinaryPrimitives.ReadUInt32BigEndian(p[2..]);
}
