// hello-cs: the C# counterpart of samples/hello, compiled by NativeAOT into a freestanding Paravirt unikernel.
//
// Checks that the host speaks an ABI this image can use (version hypercall), greets, prints the ABI versions and
// the host's wall-clock time (ISO-8601, UTC), and exits with status 7 so a test can see the status travel back.
using Paravirt.Abi;
using Paravirt.Guest;

internal static class Program
{
    private static int Main()
    {
        long version = Guest.HostAbiVersion();
        if (version < 0)
        {
            Console.Write("hello-cs: the version hypercall failed (status ");
            Console.Write(version);
            Console.WriteLine(")");
            return 3;
        }
        if (!Guest.IsCompatibleHost(version))
        {
            Console.Write("hello-cs: ABI mismatch: built for ");
            WriteVersion(AbiVersionConstants.Major, AbiVersionConstants.Minor);
            Console.Write(", host speaks ");
            WriteVersion(version >> 16, version & 0xffff);
            Console.WriteLine("");
            return 3;
        }

        Console.WriteLine("Hello from a C# Paravirt unikernel!");
        Console.Write("hello-cs: ABI ");
        WriteVersion(AbiVersionConstants.Major, AbiVersionConstants.Minor);
        Console.Write(" (host ");
        WriteVersion(version >> 16, version & 0xffff);
        Console.WriteLine(")");

        if ((Guest.Features & FeatureBits.WallClock) != 0)
        {
            ulong secs = Guest.WallNs() / 1_000_000_000;
            CivilFromDays((long)(secs / 86400), out long year, out uint month, out uint day);
            uint sod = (uint)(secs % 86400);
            Console.Write("hello-cs: wall clock ");
            WritePadded(year, 4);
            Console.Write("-");
            WritePadded(month, 2);
            Console.Write("-");
            WritePadded(day, 2);
            Console.Write("T");
            WritePadded(sod / 3600, 2);
            Console.Write(":");
            WritePadded(sod / 60 % 60, 2);
            Console.Write(":");
            WritePadded(sod % 60, 2);
            Console.WriteLine("Z");
        }
        else
        {
            Console.WriteLine("hello-cs: wall clock not offered by this host");
        }

        Console.WriteLine("hello-cs: exiting with status 7");
        return 7;
    }

    private static void WriteVersion(long major, long minor)
    {
        Console.Write(major);
        Console.Write(".");
        Console.Write(minor);
    }

    private static void WritePadded(long value, int width)
    {
        for (long limit = 10, i = 1; i < width; i++, limit *= 10)
        {
            if (value < limit)
                Console.Write("0");
        }
        Console.Write(value);
    }

    // Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil_from_days), as samples/hello does.
    private static void CivilFromDays(long days, out long year, out uint month, out uint day)
    {
        days += 719468;
        long era = (days >= 0 ? days : days - 146096) / 146097;
        ulong doe = (ulong)(days - era * 146097);
        ulong yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        ulong doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        ulong mp = (5 * doy + 2) / 153;
        day = (uint)(doy - (153 * mp + 2) / 5 + 1);
        month = (uint)(mp < 10 ? mp + 3 : mp - 9);
        year = (long)yoe + era * 400 + (month <= 2 ? 1 : 0);
    }
}
