using System.Diagnostics;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// Pruning acknowledged history (<see cref="IUsageRetention"/>), on both databases: four months of usage recorded,
/// flushed to the emulator through Stripe.net and acknowledged, billing periods anchored mid-hour so both edges of
/// every period are partial hours; the summaries of every period, the current period's page and the report totals
/// <c>reconcile</c> compares must be the same after the prune, and nothing unacknowledged may go.
/// </summary>
public abstract class RetentionComplianceTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    // The subscription's anchor: every period starts and ends at hh:17:23, so each edge is a partial hour.
    private static readonly DateTimeOffset Anchor = new(2026, 11, 5, 9, 17, 23, TimeSpan.Zero);

    protected IUsageRetention Retention => Host.Get<IUsageRetention>();

    [Fact]
    public async Task Prune_FourMonthsAcknowledged_SameSummariesPastPeriodsAndReportTotals()
    {
        var (user, customer) = await NewCustomerAsync();
        await AddItemsAsync(user);
        var idle = await NewUserWithoutCustomerAsync();
        var (stuck, _) = await NewCustomerAsync();

        var random = new Random(16);
        for (var round = 0; round < 14; round++)
        {
            // The months' partitions, as the retention service makes them ahead (the migration's follow the server's clock, not this test's).
            await Retention.EnsurePartitionsAsync(Ct);
            var now = Time.GetUtcNow();
            var times = Enumerable.Range(0, 40).Select(_ => now.AddMinutes(-random.Next(1, 9 * 24 * 60))).ToList();
            for (var k = -1; k <= 5; k++)
            {
                // Both sides of each period edge in this round's days: in the edge's own hour, and hours away on the same day.
                var edge = Anchor.AddMonths(k);
                if (edge > now.AddDays(-9) && edge < now.AddMinutes(-1))
                {
                    times.AddRange([edge.AddMinutes(-5), edge.AddMinutes(5), edge.AddHours(-2), edge.AddHours(3), edge.AddMinutes(-17).AddSeconds(-23)]);
                }
            }

            for (var i = 0; i < times.Count; i++)
            {
                await Recorder.RecordAsync(user, i % 3 == 0 ? "api_calls" : "ai_messages", 1 + (i % 4), $"r{round}-{i}", times[i], Ct);
            }

            if (round == 0)
            {
                // Old usage that was never acknowledged: never claimed (no customer), and claimed but Stripe's answer unknown.
                await Recorder.RecordAsync(idle, "ai_messages", 7, "idle", now.AddHours(-5), Ct);
                await Recorder.RecordAsync(stuck, "ai_messages", 8, "stuck", now.AddHours(-5), Ct);
            }

            await FlushUntilDoneAsync();
            if (round == 0)
            {
                await MakeUnacknowledgedAsync(stuck);
            }
            Time.Advance(TimeSpan.FromDays(9));
        }

        var before = await SnapshotAsync(user, customer);
        var hourlyBefore = await CountAsync(db => db.UsageHourly.Where(h => h.UserId == user));
        var eventsBefore = await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user));
        var ended = (await PartitionMonthsAsync()).Where(m => m.AddMonths(1) <= Time.GetUtcNow().AddDays(-40)).ToList();

        var result = await Retention.PruneAsync(TimeSpan.FromDays(40), Ct);

        Assert.Equal(Time.GetUtcNow().AddDays(-40), result.Cutoff);
        Assert.True(result.EventsDeleted > eventsBefore / 3, $"deleted {result.EventsDeleted} of {eventsBefore}");
        Assert.True(result.HourlyRowsFolded > hourlyBefore / 3, $"folded {result.HourlyRowsFolded} of {hourlyBefore}");
        Assert.Equal(eventsBefore - result.EventsDeleted, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));
        Assert.Equal(before, await SnapshotAsync(user, customer));
        if (Provider == Provider.Postgres)
        {
            // usage_events is partitioned by month: the months that ended by the cutoff went whole, their edge-hour events moved aside.
            Assert.True(ended.Count >= 2, $"{ended.Count} months ended by the cutoff");
            Assert.Equal(ended.Count, result.PartitionsDropped);
            Assert.Empty((await PartitionMonthsAsync()).Intersect(ended));
            Assert.Equal(0L, await LeftoverTablesAsync());
        }

        // The idempotency keys went with their events, no more, no less.
        await using (var db = Host.CreateContext())
        {
            var keyed = await db.UsageEvents.AsNoTracking().Where(e => e.IdempotencyKey != null).Select(e => new { e.Id, e.UserId, e.IdempotencyKey }).ToListAsync(Ct);
            var keys = await db.Set<UsageEventKey>().AsNoTracking().ToListAsync(Ct);
            Assert.Equal(keyed.Select(e => (e.UserId, e.IdempotencyKey!, e.Id)).Order(), keys.Select(k => (k.UserId, k.IdempotencyKey, k.EventId)).Order());
        }

        // What stays of the periods that ended by the cutoff: the events of their partial edge hours; and everything unacknowledged.
        var lastEnded = Enumerable.Range(-1, 7).Select(k => Anchor.AddMonths(k)).Where(edge => edge <= result.Cutoff).Max();
        await using (var db = Host.CreateContext())
        {
            var old = await db.UsageEvents.AsNoTracking().Where(e => e.UserId == user && e.OccurredAt < lastEnded).Select(e => e.OccurredAt).ToListAsync(Ct);
            Assert.NotEmpty(old);
            Assert.All(old, at => Assert.Contains(Enumerable.Range(-1, 7).Select(k => Anchor.AddMonths(k)), edge => at >= edge.AddMinutes(-17).AddSeconds(-23) && at < edge.AddMinutes(43).AddSeconds(-23)));
            Assert.Equal(1, await db.UsageEvents.CountAsync(e => e.UserId == idle, Ct));
            Assert.Equal(1, await db.UsageEvents.CountAsync(e => e.UserId == stuck && e.ReportId != null && db.UsageReports.Any(r => r.Id == e.ReportId && r.Status == UsageReportStatus.NeedsReview), Ct));
        }

        var again = await Retention.PruneAsync(TimeSpan.FromDays(40), Ct);
        Assert.Equal((0L, 0L), (again.EventsDeleted, again.HourlyRowsFolded));
        Assert.Equal(before, await SnapshotAsync(user, customer));

        // Nothing the recorder, the flusher or a correction still needs went: a late event and a flush still work.
        await Recorder.RecordAsync(user, "ai_messages", 3, "late", Time.GetUtcNow().AddDays(-30), Ct);
        await FlushUntilDoneAsync();
    }

    [Fact]
    public async Task FoldHours_ClosedSparseDays_SameAnswersFromTheEvents_ThroughLateWritesVoidsAndPrune()
    {
        var (user, customer) = await NewCustomerAsync();
        await AddItemsAsync(user);
        var random = new Random(18);
        for (var round = 0; round < 14; round++)
        {
            var now = Time.GetUtcNow();
            var times = Enumerable.Range(0, 30).Select(_ => now.AddMinutes(-random.Next(1, 9 * 24 * 60))).ToList();
            for (var k = -1; k <= 5; k++)
            {
                var edge = Anchor.AddMonths(k);
                if (edge > now.AddDays(-9) && edge < now.AddMinutes(-1))
                {
                    times.AddRange([edge.AddMinutes(-5), edge.AddMinutes(5), edge.AddHours(-2), edge.AddHours(3), edge.AddHours(-9)]);
                }
            }

            for (var i = 0; i < times.Count; i++)
            {
                await Recorder.RecordAsync(user, i % 3 == 0 ? "api_calls" : "ai_messages", 1 + (i % 4), $"r{round}-{i}", times[i], Ct);
            }

            await FlushUntilDoneAsync();
            Time.Advance(TimeSpan.FromDays(9));
        }

        await Recorder.RecordAsync(user, "ai_messages", 2, "today", Time.GetUtcNow().AddMinutes(-30), Ct);

        // Ragged ranges anywhere in the last 60 days (every event still stored): the answer must be the events' own.
        var ranges = Enumerable.Range(0, 25).Select(_ =>
        {
            var from = Time.GetUtcNow().AddMinutes(-random.Next(2 * 24 * 60, 60 * 24 * 60));
            return (from, from.AddMinutes(random.Next(30, 20 * 24 * 60)));
        }).ToList();
        var before = await SnapshotAsync(user, customer);
        await AssertRangesMatchEventsAsync(user, ranges);
        var closed = Time.GetUtcNow().UtcDateTime.Date.AddDays(-1);
        var hourlyClosed = await CountAsync(db => db.UsageHourly.Where(h => h.UserId == user && h.Hour < closed));

        var folded = await Retention.FoldHoursAsync(Ct);

        Assert.True(folded.DaysFolded > 100, $"folded {folded.DaysFolded} days");
        Assert.Equal(hourlyClosed, folded.HourlyRowsDeleted);
        Assert.Equal(0, await CountAsync(db => db.UsageHourly.Where(h => h.UserId == user && h.Hour < closed)));
        Assert.Equal(0, await CountAsync(db => db.UsageDaily.Where(d => d.UserId == user && d.Day < closed && !d.HoursFolded)));
        Assert.True(await CountAsync(db => db.UsageHourly.Where(h => h.UserId == user)) > 0, "the open days keep their hours");
        Assert.Equal(before, await SnapshotAsync(user, customer));
        await AssertRangesMatchEventsAsync(user, ranges);
        Assert.Equal(new UsageFoldResult(0, 0), await Retention.FoldHoursAsync(Ct));

        // Writes into folded days afterwards (a late event, a void, a flush acknowledging them) leave hourly rows there
        // that are never read: the answers still follow the events.
        var day = new DateTimeOffset(closed.AddDays(-12), TimeSpan.Zero);
        await Recorder.RecordAsync(user, "ai_messages", 6, "late-into-folded", day.AddHours(14).AddMinutes(30), Ct);
        Guid voided;
        await using (var db = Host.CreateContext())
        {
            voided = await db.UsageEvents.AsNoTracking().Where(e => e.UserId == user && e.OccurredAt >= day && e.OccurredAt < day.AddDays(1) && e.IdempotencyKey != "late-into-folded")
                .OrderBy(e => e.OccurredAt).Select(e => e.Id).FirstAsync(Ct);
        }

        await Host.Get<IUsageCorrections>().VoidAsync(voided, "ops", "fold test", Ct);
        await FlushUntilDoneAsync();
        ranges.Add((day.AddHours(9).AddMinutes(17), day.AddDays(2).AddHours(4)));
        ranges.Add((day.AddDays(-2).AddMinutes(41), day.AddHours(22)));
        await AssertRangesMatchEventsAsync(user, ranges);

        // The prune keeps the events of folded days that hold a period edge (their hours are read from them): same answers.
        var beforePrune = await SnapshotAsync(user, customer);
        var pruned = await Retention.PruneAsync(TimeSpan.FromDays(40), Ct);
        Assert.True(pruned.EventsDeleted > 100, $"deleted {pruned.EventsDeleted}");
        Assert.Equal(beforePrune, await SnapshotAsync(user, customer));
        Assert.Equal(new UsageFoldResult(0, 0), await Retention.FoldHoursAsync(Ct));
        Assert.Equal(beforePrune, await SnapshotAsync(user, customer));
    }

    [Fact]
    public async Task FoldHours_TwoInstancesAtOnceWhileRecordingAndVoidingInClosedDays_AnswersFollowTheEvents()
    {
        var (user, _) = await NewCustomerAsync();
        await AddItemsAsync(user);
        var now = Time.GetUtcNow();
        var random = new Random(19);
        for (var i = 0; i < 300; i++)
        {
            await Recorder.RecordAsync(user, i % 3 == 0 ? "api_calls" : "ai_messages", 1 + (i % 4), $"old-{i}", now.AddMinutes(-random.Next(2 * 24 * 60, 30 * 24 * 60)), Ct);
        }

        await FlushUntilDoneAsync();
        List<Guid> victims;
        await using (var db = Host.CreateContext())
        {
            victims = await db.UsageEvents.AsNoTracking().Where(e => e.UserId == user && e.Meter == "ai_messages").OrderBy(e => e.Id).Take(10).Select(e => e.Id).ToListAsync(Ct);
        }

        // Two app instances fold at once while the other instance records late events into the closed days and voids some.
        var other = await AddFlusherHostAsync();
        var writing = Task.Run(async () =>
        {
            for (var i = 0; i < 60; i++)
            {
                await other.Get<IUsageRecorder>().RecordAsync(user, "ai_messages", 2, $"late-{i}", now.AddMinutes(-random.Next(2 * 24 * 60, 30 * 24 * 60)), Ct);
                if (i % 6 == 0)
                {
                    await other.Get<IUsageCorrections>().VoidAsync(victims[i / 6], "ops", "concurrent fold test", Ct);
                }
            }
        }, Ct);
        var folds = await Task.WhenAll(
            Task.Run(() => Retention.FoldHoursAsync(Ct), Ct),
            Task.Run(() => other.Get<IUsageRetention>().FoldHoursAsync(Ct), Ct));
        await writing;
        await FlushUntilDoneAsync();
        var again = await Retention.FoldHoursAsync(Ct);

        Assert.True(folds.Sum(f => f.DaysFolded) + again.DaysFolded >= 40, $"folded {folds.Sum(f => f.DaysFolded)} + {again.DaysFolded}");
        Assert.Equal(0, await CountAsync(db => db.UsageDaily.Where(d => d.UserId == user && d.Day < now.UtcDateTime.Date.AddDays(-1) && !d.HoursFolded)));
        var ranges = Enumerable.Range(0, 30).Select(_ =>
        {
            var from = now.AddMinutes(-random.Next(2 * 24 * 60, 31 * 24 * 60));
            return (from, from.AddMinutes(random.Next(30, 6 * 24 * 60)));
        }).ToList();
        await AssertRangesMatchEventsAsync(user, ranges);
    }

    // Each range's per-day answer against the one computed from the events themselves (pending: not in a sent report).
    private async Task AssertRangesMatchEventsAsync(Guid user, List<(DateTimeOffset From, DateTimeOffset To)> ranges)
    {
        var store = Host.Get<IUsageStore>();
        await using var db = Host.CreateContext();
        foreach (var (from, to) in ranges)
        {
            var events = await db.UsageEvents.AsNoTracking().Where(e => e.UserId == user && e.OccurredAt >= from && e.OccurredAt < to)
                .Select(e => new { e.Meter, e.OccurredAt, e.Quantity, Sent = db.UsageReports.Any(r => r.Id == e.ReportId && r.Status == UsageReportStatus.Sent) })
                .ToListAsync(Ct);
            var expected = events.GroupBy(e => (e.Meter, Day: DateOnly.FromDateTime(e.OccurredAt.UtcDateTime)))
                .Select(g => $"{g.Key.Meter} {g.Key.Day:O} {g.Sum(e => e.Quantity)} {g.Count()} {g.Where(e => !e.Sent).Sum(e => e.Quantity)} {g.Count(e => !e.Sent)}")
                .Order(StringComparer.Ordinal);
            var actual = (await store.GetUsageByDayAsync(user, from, to, Ct))
                .Select(d => $"{d.Meter} {d.Day:O} {d.Total} {d.Count} {d.PendingTotal} {d.PendingCount}")
                .Order(StringComparer.Ordinal);
            Assert.Equal(string.Join('\n', expected), string.Join('\n', actual));
        }
    }

    [Fact]
    public async Task Prune_TwoInstancesAtOnceWhileRecording_EachEventDeletedOnceSameAnswers()
    {
        var (user, customer) = await NewCustomerAsync();
        await AddItemsAsync(user);
        var random = new Random(17);
        for (var round = 0; round < 10; round++)
        {
            var now = Time.GetUtcNow();
            for (var i = 0; i < 30; i++)
            {
                await Recorder.RecordAsync(user, i % 3 == 0 ? "api_calls" : "ai_messages", 1 + (i % 4), $"r{round}-{i}", now.AddMinutes(-random.Next(1, 9 * 24 * 60)), Ct);
            }

            await FlushUntilDoneAsync();
            Time.Advance(TimeSpan.FromDays(9));
        }

        var before = await SnapshotAsync(user, customer, endedOnly: true);
        var eventsBefore = await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user));
        var other = await AddFlusherHostAsync();

        // Two app instances prune at once while the recorder goes on writing the current period.
        var recording = Task.Run(async () =>
        {
            for (var i = 0; i < 40; i++)
            {
                await other.Get<IUsageRecorder>().RecordAsync(user, "ai_messages", 1, $"now-{i}", Time.GetUtcNow().AddMinutes(-i), Ct);
            }
        }, Ct);
        var results = await Task.WhenAll(
            Task.Run(() => Retention.PruneAsync(TimeSpan.FromDays(40), Ct), Ct),
            Task.Run(() => other.Get<IUsageRetention>().PruneAsync(TimeSpan.FromDays(40), Ct), Ct));
        await recording;

        var deleted = results.Sum(r => r.EventsDeleted);
        Assert.True(deleted > 0);
        Assert.Equal(eventsBefore + 40 - deleted, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));
        Assert.Equal(before, await SnapshotAsync(user, customer, endedOnly: true));
        var again = await Retention.PruneAsync(TimeSpan.FromDays(40), Ct);
        Assert.Equal((0L, 0L), (again.EventsDeleted, again.HourlyRowsFolded));
    }

    [Fact]
    public async Task Prune_EverythingYoungerThanTheWindow_RemovesNothing()
    {
        var (user, _) = await NewCustomerAsync();
        await AddItemsAsync(user);
        await Recorder.RecordAsync(user, "ai_messages", 5, "a", Time.GetUtcNow().AddDays(-20), Ct);
        await FlushUntilDoneAsync();
        Time.Advance(TimeSpan.FromDays(30));

        var result = await Retention.PruneAsync(TimeSpan.FromDays(35), Ct);

        Assert.Equal((0L, 0L, 1), (result.EventsDeleted, result.HourlyRowsFolded, result.Accounts));
        Assert.Equal(1, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));
    }

    [Fact]
    public async Task BackgroundRetention_KeepSet_PrunesOnStart_OffByDefault()
    {
        var (user, _) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 5, "a", Time.GetUtcNow().AddDays(-20), Ct);
        await Recorder.RecordAsync(user, "ai_messages", 6, "b", Time.GetUtcNow().AddDays(-19), Ct);
        await FlushUntilDoneAsync();
        Time.Advance(TimeSpan.FromDays(60));

        // The default host (Retention:Keep unset) runs the service too: it must do nothing.
        await RunHostedServicesAsync(Host, TimeSpan.FromMilliseconds(300));
        Assert.Equal(2, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));

        await using var pruning = await BillingHost.StartAsync(Database, Time, o => o.Retention.Keep = TimeSpan.FromDays(40), null);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        await RunHostedServicesAsync(pruning, TimeSpan.Zero, async () =>
        {
            while (await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)) > 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50, Ct);
            }
        });
        Assert.Equal(0, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));
        var summary = await Host.Get<IUsageStore>().GetUsageByDayAsync(user, Now.AddDays(-30), Now, Ct);
        Assert.Equal(11, summary.Sum(d => d.Total));
    }

    /// <summary>
    /// The retention service creates the monthly partitions ahead even with <c>Keep</c> unset: months 35 days back to two
    /// ahead, with what the default partition held for them moved in (PostgreSQL); SQLite has nothing to create.
    /// </summary>
    [Fact]
    public async Task BackgroundRetention_MonthsWithoutPartition_CreatedAheadDefaultRowsMovedIn()
    {
        var (user, _) = await NewCustomerAsync();
        Time.Advance(TimeSpan.FromDays(150));
        var now = Time.GetUtcNow();
        for (var i = 0; i < 20; i++)
        {
            await Recorder.RecordAsync(user, "ai_messages", 1 + i, $"ahead-{i}", now.AddDays(-i * 1.7), Ct);
        }

        var before = await Host.Get<IUsageStore>().GetUsageByDayAsync(user, now.AddDays(-35), now.AddDays(1), Ct);
        await RunHostedServicesAsync(Host, TimeSpan.FromMilliseconds(500));

        Assert.Equal(20, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));
        Assert.Equal(before, await Host.Get<IUsageStore>().GetUsageByDayAsync(user, now.AddDays(-35), now.AddDays(1), Ct));
        Assert.Empty(await Retention.EnsurePartitionsAsync(Ct));
        if (Provider == Provider.Postgres)
        {
            await using var db = Host.CreateContext();
            await db.Database.OpenConnectionAsync(Ct);
            await using var command = db.Database.GetDbConnection().CreateCommand();
            command.CommandText = """
                SELECT (SELECT count(*) FROM usage_events WHERE tableoid::regclass::text <> to_char(date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC', '"usage_events_y"YYYY"m"MM')),
                       (SELECT count(*) FROM pg_class WHERE relname IN ('usage_events_y2027m03', 'usage_events_y2027m04', 'usage_events_y2027m05', 'usage_events_y2027m06')
                          AND oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'usage_events'::regclass))
                """;
            await using var reader = await command.ExecuteReaderAsync(Ct);
            await reader.ReadAsync(Ct);
            Assert.Equal((0L, 4L), (reader.GetInt64(0), reader.GetInt64(1)));
        }
    }

    private static async Task RunHostedServicesAsync(BillingHost host, TimeSpan wait, Func<Task>? until = null)
    {
        var services = host.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().OfType<Microsoft.Extensions.Hosting.BackgroundService>()
            .Where(s => s.GetType().Name == "UsageRetentionBackgroundService").ToList();
        Assert.Single(services);
        await services[0].StartAsync(Ct);
        await Task.Delay(wait, Ct);
        if (until is not null)
        {
            await until();
        }

        await services[0].StopAsync(Ct);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(34)]
    public async Task Prune_WindowShorterThanStripes_RefusedBeforeAnyDelete(int days)
    {
        var ex = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Retention.PruneAsync(TimeSpan.FromDays(days), Ct));
        Assert.Contains("at least 35 days", ex.Message, StringComparison.Ordinal);
    }

    protected async Task AddItemsAsync(Guid user)
    {
        await using var db = Host.CreateContext();
        foreach (var meter in new[] { "ai_messages", "api_calls" })
        {
            db.SubscriptionItems.Add(new BillingSubscriptionItem
            {
                Id = $"si_{meter}_{user:N}",
                SubscriptionId = $"sub_{user:N}",
                UserId = user,
                PriceId = $"price_{meter}",
                Meter = meter,
                Status = "active",
                CurrentPeriodStart = Anchor,
                CurrentPeriodEnd = Anchor.AddMonths(1),
                UpdatedAt = Now,
            });
        }

        await db.SaveChangesAsync(Ct);
    }

    // The state a report is in when its send's answer was lost (needs review): claimed, not acknowledged.
    private async Task MakeUnacknowledgedAsync(Guid user)
    {
        await using var db = Host.CreateContext();
        var report = await db.UsageEvents.Where(e => e.UserId == user).Select(e => e.ReportId!.Value).SingleAsync(Ct);
        await db.UsageReports.Where(r => r.Id == report).ExecuteUpdateAsync(u => u.SetProperty(r => r.Status, UsageReportStatus.NeedsReview).SetProperty(r => r.SentAt, (DateTimeOffset?)null), Ct);
    }

    private async Task<Guid> NewUserWithoutCustomerAsync()
    {
        await using var db = Host.CreateContext();
        var user = new BillingUser { Id = Guid.NewGuid(), CreatedAt = Now };
        db.Users.Add(user);
        await db.SaveChangesAsync(Ct);
        return user.Id;
    }

    protected async Task<long> CountAsync<T>(Func<EntityFrameworkCore.UsageBillingDbContext, IQueryable<T>> query)
    {
        await using var db = Host.CreateContext();
        return await query(db).LongCountAsync(Ct);
    }

    /// <summary>
    /// Everything a reader shows: each period's per-day usage (the page's past periods and chart read exactly this),
    /// the current period's summary, and the sent reports' totals per period beside Stripe's (what reconcile compares).
    /// </summary>
    protected async Task<string> SnapshotAsync(Guid user, string customer, bool endedOnly = false)
    {
        var store = Host.Get<IUsageStore>();
        var lines = new List<string>();
        for (var k = -1; k <= 5; k++)
        {
            var (start, end) = (Anchor.AddMonths(k), Anchor.AddMonths(k + 1));
            if (endedOnly && end > Time.GetUtcNow())
            {
                continue;
            }

            var days = await store.GetUsageByDayAsync(user, start, end, Ct);
            lines.AddRange(days.OrderBy(d => d.Meter, StringComparer.Ordinal).ThenBy(d => d.Day).Select(d => $"{start:O} {d}"));
            foreach (var meter in new[] { "ai_messages", "api_calls" })
            {
                lines.Add($"{start:O} {meter} stripe={await Emulator.Admin.GetMeterTotalAsync(customer, meter, start, end, Ct)}");
            }
        }

        await using var db = Host.CreateContext();
        var reports = await db.UsageReports.AsNoTracking().Where(r => r.StripeCustomerId == customer && r.Status == UsageReportStatus.Sent)
            .GroupBy(r => new { r.Meter, r.PeriodStart }).Select(g => new { g.Key.Meter, g.Key.PeriodStart, Total = g.Sum(r => r.Quantity), Reports = g.Count() }).ToListAsync(Ct);
        lines.AddRange(reports.OrderBy(r => r.Meter, StringComparer.Ordinal).ThenBy(r => r.PeriodStart).Select(r => $"reports {r.Meter} {r.PeriodStart:O} {r.Total} ({r.Reports})"));
        if (!endedOnly)
        {
            lines.Add(JsonSerializer.Serialize(await Host.Get<IUsageSummaryService>().GetCurrentPeriodAsync(user, Ct)));
        }

        Assert.True(lines.Count > 50, string.Join('\n', lines));
        return string.Join('\n', lines);
    }

    /// <summary>PostgreSQL: the months <c>usage_events</c> has a partition for.</summary>
    protected async Task<List<DateTimeOffset>> PartitionMonthsAsync()
    {
        if (Provider != Provider.Postgres)
        {
            return [];
        }

        await using var db = Host.CreateContext();
        var names = await db.Database.SqlQueryRaw<string>(
            "SELECT c.relname::text AS \"Value\" FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'usage_events'::regclass AND c.relname ~ '^usage_events_y[0-9]+m[0-9]+$'").ToListAsync(Ct);
        return [.. names.Select(n => new DateTimeOffset(int.Parse(n[14..18], System.Globalization.CultureInfo.InvariantCulture), int.Parse(n[19..21], System.Globalization.CultureInfo.InvariantCulture), 1, 0, 0, 0, TimeSpan.Zero))];
    }

    /// <summary>PostgreSQL: tables named as months of <c>usage_events</c> are that are no partition of it (a month detached and not dropped).</summary>
    protected async Task<long> LeftoverTablesAsync()
    {
        await using var db = Host.CreateContext();
        return await db.Database.SqlQueryRaw<long>(
            "SELECT count(*) AS \"Value\" FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND relname LIKE 'usage\\_events\\_y%'").SingleAsync(Ct);
    }
}

