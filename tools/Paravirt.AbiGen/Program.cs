using System.Text;
using Paravirt.Abi;
using Paravirt.AbiGen;

// Usage: Paravirt.AbiGen [--check] [output-path]
//   Writes paravirt/abi.h (default: <repo>/src/Guest.Sdk/native/include/paravirt/abi.h).
//   --check: writes nothing; exits 1 when the file differs from what would be generated.
bool check = false;
string? output = null;
foreach (string arg in args)
{
    if (arg == "--check")
    {
        check = true;
    }
    else if (arg is "-h" or "--help")
    {
        Console.WriteLine("usage: Paravirt.AbiGen [--check] [output-path]");
        return 0;
    }
    else if (output is null && !arg.StartsWith('-'))
    {
        output = arg;
    }
    else
    {
        Console.Error.WriteLine($"Paravirt.AbiGen: unexpected argument '{arg}' (usage: Paravirt.AbiGen [--check] [output-path])");
        return 2;
    }
}

if (output is null)
{
    string? root = FindRepoRoot(Directory.GetCurrentDirectory()) ?? FindRepoRoot(AppContext.BaseDirectory);
    if (root is null)
    {
        Console.Error.WriteLine("Paravirt.AbiGen: no output path given and no Paravirt.sln found above the current directory");
        return 2;
    }
    output = Path.Combine(root, HeaderGenerator.RelativeHeaderPath);
}

string text = HeaderGenerator.Generate(typeof(AbiExportAttribute).Assembly);
if (check)
{
    string? current = File.Exists(output) ? File.ReadAllText(output) : null;
    if (current != text)
    {
        Console.Error.WriteLine($"Paravirt.AbiGen: {output} is out of date; regenerate it with: {HeaderGenerator.RegenerateCommand}");
        return 1;
    }
    Console.WriteLine($"Paravirt.AbiGen: {output} is up to date");
    return 0;
}

Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
File.WriteAllText(output, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
Console.WriteLine($"Paravirt.AbiGen: wrote {output}");
return 0;

static string? FindRepoRoot(string start)
{
    for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
    {
        if (File.Exists(Path.Combine(d.FullName, "Paravirt.sln")))
        {
            return d.FullName;
        }
    }
    return null;
}
