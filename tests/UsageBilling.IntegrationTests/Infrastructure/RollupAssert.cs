using Microsoft.EntityFrameworkCore;
using UsageBilling.Storage;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.IntegrationTests.Infrastructure;

/// <summary>The rollups the summaries read must equal the events aggregated afresh, acknowledged counts included.</summary>
public static class RollupAssert
{
    public static async Task MatchesEventsAsync(UsageBillingDbContext db, CancellationToken ct)
    {
        // An event is acknowledged when its report is sent, as of the report's sent time.
        var events = await db.UsageEvents.AsNoTracking()
            .Select(e => new { e.UserId, e.Meter, e.Quantity, e.OccurredAt, ReportedAt = db.UsageReports.Where(r => r.Id == e.ReportId && r.Status == UsageReportStatus.Sent).Select(r => r.SentAt).FirstOrDefault() })
            .ToListAsync(ct);
        foreach (var (name, bucketTicks, stored) in new[]
        {
            ("usage_hourly", TimeSpan.TicksPerHour, (await db.UsageHourly.AsNoTracking().ToListAsync(ct)).Select(h => Describe(h.UserId, h.Hour.UtcTicks, h.Meter, h.Quantity, h.EventCount, h.ReportedQuantity, h.ReportedCount, h.LastReportedAt))),
            ("usage_daily", TimeSpan.TicksPerDay, (await db.UsageDaily.AsNoTracking().ToListAsync(ct)).Select(d => Describe(d.UserId, d.Day.UtcTicks, d.Meter, d.Quantity, d.EventCount, d.ReportedQuantity, d.ReportedCount, d.LastReportedAt))),
        })
        {
            var expected = events
                .GroupBy(e => (e.UserId, Bucket: e.OccurredAt.UtcTicks - e.OccurredAt.UtcTicks % bucketTicks, e.Meter))
                .Select(g => Describe(
                    g.Key.UserId,
                    g.Key.Bucket,
                    g.Key.Meter,
                    g.Sum(e => e.Quantity),
                    g.Count(),
                    g.Where(e => e.ReportedAt != null).Sum(e => e.Quantity),
                    g.Count(e => e.ReportedAt != null),
                    g.Max(e => e.ReportedAt)));
            var missing = expected.Except(stored).Take(5).ToList();
            var extra = stored.Except(expected).Take(5).ToList();
            Assert.True(missing.Count == 0 && extra.Count == 0, $"{name} differs from usage_events: expected but not stored [{string.Join("; ", missing)}], stored but not expected [{string.Join("; ", extra)}]");
        }
    }

    private static string Describe(Guid user, long bucket, string meter, long quantity, long count, long reportedQuantity, long reportedCount, DateTimeOffset? lastReportedAt) =>
        $"{user} {new DateTime(bucket, DateTimeKind.Utc):O} {meter} q={quantity} n={count} rq={reportedQuantity} rn={reportedCount} at={lastReportedAt?.UtcTicks}";
}
