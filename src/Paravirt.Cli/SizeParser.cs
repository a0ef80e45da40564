namespace Paravirt.Cli;

/// <summary>Parses the human forms of sizes (<c>64M</c>, <c>1G</c>, <c>512MiB</c>, <c>1048576</c>) and durations (<c>10s</c>, <c>500ms</c>, <c>2m</c>, <c>1h</c>, <c>30</c> = seconds).</summary>
internal static class SizeParser
{
    /// <summary>Parses a byte size with an optional K/M/G suffix (binary units; "B", "iB" and "b" suffixes accepted).</summary>
    public static bool TryParseSize(string text, out ulong bytes)
    {
        bytes = 0;
        string s = text.Trim();
        if (s.Length == 0)
        {
            return false;
        }
        int end = s.Length;
        while (end > 0 && !char.IsAsciiDigit(s[end - 1]))
        {
            end--;
        }
        string unit = s[end..].ToUpperInvariant();
        if (unit.EndsWith("IB", StringComparison.Ordinal))
        {
            unit = unit[..^2];
        }
        else if (unit.EndsWith('B'))
        {
            unit = unit[..^1];
        }
        int shift = unit switch { "" => 0, "K" => 10, "M" => 20, "G" => 30, "T" => 40, _ => -1 };
        if (shift < 0 || !ulong.TryParse(s.AsSpan(0, end), NumberStyles.None, CultureInfo.InvariantCulture, out ulong value))
        {
            return false;
        }
        if (shift > 0 && value > (ulong.MaxValue >> shift))
        {
            return false;
        }
        bytes = value << shift;
        return true;
    }

    /// <summary>Parses a duration: a number with an optional ms/s/m/h suffix (seconds when none).</summary>
    public static bool TryParseDuration(string text, out TimeSpan duration)
    {
        duration = default;
        string s = text.Trim().ToUpperInvariant();
        (string number, double scale) = s switch
        {
            _ when s.EndsWith("MS", StringComparison.Ordinal) => (s[..^2], 0.001),
            _ when s.EndsWith('S') => (s[..^1], 1.0),
            _ when s.EndsWith('M') => (s[..^1], 60.0),
            _ when s.EndsWith('H') => (s[..^1], 3600.0),
            _ => (s, 1.0),
        };
        if (!double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value) || double.IsNaN(value))
        {
            return false;
        }
        double seconds = value * scale;
        if (seconds <= 0 || seconds > TimeSpan.FromDays(1).TotalSeconds)
        {
            return false;
        }
        duration = TimeSpan.FromSeconds(seconds);
        return true;
    }
}
