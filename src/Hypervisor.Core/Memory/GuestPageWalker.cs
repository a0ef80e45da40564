namespace Paravirt.Hypervisor.Memory;

/// <summary>What a page-table walk found for one linear address.</summary>
/// <param name="Physical">The guest-physical address the linear address maps to.</param>
/// <param name="PageSize">Size of the page that maps it: 4 KiB, 2 MiB or 1 GiB (identity: 4 KiB).</param>
/// <param name="Writable">Every level allows writes (R/W set).</param>
/// <param name="User">Every level allows CPL 3 (U/S set).</param>
/// <param name="Executable">No level sets NX (execute-disable).</param>
internal readonly record struct PageMapping(ulong Physical, ulong PageSize, bool Writable, bool User, bool Executable);

/// <summary>One run of linear addresses mapped to contiguous guest-physical memory with the same permissions.</summary>
/// <param name="Linear">First linear address.</param>
/// <param name="Physical">First guest-physical address.</param>
/// <param name="Length">Bytes.</param>
/// <param name="Writable">Writes allowed.</param>
/// <param name="Executable">Instruction fetches allowed.</param>
internal readonly record struct MappedRange(ulong Linear, ulong Physical, ulong Length, bool Writable, bool Executable);

/// <summary>
/// A read-only, host-side walker of x86-64 page tables in guest memory (CR3 -&gt; guest-physical), for the debugger,
/// crash reports and core files: 4-level and 5-level (CR4.LA57) paging with 4 KiB, 2 MiB and 1 GiB pages, or the
/// identity when paging is off. It never writes (no accessed/dirty bits) and never faults: the tables are guest
/// data, so every entry is read through the checked <see cref="GuestMemory"/> path, a table outside guest memory ends
/// the walk with "not mapped", reserved bits are ignored, and enumeration is bounded however the tables alias.
/// </summary>
internal static class GuestPageWalker
{
    private const ulong Present = 1, Writable = 1 << 1, User = 1 << 2, LargePage = 1 << 7, NoExecute = 1UL << 63;
    /// <summary>Address bits 12-51 of an entry (MAXPHYADDR 52).</summary>
    private const ulong AddressMask = 0x000F_FFFF_FFFF_F000;
    private const ulong Cr0Paging = 1UL << 31, Cr4Pae = 1 << 5, Cr4La57 = 1 << 12, EferLma = 1 << 10;

    /// <summary>Most page-table entries <see cref="EnumerateMappings"/> inspects (hostile tables that alias one table everywhere stay cheap).</summary>
    internal const int MaxEntriesVisited = 1 << 20;

    /// <summary>The paging mode the control registers select: 0 = off (identity), 4 or 5 levels; -1 = a mode a 64-bit guest cannot be in (32-bit paging, PAE without long mode).</summary>
    internal static int Levels(ulong cr0, ulong cr4, ulong efer)
    {
        if ((cr0 & Cr0Paging) == 0)
        {
            return 0;
        }
        if ((efer & EferLma) == 0 || (cr4 & Cr4Pae) == 0)
        {
            return -1;
        }
        return (cr4 & Cr4La57) != 0 ? 5 : 4;
    }

