namespace Paravirt.Testing;

/// <summary>A fact that runs the named programs (compilers, binutils): skipped, with the install command, where one is missing.</summary>
public sealed class ToolFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when a tool is not on PATH.</summary>
    public ToolFactAttribute(params string[] tools) => Skip = MissingTool(tools);

    /// <summary>Null when every tool is on PATH, else which is missing and the Debian package that has it.</summary>
    public static string? MissingTool(params string[] tools)
    {
        foreach (string tool in tools)
        {
            if (ProcessRunner.FindOnPath(tool) is null)
            {
                return $"{tool} is not installed (apt-get install {DebianPackage(tool)})";
            }
        }
        return null;
    }

    private static string DebianPackage(string tool) => tool switch
    {
        _ when tool.StartsWith("clang", StringComparison.Ordinal) => "clang",
        _ when tool.StartsWith("x86_64-w64-mingw32-", StringComparison.Ordinal) => "gcc-mingw-w64-x86-64-win32",
        "musl-gcc" => "musl-tools",
        _ => "gcc",
    };
}

/// <summary>
/// A fact that builds a program with the named tools and runs it natively on the host CPU: needs Linux x86-64 as
/// well as the tools (see <see cref="LinuxX64FactAttribute"/> and <see cref="ToolFactAttribute"/>).
/// </summary>
public sealed class NativeToolFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> off Linux x86-64 or when a tool is missing.</summary>
    public NativeToolFactAttribute(params string[] tools) => Skip = LinuxX64FactAttribute.Unavailable ?? ToolFactAttribute.MissingTool(tools);
}
