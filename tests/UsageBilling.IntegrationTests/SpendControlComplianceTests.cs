using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.IntegrationTests.Infrastructure;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// Spend control, stated once and run on both databases: limits enforced inside the recording
/// transaction (across threads and processes), the no-plan policy, customer caps, and alerts that fire
/// exactly once and are delivered at least once.
/// </summary>
public abstract class SpendControlComplianceTests(Provider provider) : IAsyncLifetime
{
    protected static readonly DateTimeOffset Now = new(2026, 11, 15, 12, 0, 0, TimeSpan.Zero);

    /// <summary>Two-process trials per provider; USAGEBILLING_LIMIT_TRIALS raises it (the issue's full run is 20).</summary>
    private static int Trials => int.TryParse(Environment.GetEnvironmentVariable("USAGEBILLING_LIMIT_TRIALS"), out var n) ? n : 5;

    private const long WorkerLimit = 1000;

    private TestDatabase _database = null!;

    protected BillingHost Host { get; private set; } = null!;

    protected RecordingHandler Handler { get; } = new();

    protected IUsageRecorder Recorder => Host.Get<IUsageRecorder>();

    protected IUsageLimits Limits => Host.Get<IUsageLimits>();

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(provider);
        Host = await StartHostAsync(null);
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        await _database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    /// <summary>A host with the test plans, the worker's plan and its alerts, and <see cref="Handler"/>.</summary>
    private Task<BillingHost> StartHostAsync(Action<UsageBillingOptions>? configure, FakeTimeProvider? time = null) =>
        BillingHost.StartAsync(
            _database,
            time ?? new FakeTimeProvider(Now),
            o =>
            {
                var limited = new PlanDefinition { DisplayName = "Limited" };
                limited.Meters["ai_messages"] = new PlanMeterPrice { Included = 0, UnitPrice = 0.01m, HardLimit = WorkerLimit };
                limited.Meters["api_calls"] = new PlanMeterPrice { Included = 0, UnitPrice = 0.01m };   // as the worker's plan
                o.Plans["limited"] = limited;

                // Graduated: 100 free, 0.01 up to 1000, then 5.00 flat + 0.005 each: the flat step jumps over a 10.00 limit.
                var tiered = new PlanDefinition { DisplayName = "Tiered", MonthlyPrice = 10m };
                var price = new PlanMeterPrice { Included = 100, SpendLimit = 10m };
                price.Tiers.Add(new PriceTier { UpTo = 1000, UnitAmount = 0.01m });
                price.Tiers.Add(new PriceTier { UpTo = null, UnitAmount = 0.005m, FlatAmount = 5m });
                tiered.Meters["ai_messages"] = price;
                tiered.Meters["api_calls"] = new PlanMeterPrice { Included = 10, UnitPrice = 1m, HardLimit = 20 };
                o.Plans["tiered"] = tiered;
                o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfLimit, Value = 50 });
                o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfLimit, Value = 100 });
                configure?.Invoke(o);
            },
            b => b.Services.AddSingleton<IUsageAlertHandler>(Handler));

    protected async Task<Guid> NewUserAsync(string? planId)
    {
        await using var db = Host.CreateContext();
        var user = new BillingUser { Id = Guid.NewGuid(), Email = "u@example.com", CreatedAt = Now };
        db.Users.Add(user);
        if (planId is not null)
        {
            db.BillingCustomers.Add(new BillingCustomer { UserId = user.Id, StripeCustomerId = $"cus_{Guid.NewGuid():N}", PlanId = planId, CreatedAt = Now, UpdatedAt = Now });
        }

        await db.SaveChangesAsync(Ct);
        return user.Id;
    }

    private async Task<long> StoredQuantityAsync(Guid user, string meter = "ai_messages")
    {
        await using var db = Host.CreateContext();
        return (await db.UsageEvents.AsNoTracking().Where(e => e.UserId == user && e.Meter == meter).Select(e => e.Quantity).ToListAsync(Ct)).Sum();
    }

    private async Task<List<UsageAlertRecord>> AlertRowsAsync(Guid user)
    {
        await using var db = Host.CreateContext();
        return await db.UsageAlerts.AsNoTracking().Where(a => a.UserId == user).ToListAsync(Ct);
    }

    [Fact]
    public async Task RecordAsync_AtHardLimit_RefusesWithLimitUsedAndPeriodEnd_AndWritesNothing()
    {
        var user = await NewUserAsync("limited");
        await Recorder.RecordAsync(user, "ai_messages", WorkerLimit - 3, "fill", cancellationToken: Ct);

        var ex = await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 4, "over", cancellationToken: Ct));

        Assert.Equal(UsageLimitKind.HardLimit, ex.Kind);
        Assert.Equal(WorkerLimit, ex.Limit);
        Assert.Equal(WorkerLimit - 3, ex.Used);
        Assert.Equal(4, ex.Requested);
        Assert.Equal(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero), ex.PeriodEnd);
        Assert.False(ex.IsMonetary);
        Assert.Equal(WorkerLimit - 3, await StoredQuantityAsync(user));

        // The refused key left nothing behind: it can be used again, for what still fits.
        await Recorder.RecordAsync(user, "ai_messages", 3, "over", cancellationToken: Ct);
        Assert.Equal(WorkerLimit, await StoredQuantityAsync(user));
        await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct));
        await using var check = Host.CreateContext();
        await RollupAssert.MatchesEventsAsync(check, Ct);
        var total = await check.UsagePeriodTotals.AsNoTracking().SingleAsync(t => t.UserId == user, Ct);
        Assert.Equal(WorkerLimit, total.Quantity);
        Assert.Equal(2, total.EventCount);
    }

    [Fact]
    public async Task RecordAsync_EventsStoredBeforeEnforcement_CountTowardsTheLimit()
    {
        // An upgrade (or enforcement turned on later): the period's total starts from the stored events.
        var user = await NewUserAsync("limited");
        await using (var unguarded = await StartHostAsync(o => o.Limits.Enforce = false))
        {
            await unguarded.Get<IUsageRecorder>().RecordAsync(user, "ai_messages", WorkerLimit - 5, cancellationToken: Ct);
            await unguarded.Get<IUsageRecorder>().RecordAsync(user, "ai_messages", 1, occurredAt: Now.AddDays(-20), cancellationToken: Ct);   // October: another period
        }

        var ex = await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 6, cancellationToken: Ct));
        Assert.Equal(WorkerLimit - 5, ex.Used);
        await Recorder.RecordAsync(user, "ai_messages", 5, cancellationToken: Ct);
        await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct));
        await using var db = Host.CreateContext();
        var total = await db.UsagePeriodTotals.AsNoTracking().SingleAsync(t => t.UserId == user, Ct);
        Assert.Equal((WorkerLimit, 2L), (total.Quantity, total.EventCount));
    }

    [Fact]
    public async Task RecordAsync_IdempotentReplayAtTheLimit_ReturnsOriginalAndCountsOnce()
    {
        var user = await NewUserAsync("limited");
        var first = await Recorder.RecordAsync(user, "ai_messages", WorkerLimit, "all", cancellationToken: Ct);

        var replays = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Run(() => Recorder.RecordAsync(user, "ai_messages", WorkerLimit, "all", cancellationToken: Ct), Ct)));

        Assert.All(replays, id => Assert.Equal(first, id));
        Assert.Equal(WorkerLimit, await StoredQuantityAsync(user));
        await using var db = Host.CreateContext();
        Assert.Equal(WorkerLimit, (await db.UsagePeriodTotals.AsNoTracking().SingleAsync(t => t.UserId == user, Ct)).Quantity);
    }

    [Fact]
    public async Task RecordAsync_200ConcurrentCallersTenBelowTheLimit_ExactlyTenAccepted()
    {
        var user = await NewUserAsync("limited");
        await Recorder.RecordAsync(user, "ai_messages", WorkerLimit - 10, cancellationToken: Ct);

        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Task.Run(
            async () =>
            {
                try
                {
                    await Recorder.RecordAsync(user, "ai_messages", 1, $"c{i}", cancellationToken: Ct);
                    return true;
                }
                catch (UsageLimitExceededException)
                {
                    return false;
                }
            },
            Ct)));

        Assert.Equal(10, results.Count(r => r));
        Assert.Equal(WorkerLimit, await StoredQuantityAsync(user));
        var alerts = await AlertRowsAsync(user);
        Assert.Equal(["percent_of_limit:100", "percent_of_limit:50"], alerts.Select(a => a.Threshold).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task RecordAsync_TwoProcessesOneDatabase_NeverOvershootTheLimit()
    {
        // The workers run on the wall clock: so does this host, so that all of them share one period.
        await using var host = await StartHostAsync(null, new FakeTimeProvider(DateTimeOffset.UtcNow));
        var recorder = host.Get<IUsageRecorder>();
        var worker = Path.Combine(AppContext.BaseDirectory, "UsageBilling.RecordWorker.dll");
        using var a = await Worker.StartAsync(worker, provider, _database.ConnectionString, WorkerLimit);
        using var b = await Worker.StartAsync(worker, provider, _database.ConnectionString, WorkerLimit);
        var report = new List<string>();
        for (var trial = 0; trial < Trials; trial++)
        {
            var user = await NewUserAsync("limited");
            await recorder.RecordAsync(user, "ai_messages", WorkerLimit - 10, cancellationToken: Ct);

            // 100 concurrent calls in each process, both at once.
            var answers = await Task.WhenAll(a.AskAsync($"run {user} 100 a{trial}"), b.AskAsync($"run {user} 100 b{trial}"));

            var counts = answers.Select(Worker.ParseDone).ToArray();
            Assert.All(counts, c => Assert.Equal(0, c.Other));
            Assert.Equal(10, counts.Sum(c => c.Accepted));
            Assert.Equal(190, counts.Sum(c => c.Rejected));
            Assert.Equal(WorkerLimit, await StoredQuantityAsync(user));

            // Each threshold fired once, whichever process crossed it.
            var alerts = await AlertRowsAsync(user);
            Assert.Equal(["percent_of_limit:100", "percent_of_limit:50"], alerts.Select(x => x.Threshold).Order(StringComparer.Ordinal));
            report.Add($"{counts[0].Accepted}+{counts[1].Accepted}");
        }

        await using var check = Host.CreateContext();
        await RollupAssert.MatchesEventsAsync(check, Ct);
        TestContext.Current.SendDiagnosticMessage($"{Trials} trials, accepted per process: {string.Join(", ", report)}");
    }

    [Fact]
    public async Task RecordAsync_SpendLimitWithGraduatedTiers_StopsWhereTheNextTierWouldCrossIt()
    {
        var user = await NewUserAsync("tiered");
        await Recorder.RecordAsync(user, "ai_messages", 999, cancellationToken: Ct);   // 8.99
        await Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct);     // 9.00: the end of the 0.01 tier

        // Unit 1001 enters the tier with a 5.00 flat fee: 14.005 > 10.00.
        var ex = await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct));

        Assert.Equal(UsageLimitKind.SpendLimit, ex.Kind);
        Assert.True(ex.IsMonetary);
        Assert.Equal(10m, ex.Limit);
        Assert.Equal(9m, ex.Used);
        Assert.Equal(1000, await StoredQuantityAsync(user));
        var check = await Limits.CheckAsync(user, "ai_messages", 1, Ct);
        Assert.True(check.WouldExceed);
        Assert.Equal(0, check.Remaining);
        Assert.Equal(UsageLimitKind.SpendLimit, check.Kind);

        var summary = (await Host.Get<IUsageSummaryService>().GetCurrentPeriodAsync(user, Ct)).Meters.Single(m => m.Meter == "ai_messages");
        Assert.True(summary.LimitReached);
        Assert.Equal(1000, summary.Limit!.MaxUnits);
        Assert.Equal(summary.PeriodEnd, summary.Limit.ResetsAt);
        Assert.Equal(9m, summary.ProjectedCost);

        // Percent of the (spend) limit: 50 % = 5.00 and 100 % = 10.00; only 50 % was reached.
        Assert.Equal(["percent_of_limit:50"], (await AlertRowsAsync(user)).Select(x => x.Threshold));
    }

    [Fact]
    public async Task CountMeter_HardLimitCountsEventsNotQuantities()
    {
        var user = await NewUserAsync("tiered");
        for (var i = 0; i < 20; i++)
        {
            await Recorder.RecordAsync(user, "api_calls", 1000, cancellationToken: Ct);
        }

        var ex = await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct));
        Assert.Equal(20m, ex.Limit);
        Assert.Equal(20m, ex.Used);
        Assert.Equal(1, ex.Requested);
    }

    [Fact]
    public async Task CustomerSpendCap_StopsBelowThePlan_AndCannotExceedIt()
    {
        var user = await NewUserAsync("tiered");
        await Assert.ThrowsAsync<InvalidSpendCapException>(() => Limits.SetCapsAsync(user, "ai_messages", 10.01m, null, Ct));
        await Assert.ThrowsAsync<InvalidSpendCapException>(() => Limits.SetCapsAsync(user, "ai_messages", -1m, null, Ct));
        await Limits.SetCapsAsync(user, "ai_messages", 2.50m, null, Ct);   // 100 free + 250 at 0.01

        await Recorder.RecordAsync(user, "ai_messages", 350, cancellationToken: Ct);
        var ex = await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct));

        Assert.Equal(UsageLimitKind.CustomerSpendCap, ex.Kind);
        Assert.Equal(2.50m, ex.Limit);
        var settings = await Limits.GetSettingsAsync(user, "ai_messages", Ct);
        Assert.Equal(2.50m, settings.SpendCap);
        Assert.Equal(10m, settings.PlanSpendLimit);

        // Lifting the cap lets usage continue up to the plan's own limit.
        await Limits.SetCapsAsync(user, "ai_messages", null, null, Ct);
        await Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct);
        Assert.Equal(351, await StoredQuantityAsync(user));
    }

    [Fact]
    public async Task AccountSpendCap_SumsEveryMeter_RefusesWhatWouldCrossIt_AndStaysUnderThePlanCeiling()
    {
        var user = await NewUserAsync("tiered");

        // Tiered: ai_messages at most 9.00 (its 10.00 limit stops before the flat step), api_calls at most 10 × 1.00.
        var settings = await Limits.GetAccountSpendCapAsync(user, Ct);
        Assert.Null(settings.SpendCap);
        Assert.Equal(19m, settings.PlanCeiling);
        var tooHigh = await Assert.ThrowsAsync<InvalidSpendCapException>(() => Limits.SetAccountSpendCapAsync(user, 19.01m, Ct));
        Assert.Contains("19", tooHigh.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidSpendCapException>(() => Limits.SetAccountSpendCapAsync(user, -1m, Ct));
        await Limits.SetAccountSpendCapAsync(user, 5m, Ct);
        Assert.Equal(5m, (await Limits.GetAccountSpendCapAsync(user, Ct)).SpendCap);

        // 100 free + 200 × 0.01 = 2.00 on one meter; 10 free + 3 × 1.00 = 3.00 on the other: exactly 5.00.
        await Recorder.RecordAsync(user, "ai_messages", 300, cancellationToken: Ct);
        for (var i = 0; i < 13; i++)
        {
            await Recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct);
        }

        var call = await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct));
        Assert.Equal(UsageLimitKind.AccountSpendCap, call.Kind);
        Assert.True(call.IsMonetary);
        Assert.Equal(5m, call.Limit);
        Assert.Equal(5m, call.Used);
        var message = await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct));
        Assert.Equal(UsageLimitKind.AccountSpendCap, message.Kind);
        Assert.Contains("across all meters", message.Message, StringComparison.Ordinal);
        Assert.Equal(300, await StoredQuantityAsync(user));
        Assert.Equal(13, await StoredQuantityAsync(user, "api_calls"));

        var check = await Limits.CheckAsync(user, "ai_messages", 1, Ct);
        Assert.True(check.WouldExceed);
        Assert.Equal(UsageLimitKind.AccountSpendCap, check.Kind);
        Assert.Equal(0, check.Remaining);

        // Raising the cap by 0.50 makes room for 50 messages (or half a call): the check says so and the recorder agrees.
        await Limits.SetAccountSpendCapAsync(user, 5.50m, Ct);
        Assert.Equal(50, (await Limits.CheckAsync(user, "ai_messages", 1, Ct)).Remaining);
        await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 51, cancellationToken: Ct));
        await Recorder.RecordAsync(user, "ai_messages", 50, cancellationToken: Ct);
        await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct));

        // Removing it leaves the plan's own limits.
        await Limits.SetAccountSpendCapAsync(user, null, Ct);
        await Recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct);
        Assert.Equal(14, await StoredQuantityAsync(user, "api_calls"));
        Assert.Null((await Limits.GetAccountSpendCapAsync(user, Ct)).SpendCap);
        await using var db = Host.CreateContext();
        await RollupAssert.MatchesEventsAsync(db, Ct);
    }

    [Fact]
    public async Task AccountSpendCap_TwoProcessesRecordingTwoMeters_NeverOvershootIt()
    {
        await using var host = await StartHostAsync(null, new FakeTimeProvider(DateTimeOffset.UtcNow));
        var recorder = host.Get<IUsageRecorder>();
        var limits = host.Get<IUsageLimits>();
        var worker = Path.Combine(AppContext.BaseDirectory, "UsageBilling.RecordWorker.dll");
        using var a = await Worker.StartAsync(worker, provider, _database.ConnectionString, WorkerLimit);
        using var b = await Worker.StartAsync(worker, provider, _database.ConnectionString, WorkerLimit);
        var report = new List<string>();
        for (var trial = 0; trial < Trials; trial++)
        {
            // 1.00 across both meters at 0.01 a unit, 0.90 used: room for 10 units, whichever meter takes them.
            var user = await NewUserAsync("limited");
            await limits.SetAccountSpendCapAsync(user, 1m, Ct);
            await recorder.RecordAsync(user, "ai_messages", 90, cancellationToken: Ct);

            var answers = await Task.WhenAll(a.AskAsync($"run {user} 100 a{trial} ai_messages"), b.AskAsync($"run {user} 100 b{trial} api_calls"));

            var counts = answers.Select(Worker.ParseDone).ToArray();
            Assert.All(counts, c => Assert.Equal(0, c.Other));
            Assert.Equal(10, counts.Sum(c => c.Accepted));
            Assert.Equal(190, counts.Sum(c => c.Rejected));
            Assert.Equal(100, await StoredQuantityAsync(user) + await StoredQuantityAsync(user, "api_calls"));
            report.Add($"{counts[0].Accepted}+{counts[1].Accepted}");
        }

        await using var check = Host.CreateContext();
        await RollupAssert.MatchesEventsAsync(check, Ct);
        TestContext.Current.SendDiagnosticMessage($"{Trials} trials, accepted messages+calls: {string.Join(", ", report)}");
    }

    [Fact]
    public async Task NoPlanPolicy_DefaultDenies_FreeAllowanceAllowsItsUnits_AllowAllows()
    {
        var user = await NewUserAsync(null);
        await using (var deny = await StartHostAsync(o => o.Limits.NoPlan = NoPlanPolicy.Deny))
        {
            var ex = await Assert.ThrowsAsync<UsageLimitExceededException>(() => deny.Get<IUsageRecorder>().RecordAsync(user, "ai_messages", 1, cancellationToken: Ct));
            Assert.Equal(UsageLimitKind.NoPlan, ex.Kind);
            Assert.Contains("needs a plan", ex.Message, StringComparison.Ordinal);
            Assert.Equal(NoPlanPolicy.Deny, new UsageBillingOptions().Limits.NoPlan);
        }

        await using (var free = await StartHostAsync(o =>
        {
            o.Limits.NoPlan = NoPlanPolicy.FreeAllowance;
            o.Limits.NoPlanAllowance["ai_messages"] = 5;
        }))
        {
            var recorder = free.Get<IUsageRecorder>();
            await recorder.RecordAsync(user, "ai_messages", 5, cancellationToken: Ct);
            var ex = await Assert.ThrowsAsync<UsageLimitExceededException>(() => recorder.RecordAsync(user, "ai_messages", 1, cancellationToken: Ct));
            Assert.Equal(UsageLimitKind.NoPlanAllowance, ex.Kind);
            Assert.Equal(5m, ex.Limit);
            await Assert.ThrowsAsync<UsageLimitExceededException>(() => recorder.RecordAsync(user, "api_calls", 1, cancellationToken: Ct));
        }

        await Recorder.RecordAsync(user, "ai_messages", 1000, cancellationToken: Ct);   // TestPlans: Allow
        Assert.Equal(1005, await StoredQuantityAsync(user));
    }

    [Fact]
    public async Task Alerts_OneBatchCrossingSeveralThresholds_WritesEachOnce_AndDeliversEachOnce()
    {
        var user = await NewUserAsync("tiered");
        await Limits.SetAlertThresholdsAsync(user, "ai_messages",
        [
            new AlertThreshold { Kind = AlertThresholdKind.PercentOfIncluded, Value = 50 },
            new AlertThreshold { Kind = AlertThresholdKind.PercentOfIncluded, Value = 80 },
            new AlertThreshold { Kind = AlertThresholdKind.PercentOfIncluded, Value = 100 },
            new AlertThreshold { Kind = AlertThresholdKind.Amount, Value = 2 },
            new AlertThreshold { Kind = AlertThresholdKind.Quantity, Value = 900 },
        ], Ct);

        await Recorder.RecordAsync(user, "ai_messages", 90, cancellationToken: Ct);    // 50 %, 80 %
        await Recorder.RecordAsync(user, "ai_messages", 300, cancellationToken: Ct);   // 100 %, 2.00 (390 units = 2.90)
        await Recorder.RecordAsync(user, "ai_messages", 5, cancellationToken: Ct);     // nothing new

        var rows = await AlertRowsAsync(user);
        Assert.Equal(
            ["amount:2", "percent_of_included:100", "percent_of_included:50", "percent_of_included:80"],
            rows.Select(r => r.Threshold).Order(StringComparer.Ordinal));
        Assert.Equal(390, rows.Single(r => r.Threshold == "amount:2").Used);
        Assert.Equal(2.90m, rows.Single(r => r.Threshold == "amount:2").Amount);

        Assert.Equal(4, await Host.Get<IUsageAlertDispatcher>().DeliverOnceAsync(Ct));
        Assert.Equal(0, await Host.Get<IUsageAlertDispatcher>().DeliverOnceAsync(Ct));
        Assert.Equal(rows.Select(r => r.Id).Order(), Handler.Received.Select(a => a.Id).Order());
        Assert.All(await AlertRowsAsync(user), r => Assert.NotNull(r.DeliveredAt));
        var recent = await Limits.GetRecentAlertsAsync(user, Ct);
        Assert.Equal(4, recent.Count);
        Assert.Contains(recent, a => a.Threshold.Kind == AlertThresholdKind.Amount && a.Threshold.Value == 2m);
    }

    [Fact]
    public async Task Alerts_ConcurrentRecordsCrossingThresholds_FireExactlyOnceEach()
    {
        var user = await NewUserAsync("tiered");
        await Limits.SetAlertThresholdsAsync(user, "ai_messages",
            [.. new[] { 10, 25, 50, 75, 100 }.Select(p => new AlertThreshold { Kind = AlertThresholdKind.PercentOfIncluded, Value = p })], Ct);

        await Task.WhenAll(Enumerable.Range(0, 150).Select(i => Task.Run(() => Recorder.RecordAsync(user, "ai_messages", 1, $"k{i}", cancellationToken: Ct), Ct)));

        var rows = await AlertRowsAsync(user);
        Assert.Equal(5, rows.Count);
        Assert.Equal(5, rows.Select(r => r.Threshold).Distinct().Count());
        foreach (var row in rows)
        {
            AlertThreshold.TryParse(row.Threshold, out var t);
            Assert.True(row.Used >= t.Value, $"{row.Threshold} fired at {row.Used}");
        }
    }

    [Fact]
    public async Task Alerts_TwoDeliveriesAtOnceInOneProcess_HandleEachAlertOnce()
    {
        var user = await NewUserAsync("limited");
        await Recorder.RecordAsync(user, "ai_messages", WorkerLimit, cancellationToken: Ct);   // 50 % and 100 % of the limit
        var dispatcher = Host.Get<IUsageAlertDispatcher>();
        Handler.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        // The first call holds its lease inside the handler while a second call (the background loop's,
        // or an app's) claims: it must not take the rows the first one leased.
        var first = Task.Run(() => dispatcher.DeliverOnceAsync(Ct), Ct);
        await Handler.Entered.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        var second = Task.Run(() => dispatcher.DeliverOnceAsync(Ct), Ct);
        await Task.WhenAny(second, Task.Delay(TimeSpan.FromSeconds(2), Ct));
        Handler.Gate.TrySetResult();
        await Task.WhenAll(first, second);
        Assert.Equal(0, await dispatcher.DeliverOnceAsync(Ct));

        var rows = await AlertRowsAsync(user);
        Assert.Equal(2, rows.Count);
        Assert.Equal(rows.Select(r => r.Id).Order(), Handler.Received.Select(a => a.Id).Order());
        Assert.All(rows, r => Assert.NotNull(r.DeliveredAt));
    }

    [Fact]
    public async Task Alerts_TwoDeliveriesStartedTogetherInOneProcess_NeverHandleAnAlertTwice()
    {
        // Both calls pick the same due rows; only the one whose lease landed may hand them to the
        // handlers (one dispatcher per process, so both lease under the process's name unless each
        // call has its own).
        var dispatcher = Host.Get<IUsageAlertDispatcher>();
        for (var trial = 0; trial < 20; trial++)
        {
            var user = await NewUserAsync("limited");
            await Recorder.RecordAsync(user, "ai_messages", WorkerLimit, cancellationToken: Ct);
            using var start = new Barrier(2);
            var calls = Enumerable.Range(0, 2).Select(_ => Task.Run(
                async () =>
                {
                    start.SignalAndWait(Ct);
                    return await dispatcher.DeliverOnceAsync(Ct);
                },
                Ct)).ToArray();
            var delivered = await Task.WhenAll(calls);

            var ids = (await AlertRowsAsync(user)).Select(r => r.Id).ToHashSet();
            var handled = Handler.Received.Where(a => ids.Contains(a.Id)).Select(a => a.Id).ToList();
            Assert.True(handled.Count == 2 && handled.Distinct().Count() == 2, $"trial {trial}: the handler got {handled.Count} calls for {ids.Count} alerts ({string.Join(", ", delivered)} delivered)");
        }
    }

    [Fact]
    public async Task Alerts_FailingHandler_IsRetriedWithBackoffUntilDelivered()
    {
        var user = await NewUserAsync("limited");
        Handler.FailNext = 2;
        await Recorder.RecordAsync(user, "ai_messages", 600, cancellationToken: Ct);
        var dispatcher = Host.Get<IUsageAlertDispatcher>();

        Assert.Equal(0, await dispatcher.DeliverOnceAsync(Ct));
        Assert.Equal(0, await dispatcher.DeliverOnceAsync(Ct));   // not due yet: backoff
        Host.Time.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(0, await dispatcher.DeliverOnceAsync(Ct));   // second failure
        Host.Time.Advance(TimeSpan.FromSeconds(11));
        Assert.Equal(1, await dispatcher.DeliverOnceAsync(Ct));

        var row = Assert.Single(await AlertRowsAsync(user));
        Assert.Equal(3, row.Attempts);
        Assert.NotNull(row.DeliveredAt);
        Assert.Contains("handler failure", row.LastError, StringComparison.Ordinal);
        Assert.Equal(3, Handler.Received.Count(a => a.Id == row.Id));
    }

    [Fact]
    public async Task Alerts_ProcessKilledAfterCommitWhileDelivering_AreDeliveredAfterRestartOncePerAlertId()
    {
        var workerPath = Path.Combine(AppContext.BaseDirectory, "UsageBilling.RecordWorker.dll");
        var user = await NewUserAsync("limited");
        using (var worker = await Worker.StartAsync(workerPath, provider, _database.ConnectionString, WorkerLimit))
        {
            // The worker commits usage crossing 50 % and 100 %, takes one alert's lease, and dies.
            var done = Worker.ParseDone(await worker.AskAsync($"run {user} 1000 w"));
            Assert.Equal(1000, done.Accepted);
            var handling = await worker.AskAsync("deliver");
            Assert.StartsWith("handling ", handling, StringComparison.Ordinal);
            worker.Kill();
        }

        var rows = await AlertRowsAsync(user);
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.Null(r.DeliveredAt));

        // A restarted app (its own clock past the dead worker's lease) delivers both, once each.
        await using var restarted = await StartHostAsync(null, new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(2)));
        var dispatcher = restarted.Get<IUsageAlertDispatcher>();
        Assert.Equal(2, await dispatcher.DeliverOnceAsync(Ct));
        Assert.Equal(0, await dispatcher.DeliverOnceAsync(Ct));
        Assert.Equal(rows.Select(r => r.Id).Order(), Handler.Received.Select(a => a.Id).Order());
        Assert.All(await AlertRowsAsync(user), r => Assert.NotNull(r.DeliveredAt));
    }

    [Fact]
    public async Task CheckAsync_IsAdvisory_AndMatchesWhatRecordDecides()
    {
        var user = await NewUserAsync("limited");
        await Recorder.RecordAsync(user, "ai_messages", WorkerLimit - 2, cancellationToken: Ct);

        var fits = await Limits.CheckAsync(user, "ai_messages", 2, Ct);
        var over = await Limits.CheckAsync(user, "ai_messages", 3, Ct);

        Assert.False(fits.WouldExceed);
        Assert.Equal(2, fits.Remaining);
        Assert.Equal(WorkerLimit - 2, fits.Used);
        Assert.True(over.WouldExceed);
        Assert.Equal(UsageLimitKind.HardLimit, over.Kind);
        Assert.NotNull(over.Message);
        await Assert.ThrowsAsync<UsageLimitExceededException>(() => Recorder.RecordAsync(user, "ai_messages", 3, cancellationToken: Ct));
        await Recorder.RecordAsync(user, "ai_messages", 2, cancellationToken: Ct);
    }

    [Fact]
    public async Task RecordAsync_SameKeyWithAnotherFingerprint_IsAConflict_AndSameFingerprintReplays()
    {
        var user = await NewUserAsync("limited");
        var first = await Recorder.RecordRequestAsync(user, "ai_messages", 1, "req-1", "sha256:aaa", cancellationToken: Ct);

        Assert.Equal(first, await Recorder.RecordRequestAsync(user, "ai_messages", 1, "req-1", "sha256:aaa", cancellationToken: Ct));
        var ex = await Assert.ThrowsAsync<IdempotencyConflictException>(() => Recorder.RecordRequestAsync(user, "ai_messages", 1, "req-1", "sha256:bbb", cancellationToken: Ct));
        Assert.Contains("req-1", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<IdempotencyConflictException>(() => Recorder.RecordAsync(user, "ai_messages", 1, "req-1", cancellationToken: Ct));
        Assert.Equal(1, await StoredQuantityAsync(user));
    }

    /// <summary>Collects delivered alerts; can fail its next calls on purpose.</summary>
    protected sealed class RecordingHandler : IUsageAlertHandler
    {
        private int _failNext;

        public ConcurrentQueue<UsageAlert> Received { get; } = new();

        public int FailNext
        {
            get => _failNext;
            set => _failNext = value;
        }

        /// <summary>When set, each call signals <see cref="Entered"/> and waits for this before it returns.</summary>
        public TaskCompletionSource? Gate { get; set; }

        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async Task HandleAsync(UsageAlert alert, CancellationToken cancellationToken)
        {
            Received.Enqueue(alert);
            if (Gate is { } gate)
            {
                Entered.TrySetResult();
                await gate.Task.WaitAsync(cancellationToken);
            }

            if (Interlocked.Decrement(ref _failNext) >= 0)
            {
                throw new InvalidOperationException("handler failure (on purpose)");
            }
        }
    }

    /// <summary>A UsageBilling.RecordWorker process driven over stdin/stdout.</summary>
    private sealed class Worker : IDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _errors = new();

        private Worker(Process process)
        {
            _process = process;
            _process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is { } line)
                {
                    _errors.Enqueue(line);
                }
            };
            _process.BeginErrorReadLine();
        }

        public static async Task<Worker> StartAsync(string path, Provider provider, string connectionString, long limit)
        {
            var process = Process.Start(new ProcessStartInfo("dotnet")
            {
                ArgumentList = { path, provider == Provider.Sqlite ? "sqlite" : "postgres", connectionString, limit.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            })!;
            var worker = new Worker(process);
            var ready = await process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), Ct);
            Assert.True(ready == "ready", $"worker did not start: {ready} {string.Join('\n', worker._errors)}");
            return worker;
        }

        public async Task<string> AskAsync(string command)
        {
            await _process.StandardInput.WriteLineAsync(command);
            await _process.StandardInput.FlushAsync(Ct);
            var answer = await _process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(120), Ct);
            return answer ?? throw new InvalidOperationException($"worker exited: {string.Join('\n', _errors)}");
        }

        public static (int Accepted, int Rejected, int Other) ParseDone(string line)
        {
            var parts = line.Split(' ');
            Assert.True(parts.Length == 4 && parts[0] == "done", line);
            return (int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[3], System.Globalization.CultureInfo.InvariantCulture));
        }

        public void Kill()
        {
            _process.Kill();   // SIGKILL: no finally blocks, no disposal
            _process.WaitForExit(30_000);
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(30_000);
            }

            _process.Dispose();
        }
    }
}

public sealed class SqliteSpendControlTests() : SpendControlComplianceTests(Provider.Sqlite);

public sealed class PostgresSpendControlTests() : SpendControlComplianceTests(Provider.Postgres);
