using Paravirt.Abi;
using Paravirt.Hypervisor.Memory;

namespace Paravirt.Hypervisor.Loading;

/// <summary>Parses and validates ELF64 guest images. (Being implemented: see the loader work item.)</summary>
public static class ElfLoader
{
    /// <summary>Parses <paramref name="file"/> and checks it against the host ABI <paramref name="host"/>.</summary>
    /// <exception cref="ImageFormatException">The image is unusable; the message says why, in one line.</exception>
    public static GuestImage Parse(byte[] file, AbiVersion host) => throw new NotImplementedException();

    /// <summary>Reads and parses the image at <paramref name="path"/>.</summary>
    /// <exception cref="ImageFormatException">The file cannot be read or the image is unusable.</exception>
    public static GuestImage LoadFile(string path, AbiVersion host) => throw new NotImplementedException();

    /// <summary>Copies the image's segments into <paramref name="memory"/> (zeroing each segment's tail) and returns <see cref="GuestImage.End"/>.</summary>
    /// <exception cref="ImageFormatException">A segment does not fit in <paramref name="memory"/>.</exception>
    public static ulong LoadInto(GuestImage image, GuestMemory memory) => throw new NotImplementedException();
}
