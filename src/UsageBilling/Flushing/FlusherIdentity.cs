using System.Diagnostics;
using System.Globalization;

namespace UsageBilling.Flushing;

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
    public static bool IsGone(string owner)
    {
        var parts = owner.Split(':');
        if (parts.Length != 4 || !string.Equals(parts[0], Environment.MachineName, StringComparison.Ordinal)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
            || !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var started))
        {
            return false;
        }

        if (pid == Environment.ProcessId)
        {
            return started != ThisProcessStart;
        }

        try
        {
            using var process = Process.GetProcessById(pid);
            return StartTicks(process) is { } ticks && ticks != started;
        }
        catch (ArgumentException)
        {
            return true;   // no process with that id
        }
        catch (InvalidOperationException)
        {
            return true;   // it exited while we looked
        }
    }

    private static long? StartTicks(Process process)
    {
        try
        {
            // Whole seconds: the start time read from another process can differ from the process's own reading below that.
            return process.StartTime.ToUniversalTime().Ticks / TimeSpan.TicksPerSecond;
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return null;
        }
    }
}
