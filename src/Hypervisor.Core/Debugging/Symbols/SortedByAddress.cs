namespace Paravirt.Hypervisor.Debugging.Symbols;

/// <summary>The lookup the symbol tables share: the last entry at or below an address in a table sorted by address.</summary>
internal static class SortedByAddress
{
    /// <summary>
    /// The index of the last element of <paramref name="sorted"/> (ascending by <paramref name="addressOf"/>) whose
    /// address is at or below <paramref name="address"/>, or -1 when every element lies above it.
    /// </summary>
    public static int LastAtOrBelow<T>(IReadOnlyList<T> sorted, ulong address, Func<T, ulong> addressOf)
    {
        int lo = 0, hi = sorted.Count - 1, best = -1;
        while (lo <= hi)
        {
            int mid = lo + ((hi - lo) >> 1);
            if (addressOf(sorted[mid]) <= address)
            {
                best = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return best;
    }
}
