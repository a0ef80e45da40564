namespace System;

/// <summary>Delegates: declaring delegate types compiles, but a guest cannot create delegates (use function pointers).</summary>
public abstract class Delegate { }
/// <summary>See <see cref="Delegate"/>.</summary>
public abstract class MulticastDelegate : Delegate { }
