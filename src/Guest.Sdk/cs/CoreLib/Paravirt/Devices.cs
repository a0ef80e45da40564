// Paravirtual devices for C# guests: discovery (the ABI 1.0 device_info and the generic device model of ABI 1.1),
// events and shared pages. The ring protocol is FrontRing.cs; the drivers are Drivers/*.cs. The same ABI
// (src/Hypercall.Abi/Devices.cs, compiled into this library) and protocol as the C runtime (native/runtime/devices.c).
using System.Runtime;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Paravirt.Abi;

namespace Paravirt.Guest
{
    /// <summary>Device discovery, the doorbell, waiting for events and guest pages to share with the host.</summary>
    public static unsafe class Devices
    {
        /// <summary>Waits forever (a deadline that never comes).</summary>
        public const ulong Never = ulong.MaxValue;

        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_page_alloc")]
        private static extern void* PageAllocNative(nuint count);

        [MethodImpl(MethodImplOptions.InternalCall)]
        [RuntimeImport("*", "pv_cs_barrier")]
        internal static extern void Barrier();

        /// <summary><paramref name="count"/> zeroed, page-aligned pages (the C drivers' allocator), or null when memory is exhausted.</summary>
        public static void* AllocPages(ulong count) => PageAllocNative((nuint)count);

        /// <summary>Zeroed, page-aligned memory of at least <paramref name="bytes"/> bytes (whole pages), or null when memory is exhausted.</summary>
        public static void* AllocBytes(ulong bytes) =>
            AllocPages((bytes / EntryConvention.PageSize) + (bytes % EntryConvention.PageSize != 0 ? 1UL : 0UL));

        /// <summary>Copies device <paramref name="index"/>'s description into <paramref name="info"/>; returns the index or a negative status (NoDevice past the last).</summary>
        public static long GetInfo(uint index, DeviceInfo* info)
        {
            long r = Hypercall.Call(HypercallCode.DeviceInfo, index, (ulong)info, (ulong)sizeof(DeviceInfo));
            return r < 0 ? r : index;
        }

        /// <summary>The first device of <paramref name="kind"/> named <paramref name="name"/> (any name when null): its index, or a negative status.</summary>
        public static long Find(DeviceKind kind, string? name, DeviceInfo* info) =>
            Scan(FeatureBits.Devices, model: false, (uint)kind, name, info);

        /// <summary>Copies device <paramref name="index"/>'s descriptor (the generic device model, ABI 1.1) into <paramref name="desc"/>; returns the index or a negative status (NoDevice past the last).</summary>
        public static long Describe(uint index, DeviceDescriptor* desc)
        {
            long r = Hypercall.Call(HypercallCode.DeviceDescribe, index, (ulong)desc, (ulong)sizeof(DeviceDescriptor));
            return r < 0 ? r : index;
        }

        /// <summary>The first device of <paramref name="type"/> (a <see cref="DeviceKind"/> or a user-defined type) named <paramref name="name"/> (any name when null): its index, or a negative status (NotImplemented without <see cref="FeatureBits.DeviceModel"/>).</summary>
        public static long Lookup(uint type, string? name, DeviceDescriptor* desc) =>
            Scan(FeatureBits.DeviceModel, model: true, type, name, desc);

        /// <summary>A device record of either ABI generation: 1.0's <see cref="DeviceInfo"/> (<see cref="Find"/>), 1.1's <see cref="DeviceDescriptor"/> (<see cref="Lookup"/>).</summary>
        [StructLayout(LayoutKind.Explicit)]
        private struct DeviceRecord
        {
            [FieldOffset(0)] public DeviceInfo Info;
            [FieldOffset(0)] public DeviceDescriptor Desc;
        }

        /// <summary>
        /// The discovery loop of both generations: the first port whose record (a <see cref="DeviceDescriptor"/> when
        /// <paramref name="model"/>, else a <see cref="DeviceInfo"/>) has <paramref name="type"/> and, unless
        /// <paramref name="name"/> is null, that name; copies the record to <paramref name="record"/> (when not null).
        /// </summary>
        private static long Scan(FeatureBits feature, bool model, uint type, string? name, void* record)
        {
            if ((Guest.BootInfo->Features0 & (ulong)feature) == 0)
                return (long)HypercallStatus.NotImplemented;
            DeviceRecord tmp = default;
            for (uint i = 0; i < RingConstants.EventPorts; i++)
            {
                long r = model ? Describe(i, &tmp.Desc) : GetInfo(i, &tmp.Info);
                if (r < 0)
                    return r;
                uint t = model ? tmp.Desc.Type : tmp.Info.Kind;
                byte* field = model ? tmp.Desc.Name : tmp.Info.Name;
                if (t == type && (name == null || NameEquals(field, name)))
                {
                    if (record != null && model)
                        *(DeviceDescriptor*)record = tmp.Desc;
                    else if (record != null)
                        *(DeviceInfo*)record = tmp.Info;
                    return i;
                }
            }
            return (long)HypercallStatus.NoDevice;
        }

        /// <summary>Copies device <paramref name="index"/>'s configuration (<see cref="DeviceDescriptor.ConfigSize"/> bytes) to <paramref name="buffer"/>; returns its size or a negative status.</summary>
        public static long Config(uint index, void* buffer, ulong capacity) =>
            Hypercall.Call(HypercallCode.DeviceConfig, index, (ulong)buffer, capacity);

        /// <summary>Shares <paramref name="count"/> queues with device <paramref name="index"/>; on success (0) each descriptor's <see cref="QueueDescriptor.Port"/> holds its event port.</summary>
        public static long Attach(uint index, QueueDescriptor* queues, uint count) =>
            Hypercall.Call(HypercallCode.DeviceAttach, index, (ulong)queues, count);

        /// <summary>Detaches device <paramref name="index"/>: the host stops using its queues and frees their event ports.</summary>
        public static long Reset(uint index) => Hypercall.Call(HypercallCode.DeviceReset, index);

        /// <summary>Rings the doorbell of event port <paramref name="port"/>.</summary>
        public static long EventSend(uint port) => Hypercall.Call(HypercallCode.EventSend, port);

        /// <summary>Waits until one of <paramref name="events"/> is pending or the monotonic clock reaches <paramref name="deadlineNs"/>; returns the pending bits (0 on timeout) or a negative status.</summary>
        public static long Poll(ulong deadlineNs, ulong events) => Hypercall.Call(HypercallCode.Poll, deadlineNs, events);

        private static bool NameEquals(byte* field, string name)
        {
            if (name.Length >= 24)
                return false;
            for (int i = 0; i < name.Length; i++)
            {
                if (field[i] != name[i])
                    return false;
            }
            return field[name.Length] == 0;
        }
    }
}
