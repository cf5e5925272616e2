using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>
/// The grouping rules of a claim: one report per (Stripe customer, meter, billing period), never
/// spanning a period boundary, timestamped with its latest event; events too old for Stripe go
/// into dead reports that are never sent.
/// </summary>
internal static class ReportPlanning
{
    /// <summary>The reason recorded on reports of events too old for Stripe's 35-day window.</summary>
    public const string TooOldReason = "too_old_for_stripe";

    /// <summary>Groups <paramref name="events"/> into reports.</summary>
    /// <param name="events">Claimed events.</param>
    /// <param name="items">Metered subscription items by user.</param>
    /// <param name="now">The current time.</param>
    /// <param name="maxEventAge">Events older than this are never sent.</param>
    /// <param name="countMeters">Meters aggregated by count: their reports carry the number of events, not the sum of quantities (the Stripe meter sums what we send either way).</param>
    /// <returns>The reports, each with a fresh time-ordered id.</returns>
    public static IReadOnlyList<NewUsageReport> Plan(IReadOnlyList<ClaimableEvent> events, ILookup<Guid, SubscriptionItemPeriod> items, DateTimeOffset now, TimeSpan maxEventAge, IReadOnlySet<string>? countMeters = null)
    {
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(items);
        var cutoff = now - maxEventAge;
        var groups = new Dictionary<(string Customer, string Meter, BillingPeriod Period, bool TooOld), List<ClaimableEvent>>();
        foreach (var e in events)
        {
            var item = items[e.UserId].Where(i => i.Meter == e.Meter).OrderByDescending(i => i.PeriodEnd).FirstOrDefault();
            var key = (e.StripeCustomerId, e.Meter, BillingPeriod.For(e.OccurredAt, item), e.OccurredAt < cutoff);
            if (!groups.TryGetValue(key, out var list))
            {
                groups[key] = list = [];
            }

            list.Add(e);
        }

        var reports = new List<NewUsageReport>(groups.Count);
        foreach (var ((customer, meter, period, tooOld), list) in groups)
        {
            reports.Add(new NewUsageReport(
                Guid.CreateVersion7(now),
                customer,
                meter,
                countMeters is not null && countMeters.Contains(meter) ? list.Count : list.Sum(e => e.Quantity),
                list.Max(e => e.OccurredAt),
                period.Start,
                period.End,
                tooOld ? UsageReportStatus.Dead : UsageReportStatus.Pending,
                tooOld ? $"{TooOldReason}: the events are older than Stripe's 35-day window ({list.Min(e => e.OccurredAt):O}); they were never sent." : null,
                [.. list.Select(e => e.Id)]));
        }

        return reports;
    }
}
