using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Time.Testing;
using Stripe;
using Stripe.Billing;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;
using UsageBilling.StripeEmulator;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// The flusher's guarantees, through the real Stripe.net client against the emulator, on both
/// databases (<see cref="SqliteFlushTests"/>, <see cref="PostgresFlushTests"/>).
/// </summary>
public abstract class FlushComplianceTestsBase(Provider provider) : IAsyncLifetime
{
    protected static readonly DateTimeOffset Now = new(2026, 11, 20, 12, 0, 0, TimeSpan.Zero);

    private TestDatabase _database = null!;
    private readonly List<BillingHost> _hosts = [];

    protected TestDatabase Database => _database;

    protected List<BillingHost> Hosts => _hosts;

    protected Provider Provider => provider;

    protected string ConnectionString => _database.ConnectionString;

    protected FakeTimeProvider Time { get; } = new(Now);

    protected StripeEmulatorServer Emulator { get; private set; } = null!;

    protected BillingHost Host => _hosts[0];

    protected StripeClient Stripe { get; private set; } = null!;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The flusher's transport in this class's tests (the <c>Stream</c> classes run the same facts on the v2 stream).</summary>
    protected virtual FlushTransport Transport => FlushTransport.V1;

    /// <summary>The path the flusher's meter events go to, for faults.</summary>
    protected string MeterEventPath => Transport == FlushTransport.V2Stream ? "/v2/billing/meter_event_stream" : "/v1/billing/meter_events";

