using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// A change to one rollup row (<c>usage_hourly</c> or <c>usage_daily</c>): recorded usage (from the
/// recorder) or acknowledged usage (from the flusher). Applied with an upsert that adds the deltas.
/// </summary>
internal readonly record struct RollupDelta(
    Guid UserId,
    DateTimeOffset Bucket,
    string Meter,
    long Quantity,
    long Count,
    long ReportedQuantity,
    long ReportedCount,
    DateTimeOffset? ReportedAt);

/// <summary>
/// How a summary range is read: whole days from <c>usage_daily</c>, the whole hours of the ragged
/// days from <c>usage_hourly</c>, the ragged hours from <c>usage_events</c>. The bounds are ordered
/// <c>From ≤ HoursFrom ≤ DaysFrom ≤ DaysTo ≤ HoursTo ≤ To</c>; empty parts have equal bounds.
/// </summary>
internal readonly record struct RollupRanges(
    DateTimeOffset From,
    DateTimeOffset HoursFrom,
    DateTimeOffset DaysFrom,
    DateTimeOffset DaysTo,
    DateTimeOffset HoursTo,
    DateTimeOffset To);

/// <summary>Bucket arithmetic and delta building shared by both providers.</summary>
internal static class UsageRollup
{
    /// <summary>
    /// Acknowledged deltas turned into their withdrawal (a sent report's events that stop being acknowledged: canceled
    /// for a resend, or rejected by Stripe afterwards), in <see cref="LockOrder"/>.
    /// </summary>
    public static List<RollupDelta> Withdrawn(List<RollupDelta> acknowledged)
    {
        var withdrawn = acknowledged.ConvertAll(d => d with { ReportedQuantity = -d.ReportedQuantity, ReportedCount = -d.ReportedCount, ReportedAt = null });
        withdrawn.Sort(LockOrder);
        return withdrawn;
    }

    /// <summary>
    /// The one order every writer of a rollup table locks rows in (user, bucket, meter; Guid order
    /// equals PostgreSQL's uuid order), so concurrent upserts never deadlock. Every writer also
    /// writes <c>usage_hourly</c> before <c>usage_daily</c>.
    /// </summary>
    public static readonly IComparer<RollupDelta> LockOrder = Comparer<RollupDelta>.Create(static (a, b) =>
    {
        var c = a.UserId.CompareTo(b.UserId);
        if (c != 0)
        {
            return c;
        }

        c = a.Bucket.UtcTicks.CompareTo(b.Bucket.UtcTicks);
        return c != 0 ? c : string.CompareOrdinal(a.Meter, b.Meter);
    });

    /// <summary>The start of the UTC hour holding <paramref name="value"/>.</summary>
    public static DateTimeOffset FloorHour(DateTimeOffset value) => Floor(value, TimeSpan.TicksPerHour);

    /// <summary>The start of the UTC day holding <paramref name="value"/>.</summary>
    public static DateTimeOffset FloorDay(DateTimeOffset value) => Floor(value, TimeSpan.TicksPerDay);

    /// <summary>Splits [<paramref name="from"/>, <paramref name="to"/>) into its day, hour and event parts.</summary>
    public static RollupRanges Split(DateTimeOffset from, DateTimeOffset to)
    {
        var hoursFrom = Ceiling(from, TimeSpan.TicksPerHour);
        var hoursTo = FloorHour(to);
        if (hoursFrom >= hoursTo)
        {
            return new RollupRanges(from, to, to, to, to, to);
        }

        var daysFrom = Ceiling(from, TimeSpan.TicksPerDay);
        var daysTo = FloorDay(to);
        return daysFrom < daysTo
            ? new RollupRanges(from, hoursFrom, daysFrom, daysTo, hoursTo, to)
            : new RollupRanges(from, hoursFrom, hoursTo, hoursTo, hoursTo, to);
    }

    /// <summary>The hourly deltas of the events a batch actually inserted, in lock order.</summary>
    public static List<RollupDelta> FromInserted(IReadOnlyList<NewUsageEvent> events, HashSet<Guid> inserted)
    {
        var sums = new Dictionary<(Guid, long, string), (long Quantity, long Count)>();
        foreach (var e in events)
        {
            if (!inserted.Contains(e.Id))
            {
                continue;
            }

            var key = (e.UserId, FloorHour(e.OccurredAt).UtcTicks, e.Meter);
            sums.TryGetValue(key, out var sum);
            sums[key] = (sum.Quantity + e.Quantity, sum.Count + 1);
        }

        var deltas = new List<RollupDelta>(sums.Count);
        foreach (var ((user, hour, meter), (quantity, count)) in sums)
        {
            deltas.Add(new RollupDelta(user, new DateTimeOffset(hour, TimeSpan.Zero), meter, quantity, count, 0, 0, null));
        }

        deltas.Sort(LockOrder);
        return deltas;
    }

    /// <summary>The daily deltas that go with hourly ones, in lock order.</summary>
    public static List<RollupDelta> ToDaily(IEnumerable<RollupDelta> hourly)
    {
        var days = new Dictionary<(Guid, long, string), RollupDelta>();
        foreach (var h in hourly)
        {
            var day = FloorDay(h.Bucket);
            var key = (h.UserId, day.UtcTicks, h.Meter);
            days[key] = days.TryGetValue(key, out var d)
                ? d with
                {
                    Quantity = d.Quantity + h.Quantity,
                    Count = d.Count + h.Count,
                    ReportedQuantity = d.ReportedQuantity + h.ReportedQuantity,
                    ReportedCount = d.ReportedCount + h.ReportedCount,
                    ReportedAt = d.ReportedAt is null ? h.ReportedAt : h.ReportedAt is null ? d.ReportedAt : d.ReportedAt > h.ReportedAt ? d.ReportedAt : h.ReportedAt,
                }
                : h with { Bucket = day };
        }

        var deltas = days.Values.ToList();
        deltas.Sort(LockOrder);
        return deltas;
    }

    private static DateTimeOffset Floor(DateTimeOffset value, long ticks)
    {
        var utc = value.UtcTicks;
        return new DateTimeOffset(utc - (utc % ticks), TimeSpan.Zero);
    }

    private static DateTimeOffset Ceiling(DateTimeOffset value, long ticks)
    {
        var floor = Floor(value, ticks);
        return floor.UtcTicks == value.UtcTicks ? floor : floor.AddTicks(ticks);
    }
}
