using Microsoft.EntityFrameworkCore;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// An event is acknowledged exactly while its report is <c>sent</c>: every change of a report into or out of <c>sent</c>
/// keeps the rollups' acknowledged columns equal to the events aggregated afresh (<see cref="RollupAssert"/>).
/// </summary>
public abstract class AcknowledgementComplianceTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    /// <summary>A thin meter-error event names a report already marked sent (Stripe's 200 accepts, it does not bill).</summary>
    [Fact]
    public async Task SentReportMarkedDead_ItsEventsLeaveTheAcknowledgedRollups()
    {
        var (user, _) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 4, "a", cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 5, "b", cancellationToken: Ct);
        await Flusher.FlushOnceAsync(Ct);
        await using var db = Host.CreateContext();
        var report = await db.UsageReports.AsNoTracking().SingleAsync(Ct);
        Assert.Equal(UsageReportStatus.Sent, report.Status);
        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal(9, await db.UsageDaily.SumAsync(d => d.ReportedQuantity, Ct));

        Assert.Equal(1, await Host.Get<IUsageFlushStore>().MarkDeadAsync([report.Id], "stripe_async_error meter_event_customer_not_found: x", Ct));

        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal((0L, 0L), (await db.UsageDaily.SumAsync(d => d.ReportedQuantity, Ct), await db.UsageHourly.SumAsync(h => h.ReportedQuantity, Ct)));
    }

    /// <summary>Between a correction's cancel and its resend's acknowledgement, the rest of the report is not acknowledged.</summary>
    [Fact]
    public async Task CancelAndResend_ResendNotYetSent_RestIsPendingWithNoAcknowledgementTime()
    {
        var (user, _) = await NewCustomerAsync();
        var ids = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await Recorder.RecordAsync(user, "ai_messages", 10 * (i + 1), $"k{i}", Now.AddMinutes(-10 + i), Ct));
        }

        await Flusher.FlushOnceAsync(Ct);
        Time.Advance(TimeSpan.FromHours(20));
        await Host.Get<IUsageCorrections>().VoidAsync(ids[1], "ops", "duplicate", Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.ServerError, Count: 1000), Ct);
        await Flusher.FlushOnceAsync(Ct);

        await using var db = Host.CreateContext();
        Assert.Contains(await db.UsageReports.AsNoTracking().Select(r => r.Status).ToListAsync(Ct), s => s == UsageReportStatus.Canceled);
        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal(0, await db.UsageDaily.SumAsync(d => d.ReportedQuantity, Ct));
        Assert.Equal(40, await db.UsageDaily.SumAsync(d => d.Quantity, Ct));
    }
}

public sealed class SqliteAcknowledgementComplianceTests() : AcknowledgementComplianceTests(Provider.Sqlite);

public sealed class PostgresAcknowledgementComplianceTests() : AcknowledgementComplianceTests(Provider.Postgres);
