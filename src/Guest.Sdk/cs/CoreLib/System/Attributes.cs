// The attribute base and the attributes the C# compiler itself looks for.

namespace System;

/// <summary>The base of attributes.</summary>
public abstract class Attribute { }

/// <summary>Where an attribute may appear.</summary>
[Flags]
public enum AttributeTargets
{
    /// <summary>Assembly.</summary>
    Assembly = 0x0001,
    /// <summary>Module.</summary>
    Module = 0x0002,
    /// <summary>Class.</summary>
    Class = 0x0004,
    /// <summary>Struct.</summary>
    Struct = 0x0008,
    /// <summary>Enum.</summary>
    Enum = 0x0010,
    /// <summary>Constructor.</summary>
    Constructor = 0x0020,
    /// <summary>Method.</summary>
    Method = 0x0040,
    /// <summary>Property.</summary>
    Property = 0x0080,
    /// <summary>Field.</summary>
    Field = 0x0100,
    /// <summary>Event.</summary>
    Event = 0x0200,
    /// <summary>Interface.</summary>
    Interface = 0x0400,
    /// <summary>Parameter.</summary>
    Parameter = 0x0800,
    /// <summary>Delegate.</summary>
    Delegate = 0x1000,
    /// <summary>Return value.</summary>
    ReturnValue = 0x2000,
    /// <summary>Generic parameter.</summary>
    GenericParameter = 0x4000,
    /// <summary>Everything.</summary>
    All = 0x7FFF,
}

/// <summary>How an attribute class may be used.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = true)]
public sealed class AttributeUsageAttribute : Attribute
{
    /// <summary>Creates the attribute.</summary>
    public AttributeUsageAttribute(AttributeTargets validOn) { }
    /// <summary>Whether the attribute may appear more than once.</summary>
    public bool AllowMultiple { get; set; }
    /// <summary>Whether derived classes inherit it.</summary>
    public bool Inherited { get; set; }
}

/// <summary>Marks an enum as a bit set.</summary>
[AttributeUsage(AttributeTargets.Enum)]
public sealed class FlagsAttribute : Attribute { }

/// <summary>Marks a params parameter.</summary>
[AttributeUsage(AttributeTargets.Parameter)]
public sealed class ParamArrayAttribute : Attribute { }

/// <summary>Marks an obsolete API.</summary>
public sealed class ObsoleteAttribute : Attribute
{
    /// <summary>Creates the attribute.</summary>
    public ObsoleteAttribute() { }
    /// <summary>Creates the attribute with a message.</summary>
    public ObsoleteAttribute(string message) { }
    /// <summary>Creates the attribute with a message and error flag.</summary>
    public ObsoleteAttribute(string message, bool error) { }
}
