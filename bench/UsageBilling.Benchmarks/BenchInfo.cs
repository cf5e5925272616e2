namespace UsageBilling.Benchmarks;

/// <summary>What every benchmark prints about the machine it ran on.</summary>
public static class BenchInfo
{
    /// <summary>The 1, 5 and 15 minute load averages (Linux), or <c>n/a</c>.</summary>
    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary>Whether the numbers come from an optimized build.</summary>
    public static string BuildConfiguration =>
#if DEBUG
        "DEBUG build (numbers not representative)";
#else
        "Release build";
#endif
}