    /// <summary>Translates <paramref name="linear"/> through the tables at <paramref name="cr3"/>; false when it is not mapped (or not canonical, or a table lies outside guest memory).</summary>
    internal static bool TryTranslate(GuestMemory memory, ulong cr0, ulong cr3, ulong cr4, ulong efer, ulong linear, out PageMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(memory);
        mapping = default;
        int levels = Levels(cr0, cr4, efer);
        if (levels == 0)
        {
            mapping = new PageMapping(linear, 0x1000, true, true, true);
            return true;
        }
        if (levels < 0 || !IsCanonical(linear, levels))
        {
            return false;
        }
        ulong table = cr3 & AddressMask;
        bool writable = true, user = true, executable = true;
        for (int level = levels; level >= 1; level--)
        {
            int shift = 12 + (9 * (level - 1));
            ulong index = (linear >> shift) & 511;
            if (!memory.TryRead(new GuestAddress(table + (index * 8)), out ulong entry) || (entry & Present) == 0)
            {
                return false;
            }
            writable &= (entry & Writable) != 0;
            user &= (entry & User) != 0;
            executable &= (entry & NoExecute) == 0;
            bool leaf = level == 1 || ((level is 2 or 3) && (entry & LargePage) != 0);
            if (leaf)
            {
                ulong pageSize = 1UL << shift;
                ulong frame = entry & AddressMask & ~(pageSize - 1);
                mapping = new PageMapping(frame | (linear & (pageSize - 1)), pageSize, writable, user, executable);
                return true;
            }
            table = entry & AddressMask;
        }
        return false;
    }

    /// <summary>
    /// Every present mapping whose frame lies in guest memory, in linear-address order, with neighbours that continue
    /// both linearly and physically (same permissions) merged into one range. Stops after
    /// <see cref="MaxEntriesVisited"/> entries or <paramref name="maxRanges"/> ranges; <paramref name="truncated"/> says so.
    /// </summary>
    internal static List<MappedRange> EnumerateMappings(GuestMemory memory, ulong cr0, ulong cr3, ulong cr4, ulong efer, int maxRanges, out bool truncated)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var ranges = new List<MappedRange>();
        truncated = false;
        int levels = Levels(cr0, cr4, efer);
        if (levels == 0)
        {
            ranges.Add(new MappedRange(0, 0, memory.Size, true, true));
            return ranges;
        }
        if (levels < 0)
        {
            return ranges;
        }
        int visited = 0;
        bool stop = false;
        Walk(cr3 & AddressMask, levels, 0, true, true);
        truncated = stop;
        return ranges;

        void Walk(ulong table, int level, ulong linearBase, bool writable, bool executable)
        {
            int shift = 12 + (9 * (level - 1));
            for (ulong index = 0; index < 512 && !stop; index++)
            {
                if (++visited > MaxEntriesVisited)
                {
                    stop = true;
                    return;
                }
                if (!memory.TryRead(new GuestAddress(table + (index * 8)), out ulong entry) || (entry & Present) == 0)
                {
                    continue;
                }
                ulong linear = linearBase | (index << shift);
                if (level == levels && (index & 256) != 0)
                {
                    linear |= ~0UL << (shift + 9); // the upper half: sign-extend bit 47 (or 56)
                }
                bool w = writable && (entry & Writable) != 0;
                bool x = executable && (entry & NoExecute) == 0;
                if (level == 1 || ((level is 2 or 3) && (entry & LargePage) != 0))
                {
                    ulong size = 1UL << shift;
                    ulong frame = entry & AddressMask & ~(size - 1);
                    if (frame >= memory.Size)
                    {
                        continue;
                    }
                    size = Math.Min(size, memory.Size - frame);
                    Add(new MappedRange(linear, frame, size, w, x));
                }
                else
                {
                    Walk(entry & AddressMask, level - 1, linear, w, x);
                }
            }
        }

        void Add(MappedRange r)
        {
            if (ranges.Count > 0)
            {
                MappedRange last = ranges[^1];
                if (last.Linear + last.Length == r.Linear && last.Physical + last.Length == r.Physical
                    && last.Writable == r.Writable && last.Executable == r.Executable)
                {
                    ranges[^1] = last with { Length = last.Length + r.Length };
                    return;
                }
            }
            if (ranges.Count >= maxRanges)
            {
                stop = true;
                return;
            }
            ranges.Add(r);
        }
    }

    private static bool IsCanonical(ulong linear, int levels)
    {
        int bits = levels == 5 ? 57 : 48;
        long signExtended = (long)(linear << (64 - bits)) >> (64 - bits);
        return (ulong)signExtended == linear;
    }
}
