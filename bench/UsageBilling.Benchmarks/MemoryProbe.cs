using System.Globalization;

namespace UsageBilling.Benchmarks;

/// <summary>Peak managed heap of this process while it runs (sampled every 20 ms, plus the GC's own after-collection figures).</summary>
internal sealed class MemoryProbe : IDisposable
{
    private readonly Timer _timer;
    private readonly int _gen2Before = GC.CollectionCount(2);
    private long _peakHeap;
    private long _peakGcHeap;
    private long _peakCommitted;
    private bool _stopped;

    public MemoryProbe()
    {
        _timer = new Timer(_ => Sample(), null, TimeSpan.Zero, TimeSpan.FromMilliseconds(20));
    }

    public MemoryPeak Stop()
    {
        _stopped = true;
        _timer.Dispose();
        Sample();
        return new MemoryPeak(Interlocked.Read(ref _peakHeap), Interlocked.Read(ref _peakGcHeap), GC.CollectionCount(2) - _gen2Before) { PeakCommitted = Interlocked.Read(ref _peakCommitted) };
    }

    private void Sample()
    {
        Max(ref _peakHeap, GC.GetTotalMemory(false));
        foreach (var kind in new[] { GCKind.Ephemeral, GCKind.FullBlocking, GCKind.Background })
        {
            var info = GC.GetGCMemoryInfo(kind);
            if (info.Index > 0)
            {
                Max(ref _peakGcHeap, info.HeapSizeBytes);
                Max(ref _peakCommitted, info.TotalCommittedBytes);
            }
        }
    }

    private static void Max(ref long target, long value)
    {
        long seen;
        while (value > (seen = Interlocked.Read(ref target)) && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }

    /// <summary>Linux: resets the kernel's peak resident set (VmHWM) of this process.</summary>
    public static bool TryResetPeakRss()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Linux: the peak resident set (VmHWM) since start or the last reset.</summary>
    public static long PeakRss()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return Environment.WorkingSet;
    }

    public void Dispose()
    {
        if (!_stopped)
        {
            _timer.Dispose();
        }
    }
}

/// <summary>Peaks seen by <see cref="MemoryProbe"/>.</summary>
/// <param name="PeakHeap">Highest <see cref="GC.GetTotalMemory(bool)"/> sampled.</param>
/// <param name="PeakGcHeap">Highest heap size right after a collection (live data plus fragmentation), as the GC reported it.</param>
/// <param name="Gen2Collections">Gen-2 collections during the measurement.</param>
internal sealed record MemoryPeak(long PeakHeap, long PeakGcHeap, int Gen2Collections)
{
    /// <summary>The most memory the GC had committed for its heap after any collection (what of the RSS is the managed heap's).</summary>
    public long PeakCommitted { get; init; }
}
