namespace Paravirt.Hypervisor.Tests.Memory;

/// <summary>The host-reserved area: every region the host writes has its own place (two branches once put the boot module table and the default exception handlers both at 0x52000).</summary>
public sealed class GuestLayoutTests
{
    [Fact]
    public void NoTwoRegionsOverlap()
    {
        var regions = GuestLayout.Regions.OrderBy(r => r.Start).ToArray();
        for (int i = 1; i < regions.Length; i++)
        {
            (string name, ulong start, ulong size) = regions[i - 1];
            Assert.True(start + size <= regions[i].Start,
                $"{name} [0x{start:x}, 0x{start + size:x}) overlaps {regions[i].Name} at 0x{regions[i].Start:x}");
        }
    }

    [Fact]
    public void EveryRegionIsInsideTheReservedArea()
    {
        foreach ((string name, ulong start, ulong size) in GuestLayout.Regions)
        {
            Assert.True(size > 0, name);
            Assert.True(start + size <= GuestLayout.ReservedEnd, $"{name} ends at 0x{start + size:x}, past the reserved area");
        }
        Assert.Equal(EntryConvention.ImageMinAddress, GuestLayout.ReservedEnd);
    }

    [Fact]
    public void TheListHasEveryRegionTheHostWrites()
    {
        // A new region must join the list, or the overlap test cannot see it.
        string[] names = [.. GuestLayout.Regions.Select(r => r.Name)];
        foreach (string expected in new[]
        {
            nameof(GuestLayout.Gdt), nameof(GuestLayout.BootInfo), nameof(GuestLayout.HypercallPage), nameof(GuestLayout.CommandLine),
            nameof(GuestLayout.PvmBootstrap), nameof(GuestLayout.PvmVcpuStructs), nameof(GuestLayout.Pml4), nameof(GuestLayout.Pdpt),
            nameof(GuestLayout.BootModules), nameof(GuestLayout.Idt), nameof(GuestLayout.ExceptionStubs), nameof(GuestLayout.ExceptionStack),
        })
        {
            Assert.Contains(expected, names);
        }
        ulong[] publicRegionConstants = [.. typeof(GuestLayout).GetFields()
            .Where(f => f.IsLiteral && f.FieldType == typeof(ulong) && f.Name is not (nameof(GuestLayout.ReservedEnd) or nameof(GuestLayout.ExceptionStackTop)
                or nameof(GuestLayout.BootModulesSize) or nameof(GuestLayout.TssIst1)))
            .Select(f => (ulong)f.GetRawConstantValue()!)];
        foreach (ulong start in publicRegionConstants)
        {
            Assert.Contains(GuestLayout.Regions, r => r.Start == start);
        }
    }

    [Fact]
    public void TheDefaultExceptionHandlersFitTheirPages()
    {
        // 32 gates of 16 bytes and 32 stubs of 16 bytes: each table fits the page the layout gives it.
        Assert.True(32 * 16 <= (int)EntryConvention.PageSize);
        Assert.Equal(GuestLayout.ExceptionStack + EntryConvention.PageSize, GuestLayout.ExceptionStackTop);
        Assert.True(GuestLayout.TssIst1 + 8 <= 0x68); // IST1 lies inside the TSS at 0
    }
}
