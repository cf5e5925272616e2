using System.Diagnostics;
using System.Globalization;

namespace UsageBilling;

/// <summary>
/// A flusher's lease owner name, <c>machine:pid:process-start-ticks:random</c>, and the one test of whether
/// the process behind such a name is gone. On SQLite (one machine, no session locks) a lease whose owner
/// process has died is free at once instead of after its expiry.
/// </summary>
internal static class FlusherIdentity
{
    private static readonly long ThisProcessStart = StartTicks(Process.GetCurrentProcess()) ?? 0;

    /// <summary>A fresh owner name for this process.</summary>
    public static string NewOwner() =>
        string.Create(CultureInfo.InvariantCulture, $"{Environment.MachineName}:{Environment.ProcessId}:{ThisProcessStart}:{Guid.NewGuid():N}");

    /// <summary>
    /// <see langword="true"/> only when <paramref name="owner"/> names a process on this machine that no longer
    /// runs (its id is free, or taken by a process started at another time). Owners on other machines, or in an
    /// unknown format, are never presumed gone: their leases lapse at their expiry.
    /// </summary>
    public static bool IsGone(string owner) => Check(owner) == Liveness.Gone;

    /// <summary>Whether the process behind an owner name runs: known alive, known gone, or unknown (another machine, another format).</summary>
    public static Liveness Check(string owner)
    {
        var parts = owner.Split(':');
        if (parts.Length != 4 || !string.Equals(parts[0], Environment.MachineName, StringComparison.Ordinal)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
            || !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var started))
        {
            return Liveness.Unknown;
        }

        if (pid == Environment.ProcessId)
        {
            return SameStart(started, ThisProcessStart) ? Liveness.Alive : Liveness.Gone;
        }

        try
        {
            using var process = Process.GetProcessById(pid);
            return StartTicks(process) is not { } ticks ? Liveness.Unknown : SameStart(ticks, started) ? Liveness.Alive : Liveness.Gone;
        }
        catch (ArgumentException)
        {
            return Liveness.Gone;   // no process with that id
        }
        catch (InvalidOperationException)
        {
            return Liveness.Gone;   // it exited while we looked
        }
    }

    /// <summary>
    /// Two readings of one process's start time: on Linux it is derived from the boot time, which each reading
    /// computes afresh, so readings differ by milliseconds; a reused process id started at least 2 s apart.
    /// </summary>
    private static bool SameStart(long a, long b) => Math.Abs(a - b) < 2000;

    /// <summary>The process's start time in Unix milliseconds.</summary>
    private static long? StartTicks(Process process)
    {
        try
        {
            return new DateTimeOffset(process.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds();
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return null;
        }
    }
}

/// <summary>Whether a lease owner's process runs.</summary>
internal enum Liveness
{
    /// <summary>Not checkable from here.</summary>
    Unknown,

    /// <summary>Runs on this machine.</summary>
    Alive,

    /// <summary>Ran on this machine and no longer does.</summary>
    Gone,
}
