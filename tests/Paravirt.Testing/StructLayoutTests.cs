using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Paravirt.Testing;

/// <summary>
/// Pins the layout of native struct mirrors against their C header. A derived test class lists the pins as data rows,
/// <c>public static TheoryData&lt;Type, int&gt; Sizes</c> (struct, sizeof) and
/// <c>public static TheoryData&lt;Type, string, int&gt; Offsets</c> (struct, field, offsetof); each row is one test case,
/// checked by the same two methods for every header.
/// </summary>
public abstract class StructLayoutTests
{
    /// <summary>
    /// The managed size (what <c>Unsafe.SizeOf</c> and <c>sizeof</c> give) is <paramref name="size"/>; for a struct the
    /// marshalled size too (the mirrors are blittable, so the marshaller must agree with the managed layout).
    /// </summary>
    [Theory]
    [MemberData("Sizes")]
    public void Sizes_match_the_header(Type type, int size)
    {
        ArgumentNullException.ThrowIfNull(type);
        Assert.Equal(size, RuntimeHelpers.SizeOf(type.TypeHandle));
        if (!type.IsEnum)
        {
            Assert.Equal(size, Marshal.SizeOf(type));
        }
    }

    /// <summary>The field named <paramref name="field"/> starts <paramref name="offset"/> bytes into <paramref name="type"/>.</summary>
    [Theory]
    [MemberData("Offsets")]
    public void Offsets_match_the_header(Type type, string field, int offset) =>
        Assert.Equal(offset, (int)Marshal.OffsetOf(type, field));
}
