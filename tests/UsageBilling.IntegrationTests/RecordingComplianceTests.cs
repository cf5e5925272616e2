using UsageBilling.Storage;
using System.Globalization;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.IntegrationTests.Infrastructure;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// The recording and summary facts, stated once and run on both databases
/// (<see cref="SqliteRecordingTests"/>, <see cref="PostgresRecordingTests"/>).
/// </summary>
public abstract class RecordingComplianceTests(Provider provider) : IAsyncLifetime
{
    protected static readonly DateTimeOffset Now = new(2026, 11, 15, 12, 0, 0, TimeSpan.Zero);

    private TestDatabase _database = null!;

    protected BillingHost Host { get; private set; } = null!;

    protected IUsageRecorder Recorder => Host.Get<IUsageRecorder>();

    protected IUsageSummaryService Summaries => Host.Get<IUsageSummaryService>();

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(provider);
        Host = await BillingHost.StartAsync(_database, Now);
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        await _database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    protected async Task<Guid> NewUserAsync(string? planId = null, string? customer = null)
    {
        await using var db = Host.CreateContext();
        var user = new BillingUser { Id = Guid.NewGuid(), Email = "u@example.com", CreatedAt = Now };
        db.Users.Add(user);
        if (planId is not null || customer is not null)
        {
            db.BillingCustomers.Add(new BillingCustomer { UserId = user.Id, StripeCustomerId = customer ?? $"cus_{Guid.NewGuid():N}", PlanId = planId, CreatedAt = Now, UpdatedAt = Now });
        }

        await db.SaveChangesAsync(Ct);
        return user.Id;
    }

    protected async Task<List<UsageEvent>> EventsOfAsync(Guid userId)
    {
        await using var db = Host.CreateContext();
        return await db.UsageEvents.AsNoTracking().Where(e => e.UserId == userId).ToListAsync(Ct);
    }

    [Fact]
    public async Task RecordAsync_ValidEvent_StoresRowWithAllColumns()
    {
        var user = await NewUserAsync();
        var at = Now.AddMinutes(-3).AddTicks(1234567);

        var id = await Recorder.RecordAsync(user, "ai_messages", 3, "req-1", at, Ct);

        var row = Assert.Single(await EventsOfAsync(user));
        Assert.Equal(id, row.Id);
        Assert.Equal(7, id.Version);
        Assert.Equal("ai_messages", row.Meter);
        Assert.Equal(3, row.Quantity);
        Assert.Equal(UsageRules.Normalize(at), row.OccurredAt);
        Assert.Equal("req-1", row.IdempotencyKey);
        Assert.Null(row.ReportId);
        Assert.Equal(Now, row.CreatedAt);
    }

    [Fact]
    public async Task RecordAsync_WithoutOccurredAt_UsesNow()
    {
        var user = await NewUserAsync();
        await Recorder.RecordAsync(user, "ai_messages", cancellationToken: Ct);
        Assert.Equal(Now, Assert.Single(await EventsOfAsync(user)).OccurredAt);
    }

