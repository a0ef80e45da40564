namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The ELF loader: any bytes are parsed as an image (notes, manifest, program headers) and, when accepted, loaded
/// into guest memory. The only allowed failure is <see cref="ImageFormatException"/>.
/// </summary>
internal sealed class ElfHarness : Harness
{
    private readonly GuestMemory _memory = new(16UL << 20);

    public override void Run(ReadOnlySpan<byte> data)
    {
        Exercised++; // the parser is the target: a refusal exercised it too
        GuestImage image;
        try
        {
            image = ElfLoader.Parse(data.ToArray(), AbiVersion.Current);
        }
        catch (ImageFormatException)
        {
            return;
        }
        try
        {
            ulong end = ElfLoader.LoadInto(image, _memory);
            if (end > _memory.Size)
            {
                throw new FuzzFindingException($"LoadInto reported an image end 0x{end:x} past the 0x{_memory.Size:x} bytes of memory");
            }
        }
        catch (ImageFormatException)
        {
            // An image that does not fit in this memory is refused with the documented exception.
        }
    }

    public override void Dispose() => _memory.Dispose();
}
