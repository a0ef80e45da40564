// The runtime handles and Type: present for the compiler, with no reflection behind them.

namespace System;

/// <summary>A type handle.</summary>
public struct RuntimeTypeHandle { }
/// <summary>A method handle.</summary>
public struct RuntimeMethodHandle { }
/// <summary>A field handle.</summary>
public struct RuntimeFieldHandle { }
/// <summary>Type: present for the compiler, no reflection.</summary>
public abstract class Type { }

// The compiler's class for type objects (there are none at run time in a guest).
internal sealed class RuntimeType : Type { }
