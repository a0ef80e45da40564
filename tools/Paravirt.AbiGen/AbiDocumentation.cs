namespace Paravirt.AbiGen;

/// <summary>
/// The ABI assembly's XML documentation, indexed by member id, together with the name each exported C# type and
/// member has in the generated files (what a <c>&lt;see cref="..."/&gt;</c> reads as there). Shared by the header's
/// C comments and the Markdown reference, which only render the elements differently.
/// </summary>
internal sealed class AbiDocumentation
{
    private readonly Dictionary<string, XElement> _members = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _crefNames = new(StringComparer.Ordinal);

    /// <param name="doc">The XML documentation, or null (no element is found).</param>
    /// <param name="model">The exported types.</param>
    /// <param name="constantsSuffix">What follows a constants class's prefix when a reference names the class (<c>PV_X</c> or <c>PV_X_*</c>).</param>
    public AbiDocumentation(XDocument? doc, HeaderGenerator.AbiModel model, string constantsSuffix)
    {
        if (doc is not null)
        {
            foreach (XElement m in doc.Descendants("member"))
            {
                if (m.Attribute("name")?.Value is { } name)
                {
                    _members[name] = m;
                }
            }
        }
        foreach (HeaderGenerator.ExportedConstants c in model.Constants)
        {
            AddMacros(c.Type, c.Prefix + constantsSuffix, c.Members);
        }
        foreach (HeaderGenerator.ExportedEnum e in model.Enums)
        {
            AddMacros(e.Type, e.CName, e.Members);
        }
        foreach (HeaderGenerator.ExportedStruct s in model.Structs)
        {
            _crefNames["T:" + s.Type.FullName] = s.CName;
            foreach (HeaderGenerator.StructMember f in s.Members)
            {
                if (f.Field is not null)
                {
                    _crefNames[Id(f.Field)] = s.CName + "." + f.CName;
                }
            }
        }
    }

    private void AddMacros(Type type, string typeName, IReadOnlyList<HeaderGenerator.ConstantMember> members)
    {
        _crefNames["T:" + type.FullName] = typeName;
        foreach (HeaderGenerator.ConstantMember m in members)
        {
            _crefNames[Id(m.Field)] = m.MacroName;
        }
    }

    private static string Id(FieldInfo f) => "F:" + f.DeclaringType!.FullName + "." + f.Name;

    /// <summary>The <paramref name="element"/> (summary, remarks) of a type or field, or null when it has none.</summary>
    public XElement? Element(MemberInfo member, string element)
    {
        string id = member is Type t ? "T:" + t.FullName : Id((FieldInfo)member);
        return _members.TryGetValue(id, out XElement? m) ? m.Element(element) : null;
    }

    /// <summary>
    /// The generated name of the member <paramref name="cref"/> refers to; for one that is not exported, the dotted
    /// C# path without the id prefix and parameter list, split into its parts (the caller picks how much to show).
    /// </summary>
    public string CrefName(string cref, Func<string[], string> notExported)
    {
        if (_crefNames.TryGetValue(cref, out string? name))
        {
            return name;
        }
        string s = cref.Length > 2 && cref[1] == ':' ? cref[2..] : cref;
        int paren = s.IndexOf('(', StringComparison.Ordinal);
        if (paren >= 0)
        {
            s = s[..paren];
        }
        return notExported(s.Split('.'));
    }
}
