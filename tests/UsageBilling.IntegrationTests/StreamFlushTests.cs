using Microsoft.EntityFrameworkCore;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// What only the v2 stream transport has: sessions (renewed before expiry, replaced when Stripe says expired),
/// 100 reports per request, and asynchronous errors through the thin error-report events, on both databases.
/// The shared flush facts run on the stream in <see cref="SqliteStreamFlushTests"/> / <see cref="PostgresStreamFlushTests"/>.
/// </summary>
public abstract class StreamFlushTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    protected override FlushTransport Transport => FlushTransport.V2Stream;

    private async Task<List<(Guid User, string Customer)>> RecordForCustomersAsync(int customers)
    {
        var list = new List<(Guid User, string Customer)>();
        for (var i = 0; i < customers; i++)
        {
            var c = await NewCustomerAsync();
            list.Add(c);
            await Recorder.RecordAsync(c.User, "ai_messages", i + 1, cancellationToken: Ct);
            await Recorder.RecordAsync(c.User, "api_calls", 1, cancellationToken: Ct);
        }

        return list;
    }

    /// <summary>How many stream requests <paramref name="action"/> made: each takes one use of a zero-delay fault.</summary>
    private async Task<int> CountStreamRequestsAsync(Func<Task> action)
    {
        const int budget = 1000;
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEventPath, FaultKind.Delay, Count: budget, DelayMilliseconds: 0, Method: "POST"), Ct);
        await action();
        var left = (await Emulator.Admin.GetFaultsAsync(Ct)).Sum(f => f.Remaining);
        await Emulator.Admin.ClearFaultsAsync(Ct);
        return budget - left;
    }

    [Fact]
    public async Task Flush_130Reports_TwoStreamRequestsOfAtMost100AndTotalsExact()
    {
        await RecordForCustomersAsync(65);

        var flusher = (await AddFlusherHostAsync(o => o.SendBatchSize = 1000)).Get<IUsageFlusher>();
        var result = FlushResult.Empty;
        var requests = await CountStreamRequestsAsync(async () => result = await flusher.FlushOnceAsync(Ct));

        Assert.Equal(130, result.ReportsSent);
        Assert.Equal(2, requests);
        Assert.Equal(130, (await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count);
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Flush_SessionExpiredByStripeBetweenRequests_NewSessionResendAndEverythingCountedOnce()
    {
        var customers = await RecordForCustomersAsync(3);
        Assert.Equal(6, (await Flusher.FlushOnceAsync(Ct)).ReportsSent);

        // Stripe expires the session the flusher holds (its clock says it has 14 minutes left): the next request is
        // refused with billing_meter_event_session_expired, the sender opens a new session and resends.
        Assert.Equal(1, await Emulator.Admin.ExpireMeterEventSessionsAsync(Ct));
        foreach (var (user, _) in customers)
        {
            await Recorder.RecordAsync(user, "ai_messages", 10, cancellationToken: Ct);
        }

        var second = await Flusher.FlushOnceAsync(Ct);

        Assert.Equal(3, second.ReportsSent);
        Assert.Equal(0, second.ReportsRetried);
        var rejections = await Emulator.Admin.GetRejectionCountsAsync(Ct);
        Assert.Equal(1, rejections["billing_meter_event_session_expired"]);
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Flush_SessionNearItsExpiry_RenewedBeforeSoStripeNeverRefusesIt()
    {
        var customers = await RecordForCustomersAsync(2);
        await Flusher.FlushOnceAsync(Ct);

        // 14.5 minutes later the session has 30 s left, inside the renewal margin: a new one is opened first.
        Time.Advance(TimeSpan.FromMinutes(14.5));
        await Recorder.RecordAsync(customers[0].User, "ai_messages", 5, cancellationToken: Ct);
        Assert.Equal(1, (await Flusher.FlushOnceAsync(Ct)).ReportsSent);
        Time.Advance(TimeSpan.FromMinutes(1));
        await Recorder.RecordAsync(customers[1].User, "ai_messages", 5, cancellationToken: Ct);
        Assert.Equal(1, (await Flusher.FlushOnceAsync(Ct)).ReportsSent);

        Assert.False((await Emulator.Admin.GetRejectionCountsAsync(Ct)).ContainsKey("billing_meter_event_session_expired"));
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Flush_LostAnswersThen500s_ReportsResentWithSameIdentifiersAndCountedOnce()
    {
        await RecordForCustomersAsync(4);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEventPath, FaultKind.DropAfterProcessing, Count: 1), Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEventPath, FaultKind.ServerError, Count: 2), Ct);

        var first = await Flusher.FlushOnceAsync(Ct);
        Assert.Equal(0, first.ReportsSent);
        Assert.Equal(8, first.ReportsRetried);
        await FlushUntilDoneAsync();

        // Stripe got the first request (its answer was lost), then two 500s, then the resend: the resend's 8 events
        // were dropped as duplicates of the first request's.
        Assert.Equal(8, (await Emulator.Admin.GetRejectionCountsAsync(Ct))["duplicate_identifier_dropped"]);
        var accepted = await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct);
        Assert.Equal(8, accepted.Count);
        Assert.All((await Emulator.Admin.GetMeterEventRequestsAsync(Ct)), r => Assert.Equal(2, r.Requests));
        await AssertTotalsMatchAsync();
    }
}