    public async ValueTask InitializeAsync()
    {
        Emulator = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions { TimeProvider = Time });
        _database = await TestDatabase.CreateAsync(provider);
        _hosts.Add(await StartHostAsync());
        Stripe = new StripeClient(new StripeClientOptions { ApiKey = "sk_test_flush", ApiBase = Emulator.ApiBase, MeterEventsBase = Emulator.ApiBase });
        var meters = new MeterService(Stripe);
        foreach (var name in new[] { "ai_messages", "api_calls" })
        {
            await meters.CreateAsync(new MeterCreateOptions { DisplayName = name, EventName = name, DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "sum" } }, cancellationToken: Ct);
        }
    }

    protected Task<BillingHost> StartHostAsync(Action<FlushOptions>? flush = null) =>
        BillingHost.StartAsync(_database, Time, null, b => b
            .UseStripe(o =>
            {
                o.SecretKey = "sk_test_flush";
                o.ApiBase = Emulator.ApiBase;
                o.Timeout = TimeSpan.FromSeconds(2);
                o.MaxNetworkRetries = 0;
            })
            .AddFlusher(o =>
            {
                o.Enabled = false;
                o.RequestsPerSecond = 2000;
                o.MaxConcurrentCalls = 16;
                o.Transport = Transport;
                flush?.Invoke(o);
            }));

    protected async Task<BillingHost> AddFlusherHostAsync(Action<FlushOptions>? flush = null)
    {
        var host = await StartHostAsync(flush);
        _hosts.Add(host);
        return host;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var host in _hosts)
        {
            await host.DisposeAsync();
        }

        await _database.DisposeAsync();
        await Emulator.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    protected IUsageRecorder Recorder => Host.Get<IUsageRecorder>();

    protected IUsageFlusher Flusher => Host.Get<IUsageFlusher>();

    /// <summary>A user with a real Stripe customer in the emulator (or the given customer id).</summary>
    protected async Task<(Guid User, string Customer)> NewCustomerAsync(string? customerId = null)
    {
        customerId ??= (await new CustomerService(Stripe).CreateAsync(new CustomerCreateOptions { Email = "c@example.com" }, cancellationToken: Ct)).Id;
        await using var db = Host.CreateContext();
        var user = new BillingUser { Id = Guid.NewGuid(), CreatedAt = Now };
        db.Users.Add(user);
        db.BillingCustomers.Add(new BillingCustomer { UserId = user.Id, StripeCustomerId = customerId, PlanId = "starter", CreatedAt = Now, UpdatedAt = Now });
        await db.SaveChangesAsync(Ct);
        return (user.Id, customerId);
    }

    /// <summary>Flushes until nothing is pending, moving the fake clock past retry delays.</summary>
    protected async Task<FlushResult> FlushUntilDoneAsync(IUsageFlusher? flusher = null, int maxRounds = 200)
    {
        var total = FlushResult.Empty;
        for (var round = 0; round < maxRounds; round++)
        {
            total = total.Add(await (flusher ?? Flusher).FlushOnceAsync(Ct));
            var backlog = await Host.Get<IUsageFlushStore>().GetBacklogAsync(Ct);
            if (backlog.ReportsByStatus.GetValueOrDefault(UsageReportStatus.Pending) == 0 && backlog.PendingEvents - backlog.PendingEventsWithoutCustomer == 0)
            {
                return total;
            }

            Time.Advance(TimeSpan.FromMinutes(11));
        }

        throw new InvalidOperationException("The flush did not settle.");
    }

    /// <summary>Local totals per customer·meter·period of the events Stripe acknowledged, versus the emulator's totals.</summary>
    protected async Task AssertTotalsMatchAsync()
    {
        await using var db = Host.CreateContext();
        var groups = await db.UsageReports.AsNoTracking()
            .GroupBy(r => new { r.StripeCustomerId, r.Meter, r.PeriodStart, r.PeriodEnd })
            .Select(g => new { g.Key, Reports = g.Count() })
            .ToListAsync(Ct);
        var events = await db.UsageEvents.AsNoTracking().Join(db.BillingCustomers, e => e.UserId, c => c.UserId, (e, c) => new { c.StripeCustomerId, e.Meter, e.Quantity, e.OccurredAt, Acknowledged = db.UsageReports.Any(r => r.Id == e.ReportId && r.Status == UsageReportStatus.Sent) }).ToListAsync(Ct);
        Assert.All(events, e => Assert.True(e.Acknowledged));
        Assert.NotEmpty(groups);
        foreach (var g in groups)
        {
            var local = events.Where(e => e.StripeCustomerId == g.Key.StripeCustomerId && e.Meter == g.Key.Meter && e.OccurredAt >= g.Key.PeriodStart && e.OccurredAt < g.Key.PeriodEnd)
                .Sum(e => g.Key.Meter == "api_calls" ? 1 : e.Quantity);
            var remote = await Emulator.Admin.GetMeterTotalAsync(g.Key.StripeCustomerId, g.Key.Meter, g.Key.PeriodStart, g.Key.PeriodEnd, Ct);
            Assert.True(local == remote, $"{g.Key.StripeCustomerId}/{g.Key.Meter} {g.Key.PeriodStart:O}: local {local}, Stripe {remote}");
        }

        // The rollups the usage page reads agree with the events, acknowledged counts included.
        await RollupAssert.MatchesEventsAsync(db, Ct);
    }

}