    [Fact]
    public async Task RecordAsync_UnknownMeter_ThrowsAndWritesNothing()
    {
        var user = await NewUserAsync();
        var ex = await Assert.ThrowsAsync<UnknownMeterException>(() => Recorder.RecordAsync(user, "gpu_seconds", cancellationToken: Ct));
        Assert.Contains("gpu_seconds", ex.Message, StringComparison.Ordinal);
        Assert.Contains("ai_messages", ex.Message, StringComparison.Ordinal);
        Assert.Empty(await EventsOfAsync(user));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-5L)]
    [InlineData(1_000_000_000_000_000L)]
    public async Task RecordAsync_QuantityOutOfRange_ThrowsAndWritesNothing(long quantity)
    {
        var user = await NewUserAsync();
        await Assert.ThrowsAsync<InvalidQuantityException>(() => Recorder.RecordAsync(user, "ai_messages", quantity, cancellationToken: Ct));
        Assert.Empty(await EventsOfAsync(user));
    }

    [Fact]
    public async Task RecordAsync_QuantityAtFifteenDigits_IsStored()
    {
        var user = await NewUserAsync();
        await Recorder.RecordAsync(user, "ai_messages", UsageRules.MaxQuantity, cancellationToken: Ct);
        Assert.Equal(UsageRules.MaxQuantity, Assert.Single(await EventsOfAsync(user)).Quantity);
    }

    [Fact]
    public async Task RecordAsync_UnknownUser_ThrowsAndWritesNothing()
    {
        var stranger = Guid.NewGuid();
        var ex = await Assert.ThrowsAsync<UnknownUserException>(() => Recorder.RecordAsync(stranger, "ai_messages", cancellationToken: Ct));
        Assert.Contains(stranger.ToString(), ex.Message, StringComparison.Ordinal);
        Assert.Empty(await EventsOfAsync(stranger));
    }

    [Theory]
    [InlineData(5 * 60 + 1)]
    [InlineData(-35 * 24 * 3600 - 1)]
    public async Task RecordAsync_OccurredAtOutsideStripeWindow_Throws(int offsetSeconds)
    {
        var user = await NewUserAsync();
        await Assert.ThrowsAsync<OccurredAtOutOfRangeException>(() => Recorder.RecordAsync(user, "ai_messages", occurredAt: Now.AddSeconds(offsetSeconds), cancellationToken: Ct));
        Assert.Empty(await EventsOfAsync(user));
    }

    [Theory]
    [InlineData(5 * 60)]
    [InlineData(-35 * 24 * 3600)]
    public async Task RecordAsync_OccurredAtOnWindowEdge_IsStored(int offsetSeconds)
    {
        var user = await NewUserAsync();
        await Recorder.RecordAsync(user, "ai_messages", occurredAt: Now.AddSeconds(offsetSeconds), cancellationToken: Ct);
        Assert.Single(await EventsOfAsync(user));
    }

    [Fact]
    public async Task RecordAsync_IdempotencyKeyTooLong_Throws_And255IsAccepted()
    {
        var user = await NewUserAsync();
        await Assert.ThrowsAsync<InvalidIdempotencyKeyException>(() => Recorder.RecordAsync(user, "ai_messages", idempotencyKey: new string('k', 256), cancellationToken: Ct));
        await Assert.ThrowsAsync<InvalidIdempotencyKeyException>(() => Recorder.RecordAsync(user, "ai_messages", idempotencyKey: "", cancellationToken: Ct));
        Assert.Empty(await EventsOfAsync(user));
        await Recorder.RecordAsync(user, "ai_messages", idempotencyKey: new string('k', 255), cancellationToken: Ct);
        Assert.Single(await EventsOfAsync(user));
    }

    [Fact]
    public async Task RecordAsync_SameKeySameContent_ReturnsOriginalIdAndWritesNothing()
    {
        var user = await NewUserAsync();
        var first = await Recorder.RecordAsync(user, "ai_messages", 2, "req-7", cancellationToken: Ct);
        Host.Time.Advance(TimeSpan.FromSeconds(30));

        var second = await Recorder.RecordAsync(user, "ai_messages", 2, "req-7", cancellationToken: Ct);

        Assert.Equal(first, second);
        Assert.Single(await EventsOfAsync(user));
    }

    [Fact]
    public async Task RecordAsync_SameKeyOtherUser_IsIndependent()
    {
        var a = await NewUserAsync();
        var b = await NewUserAsync();
        var idA = await Recorder.RecordAsync(a, "ai_messages", 1, "shared", cancellationToken: Ct);
        var idB = await Recorder.RecordAsync(b, "ai_messages", 1, "shared", cancellationToken: Ct);
        Assert.NotEqual(idA, idB);
    }

    [Fact]
    public async Task RecordAsync_SameKeyDifferentContent_ThrowsConflict()
    {
        var user = await NewUserAsync();
        await Recorder.RecordAsync(user, "ai_messages", 2, "req-8", cancellationToken: Ct);

        var ex = await Assert.ThrowsAsync<IdempotencyConflictException>(() => Recorder.RecordAsync(user, "ai_messages", 3, "req-8", cancellationToken: Ct));
        Assert.Contains("req-8", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<IdempotencyConflictException>(() => Recorder.RecordAsync(user, "api_calls", 2, "req-8", cancellationToken: Ct));
        await Assert.ThrowsAsync<IdempotencyConflictException>(() => Recorder.RecordAsync(user, "ai_messages", 2, "req-8", Now.AddMinutes(-1), Ct));
        Assert.Equal(2, Assert.Single(await EventsOfAsync(user)).Quantity);
    }

    [Fact]
    public async Task RecordAsync_64ConcurrentCallersSameKey_WriteOneRowAndAllGetItsId()
    {
        var user = await NewUserAsync();
        var ids = await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Task.Run(() => Recorder.RecordAsync(user, "ai_messages", 5, "same-key", cancellationToken: Ct), Ct)));

        var row = Assert.Single(await EventsOfAsync(user));
        Assert.All(ids, id => Assert.Equal(row.Id, id));
        Assert.Equal(5, row.Quantity);
    }

    [Fact]
    public async Task RecordAsync_64ConcurrentCallers_ShareTransactionsAndTotalsAreExact()
    {
        var users = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            users.Add(await NewUserAsync());
        }

        var batches = new ConcurrentBag<int>();
        using var listener = new MeterListener();
        var meter = Host.Get<UsageBillingMetrics>().Meter;
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == meter && instrument.Name == "usagebilling.record.batch_size")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<int>((_, value, _, _) => batches.Add(value));
        listener.Start();

        const int callers = 64;
        const int perCaller = 25;
        var ids = await Task.WhenAll(Enumerable.Range(0, callers).Select(c => Task.Run(
            async () =>
            {
                var mine = new List<Guid>();
                for (var i = 0; i < perCaller; i++)
                {
                    mine.Add(await Recorder.RecordAsync(users[c % users.Count], c % 2 == 0 ? "ai_messages" : "api_calls", (c % 7) + 1, $"c{c}-{i}", cancellationToken: Ct));
                }

                return mine;
            },
            Ct)));

        Assert.Equal(callers * perCaller, ids.SelectMany(x => x).Distinct().Count());
        await using var db = Host.CreateContext();
        var rows = await db.UsageEvents.AsNoTracking().ToListAsync(Ct);
        Assert.Equal(callers * perCaller, rows.Count);
        var expected = Enumerable.Range(0, callers).Sum(c => ((c % 7) + 1) * perCaller);
        Assert.Equal(expected, rows.Sum(r => r.Quantity));
        foreach (var user in users)
        {
            var expectedUser = Enumerable.Range(0, callers).Where(c => users[c % users.Count] == user).Sum(c => ((c % 7) + 1) * perCaller);
            Assert.Equal(expectedUser, rows.Where(r => r.UserId == user).Sum(r => r.Quantity));
        }

        // Group commit: far fewer transactions than events, some holding many callers.
        Assert.Equal(callers * perCaller, batches.Sum());
        Assert.True(batches.Count < callers * perCaller / 2, $"expected shared transactions, saw {batches.Count} batches for {callers * perCaller} events");
        Assert.True(batches.Max() > 1);
    }

    [Fact]
    public async Task RecordAsync_OneUnknownUserAmongConcurrentCallers_FailsOnlyThatCaller()
    {
        var good = await NewUserAsync();
        var stranger = Guid.NewGuid();
        var tasks = Enumerable.Range(0, 40)
            .Select(i => Task.Run(() => Recorder.RecordAsync(i == 20 ? stranger : good, "ai_messages", 1, $"k{i}", cancellationToken: Ct), Ct))
            .ToList();

        await Assert.ThrowsAsync<UnknownUserException>(() => tasks[20]);
        for (var i = 0; i < tasks.Count; i++)
        {
            if (i != 20)
            {
                await tasks[i];
            }
        }

        Assert.Equal(39, (await EventsOfAsync(good)).Count);
    }

    [Fact]
    public async Task DeleteUser_CascadesToEventsAndCustomer()
    {
        var user = await NewUserAsync("starter");
        await Recorder.RecordAsync(user, "ai_messages", 4, cancellationToken: Ct);
        await using (var db = Host.CreateContext())
        {
            db.SubscriptionItems.Add(new BillingSubscriptionItem { Id = "si_1", SubscriptionId = "sub_1", UserId = user, PriceId = "price_1", Meter = "ai_messages", Status = "active", CurrentPeriodStart = Now.AddDays(-1), CurrentPeriodEnd = Now.AddDays(29), UpdatedAt = Now });
            await db.SaveChangesAsync(Ct);
            await db.Users.Where(u => u.Id == user).ExecuteDeleteAsync(Ct);
        }

        await using var check = Host.CreateContext();
        Assert.Equal(0, await check.UsageEvents.CountAsync(e => e.UserId == user, Ct));
        Assert.Equal(0, await check.BillingCustomers.CountAsync(c => c.UserId == user, Ct));
        Assert.Equal(0, await check.SubscriptionItems.CountAsync(c => c.UserId == user, Ct));
    }

    [Fact]
    public async Task GetCurrentPeriod_SubscriptionPeriodEdges_LastTickCountsAndEndDoesNot()
    {
        var user = await NewUserAsync("starter");
        var start = new DateTimeOffset(2026, 11, 3, 7, 30, 0, TimeSpan.Zero);
        var end = start.AddMonths(1);
        await using (var db = Host.CreateContext())
        {
            db.SubscriptionItems.Add(new BillingSubscriptionItem { Id = "si_edge", SubscriptionId = "sub_edge", UserId = user, PriceId = "price_m", Meter = "ai_messages", Status = "active", CurrentPeriodStart = start, CurrentPeriodEnd = end, UpdatedAt = Now });
            await db.SaveChangesAsync(Ct);
        }

        Host.Time.SetUtcNow(end.AddMinutes(-1));
        await Recorder.RecordAsync(user, "ai_messages", 1, occurredAt: start.AddTicks(-1), cancellationToken: Ct);   // previous period
        await Recorder.RecordAsync(user, "ai_messages", 10, occurredAt: start, cancellationToken: Ct);            // first tick: counts
        await Recorder.RecordAsync(user, "ai_messages", 100, occurredAt: end.AddTicks(-1), cancellationToken: Ct); // last tick: counts
        await Recorder.RecordAsync(user, "ai_messages", 1000, occurredAt: end, cancellationToken: Ct);            // next period

        var summary = await Summaries.GetCurrentPeriodAsync(user, Ct);
        var meter = summary.Meters.Single(m => m.Meter == "ai_messages");
        Assert.Equal(110, meter.Used);
        Assert.Equal(start, meter.PeriodStart);
        Assert.Equal(end, meter.PeriodEnd);
        Assert.Equal(110, meter.PendingQuantity);
        Assert.Null(meter.ReportedAsOf);
    }

    [Fact]
    public async Task GetCurrentPeriod_WithoutSubscription_UsesUtcCalendarMonth()
    {
        var user = await NewUserAsync("starter");
        var monthStart = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
        await Recorder.RecordAsync(user, "ai_messages", 7, occurredAt: monthStart.AddTicks(-1), cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 5, occurredAt: monthStart, cancellationToken: Ct);

        var meter = (await Summaries.GetCurrentPeriodAsync(user, Ct)).Meters.Single(m => m.Meter == "ai_messages");
        Assert.Equal(monthStart, meter.PeriodStart);
        Assert.Equal(monthStart.AddMonths(1), meter.PeriodEnd);
        Assert.Equal(5, meter.Used);
    }

    [Fact]
    public async Task GetCurrentPeriod_GraduatedTiers_ProjectsCostAllowanceAndPercent()
    {
        var user = await NewUserAsync("starter");
        await Recorder.RecordAsync(user, "ai_messages", 150, cancellationToken: Ct);
        for (var i = 0; i < 6; i++)
        {
            await Recorder.RecordAsync(user, "api_calls", 1000, cancellationToken: Ct);   // count meter: 6 events
        }

        var summary = await Summaries.GetCurrentPeriodAsync(user, Ct);
        var ai = summary.Meters.Single(m => m.Meter == "ai_messages");
        Assert.Equal(150, ai.Used);
        Assert.Equal(100, ai.Included);
        Assert.Equal(0, ai.Remaining);
        Assert.Equal(150.0, ai.PercentOfIncluded, 3);
        Assert.Equal(50 * 0.02m, ai.ProjectedCost);
        Assert.Equal(100_000_000, ai.HardLimit);

        var api = summary.Meters.Single(m => m.Meter == "api_calls");
        Assert.Equal(6, api.Used);
        Assert.Equal(994, api.Remaining);
        Assert.Equal(0m, api.ProjectedCost);
        Assert.Equal(19m + 1.00m, summary.ProjectedTotal);
        Assert.Equal("Starter", summary.PlanName);
    }

    [Fact]
    public async Task GetCurrentPeriod_VolumeTiers_PriceAllUnitsAtReachedTier()
    {
        var user = await NewUserAsync("volume");
        await Recorder.RecordAsync(user, "ai_messages", 150, cancellationToken: Ct);
        var ai = (await Summaries.GetCurrentPeriodAsync(user, Ct)).Meters.Single(m => m.Meter == "ai_messages");
        Assert.Equal(150 * 0.05m, ai.ProjectedCost);

        await Recorder.RecordAsync(user, "ai_messages", 1000, cancellationToken: Ct);
        ai = (await Summaries.GetCurrentPeriodAsync(user, Ct)).Meters.Single(m => m.Meter == "ai_messages");
        Assert.Equal((1150 * 0.01m) + 1m, ai.ProjectedCost);
    }

    [Fact]
    public async Task GetCurrentPeriod_ReportedEvents_ShowAsOfAndPendingRemainder()
    {
        var user = await NewUserAsync("starter");
        var reported = await Recorder.RecordAsync(user, "ai_messages", 30, cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 12, cancellationToken: Ct);
        var ackAt = Now.AddSeconds(1);
        await AcknowledgeAsync([reported], ackAt);

        var ai = (await Summaries.GetCurrentPeriodAsync(user, Ct)).Meters.Single(m => m.Meter == "ai_messages");
        Assert.Equal(42, ai.Used);
        Assert.Equal(12, ai.PendingQuantity);
        Assert.Equal(ackAt, ai.ReportedAsOf);
    }

    [Fact]
    public async Task GetDailyUsage_ReturnsEveryDayOfPeriodSoFar()
    {
        var user = await NewUserAsync("starter");
        await Recorder.RecordAsync(user, "ai_messages", 3, occurredAt: new DateTimeOffset(2026, 11, 2, 23, 59, 59, TimeSpan.Zero), cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 4, occurredAt: new DateTimeOffset(2026, 11, 3, 0, 0, 0, TimeSpan.Zero), cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 5, occurredAt: new DateTimeOffset(2026, 11, 3, 10, 0, 0, TimeSpan.Zero), cancellationToken: Ct);

        var days = await Summaries.GetDailyUsageAsync(user, "ai_messages", Ct);

        Assert.Equal(15, days.Count);
        Assert.Equal(new DateOnly(2026, 11, 1), days[0].Day);
        Assert.Equal(3, days[1].Total);
        Assert.Equal(9, days[2].Total);
        Assert.Equal(2, days[2].Count);
        Assert.Equal(12, days.Sum(d => d.Total));
    }

    /// <summary>Links the events to a fresh report and marks it sent, as the flusher does when Stripe answers 200.</summary>
    protected async Task AcknowledgeAsync(IReadOnlyList<Guid> eventIds, DateTimeOffset at)
    {
        var reportId = Guid.CreateVersion7();
        await using (var db = Host.CreateContext())
        {
            db.UsageReports.Add(new UsageReport
            {
                Id = reportId,
                StripeCustomerId = "cus_test",
                Meter = "ai_messages",
                Timestamp = at,
                PeriodStart = Now.AddDays(-14),
                PeriodEnd = Now.AddDays(16),
                NextAttemptAt = at,
                CreatedAt = at,
            });
            await db.SaveChangesAsync(Ct);
            await db.UsageEvents.Where(e => eventIds.Contains(e.Id)).ExecuteUpdateAsync(s => s.SetProperty(e => e.ReportId, reportId), Ct);
        }

        await Host.Get<IUsageFlushStore>().MarkSentAsync([reportId], at, Ct);
    }

    [Fact]
    public async Task Rollups_StayInStepWithEvents_ThroughDuplicatesFailuresAndAcknowledgements()
    {
        var alice = await NewUserAsync("starter");
        var bob = await NewUserAsync();
        var ids = new ConcurrentBag<Guid>();
        // Every fifth call repeats the call before it (same key and payload): recorded once, counted once.
        var calls = Enumerable.Range(0, 600).Select(async i =>
        {
            var n = i % 5 == 0 && i > 0 ? i - 1 : i;
            ids.Add(await Recorder.RecordAsync(
                n % 3 == 0 ? bob : alice,
                n % 2 == 0 ? "ai_messages" : "api_calls",
                n % 7 + 1,
                $"k-{n}",
                Now.AddMinutes(-(n * 37 % 4000)).AddTicks(n),
                Ct));
        }).ToList();
        calls.Add(Assert.ThrowsAsync<UnknownUserException>(() => Recorder.RecordAsync(Guid.NewGuid(), "ai_messages", 5, cancellationToken: Ct)));
        await Task.WhenAll(calls);

        // Stripe acknowledges a third of the events in three reports; one report is acknowledged twice.
        var events = (await EventsOfAsync(alice)).Concat(await EventsOfAsync(bob)).OrderBy(e => e.Id).ToList();
        Assert.Equal(481, events.Count);
        Assert.Equal(481, ids.Distinct().Count());
        var acknowledged = events.Where((_, i) => i % 3 == 0).Select(e => e.Id).ToList();
        await AcknowledgeAsync(acknowledged[..50], Now.AddMinutes(1));
        await AcknowledgeAsync(acknowledged[50..], Now.AddMinutes(2));
        await using (var db = Host.CreateContext())
        {
            var first = (await db.UsageEvents.AsNoTracking().SingleAsync(e => e.Id == acknowledged[0], Ct)).ReportId!.Value;
            await Host.Get<IUsageFlushStore>().MarkSentAsync([first], Now.AddMinutes(3), Ct);
        }

        await using var check = Host.CreateContext();
        await RollupAssert.MatchesEventsAsync(check, Ct);
        Assert.Contains(await check.UsageHourly.AsNoTracking().ToListAsync(Ct), h => h.ReportedCount > 0 && h.ReportedCount < h.EventCount);
        Assert.True(await check.UsageDaily.CountAsync(Ct) < await check.UsageHourly.CountAsync(Ct));
    }

    [Fact]
    public async Task GetCurrentPeriod_PeriodStartingMidHour_CountsOnlyThatHoursPartInThePeriod()
    {
        var user = await NewUserAsync("starter");
        var start = new DateTimeOffset(2026, 11, 10, 9, 30, 15, TimeSpan.Zero);
        await using (var db = Host.CreateContext())
        {
            db.SubscriptionItems.Add(new BillingSubscriptionItem
            {
                Id = "si_mid_hour",
                SubscriptionId = "sub_mid_hour",
                UserId = user,
                PriceId = "price_ai",
                Meter = "ai_messages",
                Status = "active",
                CurrentPeriodStart = start,
                CurrentPeriodEnd = start.AddMonths(1),
                UpdatedAt = Now,
            });
            await db.SaveChangesAsync(Ct);
        }

        await Recorder.RecordAsync(user, "ai_messages", 3, occurredAt: start.AddTicks(-10), cancellationToken: Ct); // previous period, same hour
        var inPartialHour = await Recorder.RecordAsync(user, "ai_messages", 4, occurredAt: start, cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 5, occurredAt: start.AddMinutes(45), cancellationToken: Ct); // next whole hour
        await Recorder.RecordAsync(user, "ai_messages", 6, occurredAt: Now.AddMinutes(-1), cancellationToken: Ct);
        await Recorder.RecordAsync(user, "ai_messages", 7, occurredAt: new DateTimeOffset(2026, 11, 10, 8, 59, 0, TimeSpan.Zero), cancellationToken: Ct);
        await AcknowledgeAsync([inPartialHour], Now.AddSeconds(5));

        var ai = (await Summaries.GetCurrentPeriodAsync(user, Ct)).Meters.Single(m => m.Meter == "ai_messages");

        Assert.Equal(start, ai.PeriodStart);
        Assert.Equal(15, ai.Used);
        Assert.Equal(11, ai.PendingQuantity);
        Assert.Equal(Now.AddSeconds(5), ai.ReportedAsOf);
        Assert.Equal([9, 0, 0, 0, 0, 6], ai.Daily.Select(d => d.Total));
        Assert.Equal(new DateOnly(2026, 11, 10), ai.Daily[0].Day);
    }

    [Fact]
    public async Task GetCurrentPeriod_SummaryQueries_AreServedByTheRollupKeyAndTheUserTimeIndex()
    {
        // A month of history for one user, and the summary asking for a few days of it.
        var user = await NewUserAsync("starter");
        await Task.WhenAll(Enumerable.Range(0, 3000).Select(i => Recorder.RecordAsync(user, "ai_messages", 1, occurredAt: Now.AddMinutes(-i * 14), cancellationToken: Ct)));
        await using var db = Host.CreateContext();
        await db.Database.OpenConnectionAsync(Ct);
        foreach (var statement in PrepareExplainSql)
        {
            await using var analyze = db.Database.GetDbConnection().CreateCommand();
            analyze.CommandText = statement;
            await analyze.ExecuteNonQueryAsync(Ct);
        }

        foreach (var (sql, index) in new[]
        {
            (ExplainSummarySql(user, Now.AddDays(-3), Now), "ix_usage_events_user_time"),
            (ExplainRollupSql("usage_hourly", "hour", user, Now.AddDays(-3), Now), string.Format(CultureInfo.InvariantCulture, RollupIndex, "usage_hourly")),
            (ExplainRollupSql("usage_daily", "day", user, Now.AddDays(-3), Now), string.Format(CultureInfo.InvariantCulture, RollupIndex, "usage_daily")),
        })
        {
            await using var command = db.Database.GetDbConnection().CreateCommand();
            command.CommandText = sql;
            var lines = new List<string>();
            await using (var reader = await command.ExecuteReaderAsync(Ct))
            {
                while (await reader.ReadAsync(Ct))
                {
                    lines.Add(reader.GetString(reader.FieldCount - 1));
                }
            }

            var plan = string.Join('\n', lines);
            var names = await IndexAndPartitionsAsync(db.Database.GetDbConnection(), index);
            Assert.True(names.Any(n => plan.Contains(n, StringComparison.Ordinal)), $"none of {string.Join(", ", names)} in\n{plan}");
        }
    }

    /// <summary>The index and, where its table is partitioned, the index's partitions (any may serve the read).</summary>
    protected virtual Task<List<string>> IndexAndPartitionsAsync(System.Data.Common.DbConnection connection, string index) => Task.FromResult(new List<string> { index });

    /// <summary>What the plan must show for the rollup read.</summary>
    protected abstract string RollupIndex { get; }

    /// <summary>
    /// Brings statistics (and, on PostgreSQL, the visibility map) up to date. PostgreSQL also stops
    /// considering sequential scans: a test-sized rollup fits in one page, where a scan is cheapest;
    /// the point is that the index serves the query shape.
    /// </summary>
    protected abstract string[] PrepareExplainSql { get; }

    protected abstract string ExplainRollupSql(string table, string bucket, Guid user, DateTimeOffset from, DateTimeOffset to);

    protected abstract string ExplainSummarySql(Guid user, DateTimeOffset from, DateTimeOffset to);
}

