using Microsoft.EntityFrameworkCore;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.IntegrationTests;

/// <summary>Report state changes made for operators (reconcile, the operator page), through the store, on both databases.</summary>
public abstract class ReportStoreTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    [Fact]
    public async Task Supersede_NeedsReviewReport_UsageMovesToAFreshIdentifierAndIsSentOnce()
    {
        var (user, customer) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 4, "a", cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 5, "b", cancellationToken: Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.ServerError, Count: 1000), Ct);
        await Flusher.FlushOnceAsync(Ct);
        for (var hour = 0; hour < 24; hour++)
        {
            Time.Advance(TimeSpan.FromHours(1));
            await Flusher.FlushOnceAsync(Ct);
        }

        var review = Assert.Single(await Host.Get<IUsageReportReview>().ListNeedingAttentionAsync(cancellationToken: Ct));
        Assert.Equal(UsageReportStatus.NeedsReview, review.Status);
        await Emulator.Admin.ClearFaultsAsync(Ct);

        var store = Host.Get<IUsageFlushStore>();
        var replacement = await store.SupersedeAsync(review.Id, Time.GetUtcNow(), Ct);
        var again = await store.SupersedeAsync(review.Id, Time.GetUtcNow(), Ct);

        Assert.NotNull(replacement);
        Assert.Null(again);
        await using (var db = Host.CreateContext())
        {
            Assert.Equal(UsageReportStatus.Dead, (await db.UsageReports.AsNoTracking().SingleAsync(r => r.Id == review.Id, Ct)).Status);
            Assert.All(await db.UsageEvents.AsNoTracking().ToListAsync(Ct), e => Assert.Equal(replacement, e.ReportId));
        }

        var flushed = await Flusher.FlushOnceAsync(Ct);
        Assert.Equal(1, flushed.ReportsSent);
        var sent = Assert.Single(await Emulator.Admin.GetMeterEventsAsync(customer, "ai_messages", Ct));
        Assert.Equal(replacement.ToString(), sent.Identifier);
        Assert.Equal(9m, sent.Value);
        await AssertTotalsMatchAsync();
    }
}

public sealed class SqliteReportStoreTests() : ReportStoreTests(Provider.Sqlite);

public sealed class PostgresReportStoreTests() : ReportStoreTests(Provider.Postgres);