/// <summary>The flusher's facts, run on both databases.</summary>
public abstract class FlushComplianceTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    [Fact]
    public async Task Flush_ManyCustomersTwoMetersTwoPeriods_StripeTotalsEqualLocalSums()
    {
        var customers = new List<(Guid User, string Customer)>();
        for (var i = 0; i < 50; i++)
        {
            customers.Add(await NewCustomerAsync());
        }

        // 20 000 events over the previous and the current calendar month (no subscription: UTC months).
        var random = new Random(42);
        var monthStart = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
        var span = (Now - monthStart.AddDays(-14)).TotalSeconds;
        var work = Enumerable.Range(0, 20_000).Select(i => (
            User: customers[random.Next(customers.Count)].User,
            Meter: random.Next(2) == 0 ? "ai_messages" : "api_calls",
            Quantity: (long)random.Next(1, 1000),
            At: monthStart.AddDays(-14).AddSeconds(random.NextDouble() * span))).ToList();
        await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = Ct }, async (w, ct) =>
            await Recorder.RecordAsync(w.User, w.Meter, w.Quantity, occurredAt: w.At, cancellationToken: ct));

        var result = await FlushUntilDoneAsync();

        Assert.Equal(20_000, result.EventsClaimed);
        Assert.Equal(result.ReportsCreated, result.ReportsSent);
        Assert.Equal(0, result.ReportsDead);
        var accepted = await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct);
        Assert.Equal(result.ReportsSent, accepted.Count);
        Assert.Equal(accepted.Count, accepted.Select(a => a.Identifier).Distinct().Count());
        await AssertTotalsMatchAsync();

        // Stripe's timestamp is the latest event of the report, never the flush time.
        await using var db = Host.CreateContext();
        var report = await db.UsageReports.AsNoTracking().FirstAsync(Ct);
        var latest = await db.UsageEvents.Where(e => e.ReportId == report.Id).MaxAsync(e => e.OccurredAt, Ct);
        Assert.Equal(latest, report.Timestamp);
        Assert.Equal(latest.ToUnixTimeSeconds(), accepted.Single(a => a.Identifier == report.Id.ToString()).Timestamp.ToUnixTimeSeconds());
    }

    [Fact]
    public async Task Flush_GroupSpreadOverManyClaimBatches_MakesOneStripeCallPerGroup()
    {
        var customers = new List<(Guid User, string Customer)>();
        for (var i = 0; i < 3; i++)
        {
            customers.Add(await NewCustomerAsync());
        }

        // Interleaved arrivals: every claim batch of 10 touches every customer·meter.
        for (var i = 0; i < 90; i++)
        {
            await Recorder.RecordAsync(customers[i % 3].User, i % 2 == 0 ? "ai_messages" : "api_calls", 1 + (i % 4), cancellationToken: Ct);
        }

        var flusher = (await AddFlusherHostAsync(o => o.ClaimBatchSize = 10)).Get<IUsageFlusher>();
        var reports = new List<FlushResult>();
        var result = await flusher.FlushOnceAsync(new SyncProgress(reports.Add), Ct);

        // Progress after each claim batch (10 events) and each send round, cumulative, ending at the result.
        Assert.Equal(10, reports[0].EventsClaimed);
        Assert.True(reports.Count >= 10);
        Assert.Equal(result.EventsClaimed, reports[^1].EventsClaimed);
        Assert.Equal(result.ReportsSent, reports[^1].ReportsSent);
        Assert.Equal(90, result.EventsClaimed);
        Assert.Equal(6, result.ReportsCreated);
        Assert.Equal(6, result.ReportsSent);
        Assert.Equal(6, (await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count);
        await AssertTotalsMatchAsync();

        // Once sent, a report is closed: later usage of the same period goes into a new report.
        await Recorder.RecordAsync(customers[0].User, "ai_messages", 5, cancellationToken: Ct);
        var next = await flusher.FlushOnceAsync(Ct);
        Assert.Equal(1, next.ReportsCreated);
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Flush_ServerErrorsRateLimitsTimeoutsAndDroppedConnections_TotalsStayExact()
    {
        var customers = new List<(Guid User, string Customer)>();
        for (var i = 0; i < 12; i++)
        {
            customers.Add(await NewCustomerAsync());
        }

        var path = MeterEventPath;
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(path, FaultKind.ServerError, Count: 3), Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(path, FaultKind.ServerError, Count: 3, StoreForIdempotency: true), Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(path, FaultKind.RateLimited, Count: 4), Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(path, FaultKind.DropAfterProcessing, Count: 4), Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(path, FaultKind.Delay, Count: 2, DelayMilliseconds: 3000), Ct);

        for (var round = 0; round < 3; round++)
        {
            foreach (var (user, _) in customers)
            {
                await Recorder.RecordAsync(user, "ai_messages", round + 2, cancellationToken: Ct);
                await Recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct);
            }

            await FlushUntilDoneAsync();
        }

        Assert.Empty(await Emulator.Admin.GetFaultsAsync(Ct));
        var rejections = await Emulator.Admin.GetRejectionCountsAsync(Ct);
        Assert.True(rejections.Values.Sum() >= 10, string.Join(", ", rejections.Select(r => $"{r.Key}={r.Value}")));
        await AssertTotalsMatchAsync();
        await using var db = Host.CreateContext();
        Assert.True(await db.UsageReports.AnyAsync(r => r.Attempts > 1, Ct));
        Assert.Equal(0, await db.UsageReports.CountAsync(r => r.Status != UsageReportStatus.Sent, Ct));
    }

    [Fact]
    public async Task Flush_EventAtLastTickAndFirstTickOfPeriods_LandInTheirOwnPeriods()
    {
        var (user, customer) = await NewCustomerAsync();
        var start = new DateTimeOffset(2026, 10, 25, 9, 30, 0, TimeSpan.Zero);
        var end = start.AddMonths(1);
        await using (var db = Host.CreateContext())
        {
            db.SubscriptionItems.Add(new BillingSubscriptionItem { Id = "si_p", SubscriptionId = "sub_p", UserId = user, PriceId = "price_p", Meter = "ai_messages", Status = "active", CurrentPeriodStart = start, CurrentPeriodEnd = end, UpdatedAt = Now });
            await db.SaveChangesAsync(Ct);
        }

        Time.SetUtcNow(end.AddMinutes(-1));
        await Recorder.RecordAsync(user, "ai_messages", 7, occurredAt: end.AddMilliseconds(-1), cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 5, occurredAt: start.AddDays(3), cancellationToken: Ct);
        Time.SetUtcNow(end.AddMinutes(1));
        await Recorder.RecordAsync(user, "ai_messages", 11, occurredAt: end, cancellationToken: Ct);

        await FlushUntilDoneAsync();

        Assert.Equal(12m, await Emulator.Admin.GetMeterTotalAsync(customer, "ai_messages", start, end, Ct));
        Assert.Equal(11m, await Emulator.Admin.GetMeterTotalAsync(customer, "ai_messages", end, end.AddMonths(1), Ct));
        await using var check = Host.CreateContext();
        var reports = await check.UsageReports.AsNoTracking().OrderBy(r => r.PeriodStart).ToListAsync(Ct);
        Assert.Equal(2, reports.Count);
        Assert.Equal((start, end, 12L), (reports[0].PeriodStart, reports[0].PeriodEnd, reports[0].Quantity));
        Assert.Equal(end.AddMilliseconds(-1), reports[0].Timestamp);
        Assert.Equal((end, end.AddMonths(1), 11L), (reports[1].PeriodStart, reports[1].PeriodEnd, reports[1].Quantity));
    }

    [Fact]
    public async Task FlushCustomer_AfterPeriodEndWithinGrace_UsageLandsOnTheClosedPeriodsInvoice()
    {
        var (user, customer) = await NewCustomerAsync();
        var meter = (await new MeterService(Stripe).ListAsync(new MeterListOptions { Limit = 100 }, cancellationToken: Ct)).Data.Single(m => m.EventName == "ai_messages");
        var product = await new ProductService(Stripe).CreateAsync(new ProductCreateOptions { Name = "AI messages" }, cancellationToken: Ct);
        var price = await new PriceService(Stripe).CreateAsync(
            new PriceCreateOptions
            {
                Currency = "usd",
                UnitAmount = 2,
                Recurring = new PriceRecurringOptions { Interval = "month", UsageType = "metered", Meter = meter.Id },
                Product = product.Id,
            },
            cancellationToken: Ct);
        var subscription = await new SubscriptionService(Stripe).CreateAsync(new SubscriptionCreateOptions { Customer = customer, Items = [new SubscriptionItemOptions { Price = price.Id }] }, cancellationToken: Ct);
        var item = subscription.Items.Data.Single();
        var start = new DateTimeOffset(item.CurrentPeriodStart, TimeSpan.Zero);
        var end = new DateTimeOffset(item.CurrentPeriodEnd, TimeSpan.Zero);
        await using (var db = Host.CreateContext())
        {
            db.SubscriptionItems.Add(new BillingSubscriptionItem { Id = item.Id, SubscriptionId = subscription.Id, UserId = user, PriceId = price.Id, Meter = "ai_messages", Status = "active", CurrentPeriodStart = start, CurrentPeriodEnd = end, UpdatedAt = Now });
            await db.SaveChangesAsync(Ct);
        }

        Time.SetUtcNow(end.AddMinutes(-2));
        await Recorder.RecordAsync(user, "ai_messages", 40, cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 2, occurredAt: end.AddMilliseconds(-1), cancellationToken: Ct);

        // The period closed and Stripe drafted its invoice (invoice.created); the app flushes this customer at once.
        Time.SetUtcNow(end.AddMinutes(20));
        var draft = (await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = subscription.Id, Status = "draft" }, cancellationToken: Ct)).Data.Single();
        var flushed = await Flusher.FlushCustomerAsync(user, Ct);
        Assert.Equal(1, flushed.ReportsSent);

        Time.SetUtcNow(end.AddHours(1).AddMinutes(1));
        var final = await new InvoiceService(Stripe).GetAsync(draft.Id, cancellationToken: Ct);
        Assert.NotEqual("draft", final.Status);
        Assert.Equal(end.UtcDateTime, final.PeriodEnd);
        var usageLine = final.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == price.Id);
        Assert.Equal(42L, usageLine.Quantity);
        Assert.Equal(84L, usageLine.Amount);
    }

    [Fact]
    public async Task Flush_ReportUnacknowledgedForADay_GoesToNeedsReviewAndIsNotResent()
    {
        var (user, _) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 3, cancellationToken: Ct);

        // Every attempt fails with a 500 the emulator keeps for the key: the report stays pending while it retries.
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEventPath, FaultKind.ServerError, Count: 1000), Ct);
        var first = await Flusher.FlushOnceAsync(Ct);
        Assert.Equal(1, first.ReportsRetried);
        for (var hour = 0; hour < 24; hour++)
        {
            Time.Advance(TimeSpan.FromHours(1));
            await Flusher.FlushOnceAsync(Ct);
        }

        var review = Assert.Single(await Host.Get<IUsageFlushStore>().ListReportsAsync(UsageReportStatus.NeedsReview, 10, Ct));
        Assert.StartsWith("needs_review", review.LastError, StringComparison.Ordinal);
        var attempts = review.Attempts;

        // Faults gone, a day later: still not resent blindly.
        await Emulator.Admin.ClearFaultsAsync(Ct);
        Time.Advance(TimeSpan.FromHours(2));
        var later = await Flusher.FlushOnceAsync(Ct);
        Assert.Equal(0, later.ReportsSent);
        Assert.Empty(await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct));
        Assert.Equal(attempts, Assert.Single(await Host.Get<IUsageFlushStore>().ListReportsAsync(UsageReportStatus.NeedsReview, 10, Ct)).Attempts);
    }

    [Fact]
    public async Task Flush_EventsOlderThanStripeWindow_EndDeadWithReasonAndAreNeverSent()
    {
        var (user, _) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 3, occurredAt: Now.AddDays(-34), cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 4, cancellationToken: Ct);
        Time.Advance(TimeSpan.FromDays(1.5));

        var result = await Flusher.FlushOnceAsync(Ct);

        Assert.Equal(1, result.ReportsDead);
        Assert.Equal(1, result.ReportsSent);
        var dead = Assert.Single(await Host.Get<IUsageFlushStore>().ListReportsAsync(UsageReportStatus.Dead, 10, Ct));
        Assert.StartsWith(ReportPlanning.TooOldReason, dead.LastError, StringComparison.Ordinal);
        Assert.Equal(3, dead.Quantity);
        var accepted = Assert.Single(await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct));
        Assert.Equal(4, accepted.Value);
    }

    [Fact]
    public async Task Flush_UnknownStripeCustomer_AcceptedThenReportedAsAnAsyncError()
    {
        var (user, _) = await NewCustomerAsync("cus_doesnotexist");
        await Recorder.RecordAsync(user, "ai_messages", 9, cancellationToken: Ct);

        var result = await Flusher.FlushOnceAsync(Ct);
        Assert.Equal(1, result.ReportsSent);

        // Stripe accepted (200) and found the unknown customer asynchronously; the thin event that names the
        // report, and the report turning dead, are BillingAccountComplianceTests' webhook test.
        var accepted = Assert.Single(await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct));
        Assert.Equal("meter_event_customer_not_found", accepted.ErrorCode);
        Assert.Equal(accepted.Identifier, Assert.Single(await Host.Get<IUsageFlushStore>().ListReportsAsync(UsageReportStatus.Sent, 10, Ct)).Id.ToString());
    }

    [Fact]
    public async Task Flush_UserWithoutCustomer_StaysPendingUntilCustomerExists()
    {
        await using (var db = Host.CreateContext())
        {
            db.Users.Add(new BillingUser { Id = Guid.Parse("00000000-0000-0000-0000-0000000000aa"), CreatedAt = Now });
            await db.SaveChangesAsync(Ct);
        }

        var user = Guid.Parse("00000000-0000-0000-0000-0000000000aa");
        await Recorder.RecordAsync(user, "ai_messages", 6, cancellationToken: Ct);
        var first = await Flusher.FlushOnceAsync(Ct);
        Assert.Equal(0, first.EventsClaimed);
        var backlog = await Host.Get<IUsageFlushStore>().GetBacklogAsync(Ct);
        Assert.Equal(1, backlog.PendingEventsWithoutCustomer);
        Assert.Equal(1, Host.Get<FlushState>().Backlog?.PendingEvents);   // what the pending-events gauge reports

        var customer = (await new CustomerService(Stripe).CreateAsync(new CustomerCreateOptions(), cancellationToken: Ct)).Id;
        await using (var db = Host.CreateContext())
        {
            db.BillingCustomers.Add(new BillingCustomer { UserId = user, StripeCustomerId = customer, CreatedAt = Now, UpdatedAt = Now });
            await db.SaveChangesAsync(Ct);
        }

        var second = await Flusher.FlushCustomerAsync(user, Ct);
        Assert.Equal(1, second.ReportsSent);
        Assert.Equal(6m, await Emulator.Admin.GetMeterTotalAsync(customer, "ai_messages", Now.AddDays(-1), Now.AddDays(1), Ct));
    }

    [Fact]
    public async Task Flush_StripeRefusesKey_StopsCycleKeepsReportsAndTurnsHealthUnhealthy()
    {
        var (user, _) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct);
        await Recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct);

        // A live key: well-formed, but this "Stripe" (test mode only) answers 401.
        var badHost = await BillingHost.StartAsync(Database, Time, null, b => b
            .UseStripe(o => { o.SecretKey = "sk_live_refusedkey"; o.ApiBase = Emulator.ApiBase; o.MaxNetworkRetries = 0; })
            .AddFlusher(o => { o.Enabled = false; o.MaxConcurrentCalls = 1; o.Transport = Transport; }));
        Hosts.Add(badHost);

        var result = await badHost.Get<IUsageFlusher>().FlushOnceAsync(Ct);

        Assert.NotNull(result.ConfigurationError);
        Assert.Contains("401", result.ConfigurationError, StringComparison.Ordinal);
        Assert.Equal(0, result.ReportsSent);
        Assert.Equal(0, result.ReportsDead);
        Assert.Equal(result.ConfigurationError, badHost.Get<FlushState>().ConfigurationError);
        var health = await badHost.Get<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService>().CheckHealthAsync(Ct);
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Unhealthy, health.Status);
        Assert.Empty(await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct));

        // Nothing was lost: a flusher with a good key delivers both reports.
        Time.Advance(TimeSpan.FromMinutes(10));
        var good = await FlushUntilDoneAsync();
        Assert.Equal(2, good.ReportsSent);
    }

    [Fact]
    public async Task Flush_FourFlushersAtOnce_TotalsExactAndNeverTwoCallsPerCustomerMeter()
    {
        await Emulator.Admin.SetConcurrencyEnforcementAsync(true, Ct);
        var customers = new List<(Guid User, string Customer)>();
        for (var i = 0; i < 20; i++)
        {
            customers.Add(await NewCustomerAsync());
        }

        var flushers = new List<IUsageFlusher> { Flusher };
        for (var i = 0; i < 3; i++)
        {
            flushers.Add((await AddFlusherHostAsync(o => o.ClaimBatchSize = 50)).Get<IUsageFlusher>());
        }

        var random = new Random(7);
        for (var round = 0; round < 5; round++)
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, 400), new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = Ct }, async (i, ct) =>
                await Recorder.RecordAsync(customers[random.Next(customers.Count)].User, i % 3 == 0 ? "api_calls" : "ai_messages", 1 + (i % 5), cancellationToken: ct));
            await Task.WhenAll(flushers.Select(f => Task.Run(() => f.FlushOnceAsync(Ct), Ct)));
        }

        await FlushUntilDoneAsync();
        var rejections = await Emulator.Admin.GetRejectionCountsAsync(Ct);
        Assert.Equal(0, rejections.GetValueOrDefault("concurrency"));
        Assert.Equal(0, rejections.GetValueOrDefault("duplicate_identifier"));
        await AssertTotalsMatchAsync();
    }
}

