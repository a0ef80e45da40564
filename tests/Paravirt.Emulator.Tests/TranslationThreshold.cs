using System.Runtime.CompilerServices;

namespace Paravirt.Emulator.Tests;

internal static class TranslationThreshold
{
    /// <summary>
    /// The emulator's tests run their guests' hot blocks translated after 32 runs (their loops are written for that),
    /// not at the product's default, so translated code is exercised by every test that loops a few dozen times.
    /// </summary>
    [ModuleInitializer]
    internal static void TranslateEarly() => BlockCompiler.Threshold = 32;
}