public sealed class SqliteRecordingTests() : RecordingComplianceTests(Provider.Sqlite)
{
    protected override string RollupIndex => "USING INDEX sqlite_autoindex_{0}_1";

    protected override string[] PrepareExplainSql => ["ANALYZE"];

    protected override string ExplainRollupSql(string table, string bucket, Guid user, DateTimeOffset from, DateTimeOffset to) =>
        $"EXPLAIN QUERY PLAN SELECT meter, SUM(quantity) FROM {table} WHERE user_id = '{user.ToString().ToUpperInvariant()}' " +
        $"AND {bucket} >= {UsageBilling.EntityFrameworkCore.UsageBillingSqliteConventions.ToUnixMicroseconds(from)} AND {bucket} < {UsageBilling.EntityFrameworkCore.UsageBillingSqliteConventions.ToUnixMicroseconds(to)} GROUP BY meter";

    protected override string ExplainSummarySql(Guid user, DateTimeOffset from, DateTimeOffset to) =>
        $"EXPLAIN QUERY PLAN SELECT meter, SUM(quantity), COUNT(*) FROM usage_events WHERE user_id = '{user.ToString().ToUpperInvariant()}' " +
        $"AND occurred_at >= {UsageBilling.EntityFrameworkCore.UsageBillingSqliteConventions.ToUnixMicroseconds(from)} AND occurred_at < {UsageBilling.EntityFrameworkCore.UsageBillingSqliteConventions.ToUnixMicroseconds(to)} GROUP BY meter";
}

