namespace Paravirt.Bench.Interop;

/// <summary>The few libc functions the benchmarks call directly (one file per function).</summary>
internal static partial class Libc
{
    internal const string Library = "libc";
}
