namespace System;

/// <summary>A nullable value type.</summary>
public struct Nullable<T> where T : struct
{
    private readonly bool _hasValue;
    private T _value;

    /// <summary>Wraps a value.</summary>
    public Nullable(T value) { _hasValue = true; _value = value; }
    /// <summary>True when there is a value.</summary>
    public readonly bool HasValue => _hasValue;
    /// <summary>The value (fails fast when there is none).</summary>
    public readonly T Value { get { if (!_hasValue) Paravirt.Guest.Guest.FailFast("Nullable: no value"); return _value; } }
    /// <summary>The value or default.</summary>
    public readonly T GetValueOrDefault() => _value;
    /// <summary>Wraps a value.</summary>
    public static implicit operator T?(T value) => new T?(value);
    /// <summary>Unwraps a value.</summary>
    public static explicit operator T(T? value) => value.Value;
}