public sealed class SqliteRetentionTests() : RetentionComplianceTests(Provider.Sqlite);

public sealed class PostgresRetentionTests() : RetentionComplianceTests(Provider.Postgres)
{
    /// <summary>
    /// A month's partition dropped while the app is between checking its user (a key-share lock on the users row, as a
    /// foreign key check takes) and writing an event. Detaching the month locks <c>usage_events</c> exclusively and
    /// dropping the table locks the users table exclusively: taken in one transaction, the drop waits for the app while
    /// the app waits for <c>usage_events</c>, and PostgreSQL ends one of them as a deadlock. The app's write must go
    /// through, and the month must still be dropped once the app commits.
    /// </summary>
    [Fact]
    public async Task Prune_PartitionDropWhileAppHoldsItsUserAndThenWrites_NeitherFailsMonthDropped()
    {
        var (user, customer) = await NewCustomerAsync();
        await AddItemsAsync(user);
        for (var round = 0; round < 10; round++)
        {
            await Retention.EnsurePartitionsAsync(Ct);
            var now = Time.GetUtcNow();
            for (var i = 0; i < 10; i++)
            {
                await Recorder.RecordAsync(user, "ai_messages", 1, $"r{round}-{i}", now.AddHours(-i * 20), Ct);
            }

            await FlushUntilDoneAsync();
            Time.Advance(TimeSpan.FromDays(9));
        }

        var before = await SnapshotAsync(user, customer, endedOnly: true);
        var ended = (await PartitionMonthsAsync()).Where(m => m.AddMonths(1) <= Time.GetUtcNow().AddDays(-40)).ToList();
        await using var app = Host.CreateContext();
        await using var transaction = await app.Database.BeginTransactionAsync(Ct);
        var users = await ScalarAsync<string>(app, "SELECT confrelid::regclass::text FROM pg_constraint WHERE conname = 'fk_usage_events_user'");
        await app.Database.ExecuteSqlRawAsync(string.Concat("SELECT 1 FROM ", users, " WHERE id = {0} FOR KEY SHARE"), [user], Ct);
        var appPid = await ScalarAsync<int>(app, "SELECT pg_backend_pid()");

        var prune = Task.Run(() => Retention.PruneAsync(TimeSpan.FromDays(40), Ct), Ct);
        await using (var watch = Host.CreateContext())
        {
            // Until the prune's drop waits for the app's lock (the drop first locks the users table exclusively).
            var waited = Stopwatch.StartNew();
            while (await ScalarAsync<long>(watch, $"SELECT count(*) FROM pg_stat_activity WHERE {appPid} = ANY(pg_blocking_pids(pid)) AND query LIKE 'LOCK TABLE % IN ACCESS EXCLUSIVE MODE%'") == 0)
            {
                Assert.False(prune.IsCompleted, "the prune ended without waiting for the app's lock on its user");
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), "the prune never waited for the app's lock on its user");
                await Task.Delay(20, Ct);
            }
        }

        var id = Guid.CreateVersion7();
        var at = Time.GetUtcNow();
        await app.Database.ExecuteSqlRawAsync(
            "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, created_at) VALUES ({0}, {1}, 'ai_messages', 1, {2}, {2})", [id, user, at], Ct);
        await transaction.CommitAsync(Ct);
        var result = await prune;

        Assert.True(ended.Count >= 1, $"{ended.Count} months ended by the cutoff");
        Assert.Equal(ended.Count, result.PartitionsDropped);
        Assert.Equal(1, await CountAsync(db => db.UsageEvents.Where(e => e.Id == id)));
        var again = await Retention.PruneAsync(TimeSpan.FromDays(40), Ct);
        Assert.Equal((0, 0L), (again.PartitionsDropped, again.EventsDeleted));
        Assert.Equal(0L, await LeftoverTablesAsync());
        Assert.Empty((await PartitionMonthsAsync()).Intersect(ended));
        Assert.Equal(before, await SnapshotAsync(user, customer, endedOnly: true));
    }

    private static async Task<T> ScalarAsync<T>(DbContext db, string sql)
    {
        await db.Database.OpenConnectionAsync(Ct);
        await using var command = db.Database.GetDbConnection().CreateCommand();
        command.CommandText = sql;
        command.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        return (T)(await command.ExecuteScalarAsync(Ct))!;
    }

    /// <summary>
    /// Creating the months' partitions while the recorder writes into them (PostgreSQL attaches each new month beside the
    /// default partition; SQLite has no partitions): no write may fail, and every event ends up stored once, in its own month's partition.
    /// </summary>
    [Fact]
    public async Task EnsurePartitions_WhileRecordingIntoTheMissingMonths_NoWriteFails()
    {
        var (user, _) = await NewCustomerAsync();
        Time.Advance(TimeSpan.FromDays(150));
        var now = Time.GetUtcNow();
        using var stop = new CancellationTokenSource();
        var recorded = 0;
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested || i < 20; i++)
            {
                await Recorder.RecordAsync(user, "ai_messages", 1, $"w{w}-{i}", now.AddDays(-(i % 30)).AddMinutes(-w), Ct);
                Interlocked.Increment(ref recorded);
            }
        }, Ct)).ToList();
        await Task.Delay(200, Ct);
        var created = await Retention.EnsurePartitionsAsync(Ct);
        await stop.CancelAsync();
        await Task.WhenAll(writers);

        Assert.True(created.Count >= 3, string.Join(", ", created));
        Assert.Equal(recorded, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));
        await using var db = Host.CreateContext();
        await db.Database.OpenConnectionAsync(Ct);
        await using var command = db.Database.GetDbConnection().CreateCommand();
        command.CommandText = "SELECT count(*) FROM usage_events WHERE tableoid::regclass::text <> to_char(date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC', '\"usage_events_y\"YYYY\"m\"MM')";
        Assert.Equal(0L, (long)(await command.ExecuteScalarAsync(Ct))!);
    }

    /// <summary>
    /// Creating a month's partition moves that month's events out of the default partition. A read of
    /// <c>usage_events</c> planned before the new partition is attached and run after (it waited for the default
    /// partition's lock) would scan the old partitions only and find the moved events gone: a count of a user's
    /// usage read 0 for a moment. Readers counting all along must always see every event.
    /// </summary>
    [Fact]
    public async Task EnsurePartitions_WhileReadersCountTheMovedEvents_NoReadMissesThem()
    {
        var (user, _) = await NewCustomerAsync();
        Time.Advance(TimeSpan.FromDays(150));
        var now = Time.GetUtcNow();
        const int Events = 3000;
        await Task.WhenAll(Enumerable.Range(0, Events).Select(i => Recorder.RecordAsync(user, "ai_messages", 1, $"m{i}", now.AddDays(-(i % 30)), Ct)));
        Assert.Equal(Events, await CountAsync(db => db.UsageEvents.Where(e => e.UserId == user)));

        using var stop = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            var seen = new List<long>();
            await using var db = Host.CreateContext();
            while (!stop.IsCancellationRequested || seen.Count < 20)
            {
                seen.Add(await db.UsageEvents.Where(e => e.UserId == user).LongCountAsync(Ct));
            }

            return seen;
        }, Ct)).ToList();
        await Task.Delay(100, Ct);
        var created = await Retention.EnsurePartitionsAsync(Ct);
        await stop.CancelAsync();
        var counts = (await Task.WhenAll(readers)).SelectMany(c => c).ToList();

        Assert.True(created.Count >= 3, string.Join(", ", created));
        Assert.Equal([Events], counts.Distinct().Order().ToList());
    }

    /// <summary>
    /// A claim (or a void) locks rows of <c>usage_events</c>, then writes them; creating a month's partition beside it
    /// waits for those rows while holding writers off, so the claim's write would wait for it in turn. The partition
    /// creation gives way and tries again: neither side fails, the partitions come, every event lands in its month's.
    /// </summary>
    [Fact]
    public async Task EnsurePartitions_BesideAClaimThatLockedRowsThenWrites_NeitherFails()
    {
        var (user, _) = await NewCustomerAsync();
        Time.Advance(TimeSpan.FromDays(150));
        var at = Time.GetUtcNow().AddHours(-1);
        for (var i = 0; i < 5; i++)
        {
            await Recorder.RecordAsync(user, "ai_messages", 1, $"default-{i}", at.AddMinutes(-i), Ct);
        }

        await using var db = Host.CreateContext();
        await using var transaction = await db.Database.BeginTransactionAsync(Ct);
        await db.Database.ExecuteSqlRawAsync("SELECT id FROM usage_events WHERE user_id = {0} FOR UPDATE", [user], Ct);
        var ensure = Task.Run(() => Retention.EnsurePartitionsAsync(Ct), Ct);
        await Task.Delay(300, Ct);
        await db.Database.ExecuteSqlRawAsync("UPDATE usage_events SET quantity = quantity WHERE user_id = {0}", [user], Ct);
        await transaction.CommitAsync(Ct);
        var created = await ensure;

        Assert.True(created.Count >= 3, string.Join(", ", created));
        Assert.Equal(5, await CountAsync(x => x.UsageEvents.Where(e => e.UserId == user)));
        await using var check = Host.CreateContext();
        await check.Database.OpenConnectionAsync(Ct);
        await using var command = check.Database.GetDbConnection().CreateCommand();
        command.CommandText = "SELECT count(*) FROM usage_events WHERE tableoid::regclass::text <> to_char(date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC', '\"usage_events_y\"YYYY\"m\"MM')";
        Assert.Equal(0L, (long)(await command.ExecuteScalarAsync(Ct))!);
    }
}
