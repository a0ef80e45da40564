// The bases the compiler gives structs, enums and void.

namespace System;

/// <summary>The base of every struct.</summary>
public abstract class ValueType { }

/// <summary>The base of every enum.</summary>
public abstract class Enum : ValueType { }

/// <summary>void.</summary>
public struct Void { }
