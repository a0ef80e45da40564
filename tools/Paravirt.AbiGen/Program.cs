using Paravirt.AbiGen;

// Usage: Paravirt.AbiGen [--markdown] [--check] [output-path]
//   Writes paravirt/abi.h (default: <repo>/src/Guest.Sdk/native/include/paravirt/abi.h), or with --markdown the
//   ABI reference (default: <repo>/docs/abi-reference.md).
//   --check: writes nothing; exits 1 when the file differs from what would be generated.
const string Usage = "usage: Paravirt.AbiGen [--markdown] [--check] [output-path]";
bool check = false;
bool markdown = false;
string? output = null;
foreach (string arg in args)
{
    if (arg == "--check")
    {
        check = true;
    }
    else if (arg == "--markdown")
    {
        markdown = true;
    }
    else if (arg is "-h" or "--help")
    {
        Console.WriteLine(Usage);
        return 0;
    }
    else if (output is null && !arg.StartsWith('-'))
    {
        output = arg;
    }
    else
    {
        Console.Error.WriteLine($"Paravirt.AbiGen: unexpected argument '{arg}' ({Usage})");
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
    output = Path.Combine(root, markdown ? MarkdownGenerator.RelativeReferencePath : HeaderGenerator.RelativeHeaderPath);
}

string text = markdown
    ? MarkdownGenerator.Generate(typeof(AbiExportAttribute).Assembly)
    : HeaderGenerator.Generate(typeof(AbiExportAttribute).Assembly);
string regenerate = markdown ? MarkdownGenerator.RegenerateCommand : HeaderGenerator.RegenerateCommand;
if (check)
{
    string? current = File.Exists(output) ? File.ReadAllText(output) : null;
    if (current != text)
    {
        Console.Error.WriteLine($"Paravirt.AbiGen: {output} is out of date; regenerate it with: {regenerate}");
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