/// <summary>The stream's asynchronous errors reach the app as thin events; the webhook endpoint marks the named report dead.</summary>
public abstract class StreamWebhookTests(Provider provider) : IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new(2026, 11, 20, 12, 0, 0, TimeSpan.Zero);

    private TestDatabase _database = null!;

    private AccountsHost Host { get; set; } = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(provider);
        Host = await AccountsHost.StartAsync(_database, Now, flush: o => o.Transport = FlushTransport.V2Stream);
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        await _database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task Webhook_ThinMeterErrorForAStreamedReport_ThatReportDeadOthersSent()
    {
        await Host.Get<StripeWebhookRegistration>().RegisterAsync(Host.WebhookUrl, Ct);
        var doomed = await Host.NewUserAsync();
        var fine = await Host.NewUserAsync();
        await Host.Accounts.SubscribeAsync(doomed, "starter", cancellationToken: Ct);
        await Host.Accounts.SubscribeAsync(fine, "starter", cancellationToken: Ct);
        var doomedCustomer = (await Host.Accounts.GetAsync(doomed, Ct))!.StripeCustomerId;
        var fineCustomer = (await Host.Accounts.GetAsync(fine, Ct))!.StripeCustomerId;

        // Subscribing drafts the first invoices, and the app flushes a customer on invoice.created: let those
        // deliveries finish first, so the one flush below sends both reports.
        await Host.WebhookDeliveriesSettledAsync();

        await Host.Get<IUsageRecorder>().RecordAsync(doomed, "ai_messages", 3, "doomed", cancellationToken: Ct);
        await Host.Get<IUsageRecorder>().RecordAsync(fine, "ai_messages", 4, "fine", cancellationToken: Ct);

        // One stream request carries both reports; Stripe accepts it (200) and then finds one customer gone.
        await Host.Stripe.V1.Customers.DeleteAsync(doomedCustomer, cancellationToken: Ct);
        var result = await Host.Get<IUsageFlusher>().FlushOnceAsync(Ct);
        Assert.Equal(2, result.ReportsSent);

        await using var db = Host.CreateContext();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!await db.UsageReports.AsNoTracking().AnyAsync(r => r.StripeCustomerId == doomedCustomer && r.Status == UsageReportStatus.Dead, Ct))
        {
            Assert.True(DateTime.UtcNow < deadline, "the streamed report never turned dead");
            await Task.Delay(50, Ct);
        }

        var dead = await db.UsageReports.AsNoTracking().SingleAsync(r => r.StripeCustomerId == doomedCustomer, Ct);
        Assert.Contains("meter_event_customer_not_found", dead.LastError, StringComparison.Ordinal);
        Assert.Equal(UsageReportStatus.Sent, (await db.UsageReports.AsNoTracking().SingleAsync(r => r.StripeCustomerId == fineCustomer, Ct)).Status);
        Assert.True(await db.ProcessedWebhookEvents.AnyAsync(e => e.Type == StripeWebhookEvents.MeterErrorReportTriggered, Ct));
        Assert.Equal(4m, await Host.Emulator.Admin.GetMeterTotalAsync(fineCustomer, "ai_messages", Now.AddDays(-1), Now.AddDays(40), Ct));
    }
}

public sealed class SqliteStreamOnlyFlushTests() : StreamFlushTests(Provider.Sqlite);

public sealed class PostgresStreamOnlyFlushTests() : StreamFlushTests(Provider.Postgres);

public sealed class SqliteStreamWebhookTests() : StreamWebhookTests(Provider.Sqlite);

public sealed class PostgresStreamWebhookTests() : StreamWebhookTests(Provider.Postgres);