/// <summary>Crash safety: a flusher in another process, killed with SIGKILL at random moments while the emulator injects faults.</summary>
public abstract class CrashSafetyTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    /// <summary>Trials per provider; USAGEBILLING_CRASH_TRIALS raises it for a longer soak.</summary>
    private int Trials => int.TryParse(Environment.GetEnvironmentVariable("USAGEBILLING_CRASH_TRIALS"), out var n) ? n : DefaultTrials;

    /// <summary>Trials without USAGEBILLING_CRASH_TRIALS.</summary>
    protected virtual int DefaultTrials => 50;

    [Fact]
    public async Task Flush_WorkerKilledAtRandomMomentsWithFaults_NothingLostNothingCountedTwice()
    {
        // The worker runs on the wall clock; bring the shared fake clock (app and emulator) to it.
        Time.SetUtcNow(DateTimeOffset.UtcNow);
        var customers = new List<(Guid User, string Customer)>();
        for (var i = 0; i < 15; i++)
        {
            customers.Add(await NewCustomerAsync());
        }

        var worker = Path.Combine(AppContext.BaseDirectory, "UsageBilling.FlushWorker.dll");
        var random = new Random(2026);
        var faults = new[] { FaultKind.ServerError, FaultKind.RateLimited, FaultKind.DropAfterProcessing, FaultKind.Delay };
        var killedWhileSending = 0;
        var workerErrors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        for (var trial = 0; trial < Trials; trial++)
        {
            for (var i = 0; i < 30; i++)
            {
                var (user, _) = customers[random.Next(customers.Count)];
                await Recorder.RecordAsync(user, random.Next(3) == 0 ? "api_calls" : "ai_messages", random.Next(1, 50), cancellationToken: Ct);
            }

            if (trial % 3 == 0)
            {
                var kind = faults[random.Next(faults.Length)];
                await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEventPath, kind, Count: random.Next(1, 4), DelayMilliseconds: kind == FaultKind.Delay ? 2500 : 0, StoreForIdempotency: random.Next(2) == 0 && kind == FaultKind.ServerError), Ct);
            }
            var before = (await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count;

            using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("dotnet")
            {
                ArgumentList = { worker, Provider == Provider.Sqlite ? "sqlite" : "postgres", ConnectionString, Emulator.ApiBase, $"v2stream={(Transport == FlushTransport.V2Stream ? 1 : 0)}" },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            })!;
            var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is { } line)
                {
                    errors.Enqueue(line);
                    workerErrors.Enqueue(line);
                }
            };
            process.BeginErrorReadLine();
            var ready = await process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), Ct);
            if (ready != "ready")
            {
                process.Kill();
                Assert.Fail($"worker did not start: {ready} {string.Join('\n', errors)}");
            }

            if (trial % 3 != 0)
            {
                // Most trials: wait until this worker is delivering, then kill it a moment later, mid-send.
                var deadline = DateTime.UtcNow.AddSeconds(30);
                while ((await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count == before && DateTime.UtcNow < deadline && !process.HasExited)
                {
                    await Task.Delay(10, Ct);
                }
            }

            // Every third trial dies early: while starting, claiming or leasing.
            await Task.Delay(random.Next(0, 250), Ct);
            process.Kill();   // SIGKILL: no finally blocks, no disposal
            Assert.True(process.WaitForExit(30_000), "killed worker did not exit");

            if ((await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count > before)
            {
                killedWhileSending++;
            }
        }
        // One final clean flush, after the killed workers' leases lapsed.
        await Emulator.Admin.ClearFaultsAsync(Ct);
        Time.SetUtcNow(DateTimeOffset.UtcNow.AddSeconds(5));
        await FlushUntilDoneAsync();
        await AssertTotalsMatchAsync();
        var accepted = await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct);
        Assert.Equal(accepted.Count, accepted.Select(a => a.Identifier).Distinct().Count());
        await using var db = Host.CreateContext();
        Assert.Equal(await db.UsageReports.CountAsync(r => r.Status == UsageReportStatus.Sent, Ct), accepted.Count);
        Assert.True(killedWhileSending > Trials / 4, $"only {killedWhileSending} of {Trials} workers got to send before being killed; worker stderr: {string.Join('\n', workerErrors.Take(30))}");
        TestContext.Current.SendDiagnosticMessage($"{Trials} trials, {killedWhileSending} killed after sending, {accepted.Count} meter events accepted");
    }
}

