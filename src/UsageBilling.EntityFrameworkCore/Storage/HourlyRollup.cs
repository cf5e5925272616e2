using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// A change to one <c>usage_hourly</c> row: recorded usage (from the recorder) or acknowledged
/// usage (from the flusher). Applied with an upsert that adds the deltas.
/// </summary>
internal readonly record struct HourlyDelta(
    Guid UserId,
    DateTimeOffset Hour,
    string Meter,
    long Quantity,
    long Count,
    long ReportedQuantity,
    long ReportedCount,
    DateTimeOffset? ReportedAt);

/// <summary>Hour arithmetic and delta building shared by both providers.</summary>
internal static class HourlyRollup
{
    /// <summary>
    /// The one order every writer of <c>usage_hourly</c> locks rows in (user, hour, meter; Guid
    /// order equals PostgreSQL's uuid order), so concurrent upserts never deadlock.
    /// </summary>
    public static readonly IComparer<HourlyDelta> LockOrder = Comparer<HourlyDelta>.Create(static (a, b) =>
    {
        var c = a.UserId.CompareTo(b.UserId);
        if (c != 0)
        {
            return c;
        }

        c = a.Hour.UtcTicks.CompareTo(b.Hour.UtcTicks);
        return c != 0 ? c : string.CompareOrdinal(a.Meter, b.Meter);
    });

    /// <summary>The start of the UTC hour holding <paramref name="value"/>.</summary>
    public static DateTimeOffset Floor(DateTimeOffset value)
    {
        var ticks = value.UtcTicks;
        return new DateTimeOffset(ticks - (ticks % TimeSpan.TicksPerHour), TimeSpan.Zero);
    }

    /// <summary>The first UTC hour start at or after <paramref name="value"/>.</summary>
    public static DateTimeOffset Ceiling(DateTimeOffset value)
    {
        var floor = Floor(value);
        return floor.UtcTicks == value.UtcTicks ? floor : floor.AddHours(1);
    }

    /// <summary>
    /// Splits [<paramref name="from"/>, <paramref name="to"/>) into whole hours read from the rollup,
    /// [<c>HoursFrom</c>, <c>HoursTo</c>), and the ragged ends read from the events:
    /// [<paramref name="from"/>, <c>HoursFrom</c>) and [<c>HoursTo</c>, <paramref name="to"/>).
    /// When the range holds no whole hour, both bounds are <paramref name="to"/> and the events cover it all.
    /// </summary>
    public static (DateTimeOffset HoursFrom, DateTimeOffset HoursTo) WholeHours(DateTimeOffset from, DateTimeOffset to)
    {
        var hoursFrom = Ceiling(from);
        var hoursTo = Floor(to);
        return hoursFrom < hoursTo ? (hoursFrom, hoursTo) : (to, to);
    }

    /// <summary>The rollup deltas of the events a batch actually inserted, in lock order.</summary>
    public static List<HourlyDelta> FromInserted(IReadOnlyList<NewUsageEvent> events, HashSet<Guid> inserted)
    {
        var sums = new Dictionary<(Guid, long, string), (long Quantity, long Count)>();
        foreach (var e in events)
        {
            if (!inserted.Contains(e.Id))
            {
                continue;
            }

            var key = (e.UserId, Floor(e.OccurredAt).UtcTicks, e.Meter);
            sums.TryGetValue(key, out var sum);
            sums[key] = (sum.Quantity + e.Quantity, sum.Count + 1);
        }

        var deltas = new List<HourlyDelta>(sums.Count);
        foreach (var ((user, hour, meter), (quantity, count)) in sums)
        {
            deltas.Add(new HourlyDelta(user, new DateTimeOffset(hour, TimeSpan.Zero), meter, quantity, count, 0, 0, null));
        }

        deltas.Sort(LockOrder);
        return deltas;
    }
}
