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

    /// <summary>A meter error report's dead reports and its event's record are one write: a redelivery changes nothing.</summary>
    [Fact]
    public async Task MeterErrorEvent_DeadReportsAndTheEventRecordedTogether_RedeliveryChangesNothing()
    {
        var reports = await SentReportsAsync(2);
        var store = Host.Get<IUsageFlushStore>();

        Assert.Equal(1, await store.MarkDeadAsync("evt_meter_error_1", "v1.billing.meter.error_report_triggered", [new DeadReportGroup([reports[0]], "stripe_async_error a: first")], Ct));
        Assert.Null(await store.MarkDeadAsync("evt_meter_error_1", "v1.billing.meter.error_report_triggered", [new DeadReportGroup([reports[1]], "stripe_async_error b: again")], Ct));

        await using var db = Host.CreateContext();
        Assert.Equal("v1.billing.meter.error_report_triggered", (await db.ProcessedWebhookEvents.AsNoTracking().SingleAsync(e => e.Id == "evt_meter_error_1", Ct)).Type);
        var first = await db.UsageReports.AsNoTracking().SingleAsync(r => r.Id == reports[0], Ct);
        Assert.Equal((UsageReportStatus.Dead, "stripe_async_error a: first"), (first.Status, first.LastError));
        Assert.Equal(UsageReportStatus.Sent, (await db.UsageReports.AsNoTracking().SingleAsync(r => r.Id == reports[1], Ct)).Status);
        await RollupAssert.MatchesEventsAsync(db, Ct);
    }

    /// <summary>
    /// Two deliveries of one meter error report at once (each naming a different report, to tell them apart): exactly one
    /// applies. Were the dead marks and the event's record two writes, both deliveries would mark their report dead.
    /// </summary>
    [Fact]
    public async Task MeterErrorEvent_TwoDeliveriesAtOnce_ExactlyOneApplies()
    {
        const int rounds = 6;
        var reports = await SentReportsAsync(2 * rounds);
        var store = Host.Get<IUsageFlushStore>();
        for (var round = 0; round < rounds; round++)
        {
            var (a, b) = (reports[2 * round], reports[(2 * round) + 1]);
            var eventId = $"evt_race_{round}";
            var outcomes = await Task.WhenAll(
                Task.Run(() => store.MarkDeadAsync(eventId, "v1.billing.meter.error_report_triggered", [new DeadReportGroup([a], "stripe_async_error a")], Ct)),
                Task.Run(() => store.MarkDeadAsync(eventId, "v1.billing.meter.error_report_triggered", [new DeadReportGroup([b], "stripe_async_error b")], Ct)));

            Assert.Single(outcomes, o => o == 1);
            Assert.Single(outcomes, o => o is null);
            await using var db = Host.CreateContext();
            var dead = await db.UsageReports.AsNoTracking().Where(r => (r.Id == a || r.Id == b) && r.Status == UsageReportStatus.Dead).Select(r => r.Id).ToListAsync(Ct);
            Assert.Equal(outcomes[0] == 1 ? [a] : [b], dead);
        }

        await using var check = Host.CreateContext();
        await RollupAssert.MatchesEventsAsync(check, Ct);
    }

    /// <summary>Sends one report for each of <paramref name="count"/> new customers and returns their ids.</summary>
    private async Task<List<Guid>> SentReportsAsync(int count)
    {
        for (var i = 0; i < count; i++)
        {
            var (user, _) = await NewCustomerAsync();
            await Recorder.RecordAsync(user, "ai_messages", i + 1, $"e{i}", cancellationToken: Ct);
        }

        await Flusher.FlushOnceAsync(Ct);
        await using var db = Host.CreateContext();
        var sent = await db.UsageReports.AsNoTracking().Where(r => r.Status == UsageReportStatus.Sent).Select(r => r.Id).ToListAsync(Ct);
        Assert.Equal(count, sent.Count);
        return sent;
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