internal sealed class SyncProgress(Action<FlushResult> report) : IProgress<FlushResult>
{
    public void Report(FlushResult value) => report(value);
}

public sealed class SqliteCrashSafetyTests() : CrashSafetyTests(Provider.Sqlite);

public sealed class PostgresCrashSafetyTests() : CrashSafetyTests(Provider.Postgres);

/// <summary>The crash loop with the worker on the v2 stream (fewer trials: the v1 loop covers the claim/lease/mark paths).</summary>
public sealed class SqliteStreamCrashSafetyTests() : CrashSafetyTests(Provider.Sqlite)
{
    protected override FlushTransport Transport => FlushTransport.V2Stream;

    protected override int DefaultTrials => 15;
}

/// <summary>The crash loop with the worker on the v2 stream, on PostgreSQL.</summary>
public sealed class PostgresStreamCrashSafetyTests() : CrashSafetyTests(Provider.Postgres)
{
    protected override FlushTransport Transport => FlushTransport.V2Stream;

    protected override int DefaultTrials => 15;
}

public sealed class SqliteFlushTests() : FlushComplianceTests(Provider.Sqlite);

public sealed class PostgresFlushTests() : FlushComplianceTests(Provider.Postgres);

/// <summary>The same flush facts with <see cref="FlushTransport.V2Stream"/> (faults on the stream path), on SQLite.</summary>
public sealed class SqliteStreamFlushTests() : FlushComplianceTests(Provider.Sqlite)
{
    protected override FlushTransport Transport => FlushTransport.V2Stream;
}

/// <summary>The same flush facts with <see cref="FlushTransport.V2Stream"/> (faults on the stream path), on PostgreSQL.</summary>
public sealed class PostgresStreamFlushTests() : FlushComplianceTests(Provider.Postgres)
{
    protected override FlushTransport Transport => FlushTransport.V2Stream;
}