public sealed class PostgresRecordingTests() : RecordingComplianceTests(Provider.Postgres)
{
    protected override string RollupIndex => "pk_{0}";

    protected override async Task<List<string>> IndexAndPartitionsAsync(System.Data.Common.DbConnection connection, string index)
    {
        // usage_events is partitioned by month: a plan names the partitions' copies of its indexes.
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('{index}')";
        var names = new List<string> { index };
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            names.Add(reader.GetString(0));
        }

        return names;
    }

    protected override string[] PrepareExplainSql => ["ANALYZE usage_events", "VACUUM ANALYZE usage_hourly", "VACUUM ANALYZE usage_daily", "SET enable_seqscan = off"];

    protected override string ExplainRollupSql(string table, string bucket, Guid user, DateTimeOffset from, DateTimeOffset to) =>
        $"EXPLAIN SELECT meter, SUM(quantity) FROM {table} WHERE user_id = '{user}' " +
        $"AND {bucket} >= '{from:O}' AND {bucket} < '{to:O}' GROUP BY meter";

    protected override string ExplainSummarySql(Guid user, DateTimeOffset from, DateTimeOffset to) =>
        $"EXPLAIN SELECT meter, SUM(quantity), COUNT(*) FROM usage_events WHERE user_id = '{user}' " +
        $"AND occurred_at >= '{from:O}' AND occurred_at < '{to:O}' GROUP BY meter";
}
