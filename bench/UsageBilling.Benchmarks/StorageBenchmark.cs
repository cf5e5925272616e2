using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NpgsqlTypes;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Storage;
using UsageBilling.Storage;

namespace UsageBilling.Benchmarks;

/// <summary>
/// <c>storage</c>: bytes per event on PostgreSQL (<c>usage_events</c> with its indexes, <c>usage_hourly</c>,
/// <c>usage_daily</c>: <c>pg_total_relation_size</c>) for months of acknowledged usage, then
/// <see cref="IUsageRetention.PruneAsync"/> with a window: its time, what it removed, the bytes after (plain
/// VACUUM, and VACUUM FULL for what the rows now need), the usage read's p50/p99 before and after, and the
/// answers of every sampled account's periods before and after (they must be equal, or the run fails). Before the
/// prune, the fold of closed sparse days' hours (<see cref="IUsageRetention.FoldHoursAsync"/>): its bytes, its answers. Before
/// that, on the same data, the prune's two ways of removing events timed apart: batched deletes (the partial first
/// month) against dropping the monthly partitions (the first whole month); and the size of a candidate slimmer index.
/// </summary>
public static class StorageBenchmark
{
    private const int ChunkRows = 1_000_000;

    // Calendar-month periods (the accounts have no subscription items), one sent report per account·meter·month;
    // every event acknowledged (its report sent a minute after the report's last event), except the last ten minutes'.
    private const string GenerateSql = """
        INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, created_at)
        SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7' || lpad(to_hex(n % 4096), 3, '0') || '8' || lpad(to_hex(n), 15, '0'))::uuid,
               user_id, meter, quantity, at, NULL,
               CASE WHEN at > @pending_after THEN NULL ELSE md5(user_id::text || meter || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM'))::uuid END,
               at
        FROM (
            SELECT (@users)[1 + g % @user_count] AS user_id, CASE WHEN g % 4 = 0 THEN 'api_calls' ELSE 'ai_messages' END AS meter, 1 + g % 3 AS quantity,
                   @start + (@now - @start) * (g::float8 / @rows) AS at, g AS n
            FROM generate_series(@from, @to) g
        ) x
        ORDER BY at
        """;

    private const string ReportsSql = """
        INSERT INTO usage_reports (id, stripe_customer_id, meter, quantity, event_count, timestamp, period_start, period_end, status, attempts, next_attempt_at, first_attempt_at, created_at, sent_at)
        SELECT e.report_id, c.stripe_customer_id, e.meter, CASE WHEN e.meter = 'api_calls' THEN count(*) ELSE sum(e.quantity) END, count(*), max(e.occurred_at),
               date_trunc('month', min(e.occurred_at), 'UTC'), date_trunc('month', min(e.occurred_at), 'UTC') + interval '1 month', 'sent', 1,
               max(e.occurred_at) + interval '1 minute', max(e.occurred_at) + interval '1 minute', max(e.occurred_at) + interval '1 minute', max(e.occurred_at) + interval '1 minute'
        FROM usage_events e JOIN billing_customers c ON c.user_id = e.user_id
        WHERE e.report_id IS NOT NULL
        GROUP BY e.report_id, c.stripe_customer_id, e.meter
        """;

    public static async Task<int> RunAsync(IReadOnlyList<string> rawArgs)
    {
        var args = new BenchArgs(rawArgs);
        var totalRows = args.Int("events") ?? 10_000_000;
        var userCount = args.Int("users") ?? 10_000;
        var days = args.Int("days") ?? 120;
        var keepDays = args.Int("keep") ?? 40;
        var iterations = args.Int("iterations") ?? 1_000;
        var sample = args.Int("sample") ?? 200;
        args.EnsureAllRead();
        if (userCount < 2 || days < keepDays + 62 || keepDays < 35 || iterations < 100 || sample < 1 || sample > userCount)
        {
            throw new ArgumentException("need --users >= 2, --keep >= 35 and --days >= --keep + 62 (a whole month to prune), --iterations >= 100, 1 <= --sample <= --users.");
        }

        Console.WriteLine($"# storage benchmark — {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, .NET {Environment.Version}, {BenchInfo.BuildConfiguration}");
        Console.WriteLine($"# PostgreSQL, {totalRows:N0} events over {days} days, {userCount:N0} accounts (each a Stripe customer, calendar-month periods, one sent report per account·meter·month); prune --keep {keepDays}d; load average at start: {BenchInfo.LoadAverage()}");

        await using var db = await BenchDatabase.CreateAsync(BenchProvider.Postgres, userCount, Configure, customerPlan: "pro");
        await using var connection = new NpgsqlConnection(db.ConnectionString);
        await connection.OpenAsync();
        var now = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();

        // usage_events is partitioned by month: the months of the history loaded here get their partitions first
        // (a database migrated with its history gets them from the migration; new months from the retention service).
        foreach (var m in Months(now.AddDays(-days), now))
        {
            await ExecuteAsync(connection, string.Create(CultureInfo.InvariantCulture,
                $"CREATE TABLE IF NOT EXISTS usage_events_y{m.Start:yyyy}m{m.Start:MM} PARTITION OF usage_events FOR VALUES FROM ('{m.Start:yyyy-MM-dd}T00:00:00Z') TO ('{m.End:yyyy-MM-dd}T00:00:00Z')"));
        }

        var chunks = (totalRows + ChunkRows - 1) / ChunkRows;
        for (var c = 0; c < chunks; c++)
        {
            await using var command = new NpgsqlCommand(GenerateSql, connection) { CommandTimeout = 0 };
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("start", now.AddDays(-days)));
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("pending_after", now.AddMinutes(-10)));
            command.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. db.Users] });
            command.Parameters.Add(new NpgsqlParameter<int>("user_count", userCount));
            command.Parameters.Add(new NpgsqlParameter<long>("rows", totalRows));
            command.Parameters.Add(new NpgsqlParameter<long>("from", ((long)totalRows * c / chunks) + 1));
            command.Parameters.Add(new NpgsqlParameter<long>("to", (long)totalRows * (c + 1) / chunks));
            await command.ExecuteNonQueryAsync();
        }

        await ExecuteAsync(connection, ReportsSql);
        await ExecuteAsync(connection, UsageBillingMigrationSql.BackfillUsageHourlyPostgres);
        await ExecuteAsync(connection, UsageBillingMigrationSql.BackfillUsageDailyPostgres);
        await ExecuteAsync(connection, "VACUUM ANALYZE");
        Console.WriteLine($"#   generated {totalRows:N0} events, their reports and rollups, vacuumed ({clock.Elapsed.TotalSeconds:N0} s)");

        var written = await SizesAsync(connection);

        // Compact the tables too, so before and after compare the same packing (the indexes built row by row are looser).
        await ExecuteAsync(connection, "VACUUM FULL ANALYZE usage_events");
        await ExecuteAsync(connection, "VACUUM FULL ANALYZE usage_hourly");
        await ExecuteAsync(connection, "VACUUM FULL ANALYZE usage_daily");
        var before = await SizesAsync(connection);
        // The covering index this one replaced (SlimUsageEvents), and the same keyed by meter too, measured beside it on the same rows.
        var covering = await IndexSizeAsync(connection, "CREATE INDEX bench_covering_user_time ON usage_events (user_id, occurred_at, meter) INCLUDE (quantity, report_id)", "bench_covering_user_time");
        var meterKeyed = await IndexSizeAsync(connection, "CREATE INDEX bench_meter_user_time ON usage_events (user_id, occurred_at, meter)", "bench_meter_user_time");
        Console.WriteLine($"#   measured, then compacted with VACUUM FULL ({clock.Elapsed.TotalSeconds:N0} s)");
        var store = db.Services.GetRequiredService<IUsageStore>();
        var summaries = db.Services.GetRequiredService<IUsageSummaryService>();
        var probe = db.Users[0];
        var months = Months(now.AddDays(-days), now);
        var oldest = months[1]; // the first whole month: pruned with any --keep below --days - 31
        var answersBefore = await AnswersAsync(store, db.Users.Take(sample), months, ragged: true);
        var readsBefore = new[]
        {
            await MeasureAsync(iterations, () => summaries.GetCurrentPeriodAsync(probe)),
            await MeasureAsync(iterations, () => store.GetUsageByDayAsync(probe, oldest.Start, oldest.End, default)),
        };

        // The fold of the closed sparse days' hours into the daily rollup (what the retention service does every tick),
        // then compacted again: the bytes it saves, and the same answers and read times from the folded days.
        var foldClock = Stopwatch.StartNew();
        var folded = await db.Services.GetRequiredService<IUsageRetention>().FoldHoursAsync();
        foldClock.Stop();
        await ExecuteAsync(connection, "VACUUM FULL ANALYZE usage_hourly");
        await ExecuteAsync(connection, "VACUUM FULL ANALYZE usage_daily");
        var afterFold = await SizesAsync(connection);
        var answersFolded = await AnswersAsync(store, db.Users.Take(sample), months, ragged: true);
        var answersBeforePrune = await AnswersAsync(store, db.Users.Take(sample), months, ragged: false);
        var readsFolded = new[]
        {
            await MeasureAsync(iterations, () => summaries.GetCurrentPeriodAsync(probe)),
            await MeasureAsync(iterations, () => store.GetUsageByDayAsync(probe, oldest.Start, oldest.End, default)),
        };

        // Batched deletes against partition drops, on the same data: the partial first month's events by batched deletes
        // (partition drops off), then the first whole month's by dropping its partition (and the first month's, emptied);
        // the hourly fold is left to the full prune below, so each step times the events alone.
        var steps = (IUsageRetentionSteps)db.Services.GetRequiredService<IUsageRetentionStore>();
        var batch = db.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<UsageBillingOptions>>().Value.Retention.BatchSize;
        var month = oldest;
        var monthRows = await ScalarAsync(connection, $"SELECT count(*) FROM usage_events_y{month.Start:yyyy}m{month.Start:MM}");
        var monthBytes = await ScalarAsync(connection, $"SELECT pg_total_relation_size('usage_events_y{month.Start:yyyy}m{month.Start:MM}')");
        var batched = Stopwatch.StartNew();
        var byBatches = await steps.PruneAsync(months[0].End, batch, dropPartitions: false, foldHourly: false, default);
        batched.Stop();
        var dropping = Stopwatch.StartNew();
        var byDrops = await steps.PruneAsync(month.End, batch, dropPartitions: true, foldHourly: false, default);
        dropping.Stop();

        var keep = TimeSpan.FromDays(keepDays);
        var prune = Stopwatch.StartNew();
        var result = await db.Services.GetRequiredService<IUsageRetention>().PruneAsync(keep);
        prune.Stop();
        await ExecuteAsync(connection, "VACUUM ANALYZE");
        var afterVacuum = await SizesAsync(connection);
        var answersAfter = await AnswersAsync(store, db.Users.Take(sample), months, ragged: false);
        var readsAfter = new[]
        {
            await MeasureAsync(iterations, () => summaries.GetCurrentPeriodAsync(probe)),
            await MeasureAsync(iterations, () => store.GetUsageByDayAsync(probe, oldest.Start, oldest.End, default)),
        };
        await ExecuteAsync(connection, "VACUUM FULL usage_events");
        await ExecuteAsync(connection, "VACUUM FULL usage_hourly");
        var afterFull = await SizesAsync(connection);

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# fold: the hours of {folded.DaysFolded:N0} closed account·meter·days folded into the daily rollup, {folded.HourlyRowsDeleted:N0} hourly rows deleted, in {foldClock.Elapsed.TotalSeconds:N1} s"));
        Console.WriteLine($"# prune --keep {keepDays}d (cutoff {result.Cutoff:yyyy-MM-dd HH:mm}): {result.EventsDeleted:N0} events and {result.HourlyRowsFolded:N0} hourly rows removed across {result.Accounts:N0} accounts in {prune.Elapsed.TotalSeconds:N1} s ({result.EventsDeleted / prune.Elapsed.TotalSeconds:N0} events/s, batched deletes of {db.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<UsageBillingOptions>>().Value.Retention.BatchSize:N0})");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# batched deletes of {batch:N0} (partition drops off), {months[0].Start:yyyy-MM} (partial month) up to {months[0].End:yyyy-MM-dd}: {byBatches.EventsDeleted:N0} events in {batched.Elapsed.TotalSeconds:N1} s ({byBatches.EventsDeleted / batched.Elapsed.TotalSeconds:N0} events/s)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# partition drops up to {month.End:yyyy-MM-dd} ({month.Start:yyyy-MM}: {monthRows:N0} rows, {monthBytes / 1048576.0:N0} MB with indexes): {byDrops.PartitionsDropped} partitions, {byDrops.EventsDeleted:N0} events in {dropping.Elapsed.TotalSeconds:N2} s ({byDrops.EventsDeleted / dropping.Elapsed.TotalSeconds:N0} events/s, {byDrops.EventsDeleted / dropping.Elapsed.TotalSeconds / Math.Max(1, byBatches.EventsDeleted / batched.Elapsed.TotalSeconds):N0}x the batched deletes)"));
        var slim = before.Indexes["ix_usage_events_user_time"];
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# ix_usage_events_user_time (user_id, occurred_at) {slim / 1048576.0:N0} MB, built on the same {before.Events:N0} rows as the ones it replaced: (user_id, occurred_at, meter) {meterKeyed / 1048576.0:N0} MB ({(meterKeyed - slim) / (double)before.Events:N1} B per event more), the same INCLUDE (quantity, report_id) {covering / 1048576.0:N0} MB ({(covering - slim) / (double)before.Events:N1} B per event more)"));
        Console.WriteLine();
        Console.WriteLine("| | events held | usage_events heap MB | its indexes MB | usage_hourly MB (rows) | usage_daily MB (rows) | total MB | B per event held | B per event recorded |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (name, s) in new[] { ("before, as written", written), ("before, compacted (VACUUM FULL)", before), ("after the fold, compacted", afterFold), ("after the fold and prune + VACUUM", afterVacuum), ("after the fold and prune + VACUUM FULL", afterFull) })
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {s.Events:N0} | {s.EventsHeap / 1048576.0:N0} | {s.Indexes.Values.Sum() / 1048576.0:N0} | {s.Hourly / 1048576.0:N0} ({s.HourlyRows:N0}) | {s.Daily / 1048576.0:N0} ({s.DailyRows:N0}) | {s.Total / 1048576.0:N0} | {s.Total / (double)Math.Max(1, s.Events):N0} | {s.Total / (double)written.Events:N0} |"));
        }

        Console.WriteLine();
        Console.WriteLine("| index | as written MB | compacted MB | after prune, compacted MB |");
        Console.WriteLine("|---|---:|---:|---:|");
        foreach (var (index, size) in written.Indexes.OrderByDescending(i => i.Value))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {index} | {size / 1048576.0:N0} | {before.Indexes.GetValueOrDefault(index) / 1048576.0:N0} | {afterFull.Indexes.GetValueOrDefault(index) / 1048576.0:N0} |"));
        }

        Console.WriteLine();
        Console.WriteLine("| Read (one account) | before p50 ms | before p99 ms | folded p50 ms | folded p99 ms | folded and pruned p50 ms | folded and pruned p99 ms |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        var names = new[] { "GetCurrentPeriodAsync", $"GetUsageByDayAsync, first whole month ({oldest.Start:yyyy-MM}, pruned)" };
        for (var i = 0; i < names.Length; i++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {names[i]} | {readsBefore[i].P50:F2} | {readsBefore[i].P99:F2} | {readsFolded[i].P50:F2} | {readsFolded[i].P99:F2} | {readsAfter[i].P50:F2} | {readsAfter[i].P99:F2} |"));
        }

        var same = answersBefore == answersFolded && answersBeforePrune == answersAfter;
        Console.WriteLine();
        Console.WriteLine($"# {sample:N0} accounts' usage by day in each of {months.Count} months and in ranges from 09:17 on their first day to 09:17 on the next month's: {(answersBefore == answersFolded ? "identical before and after the fold" : "DIFFERENT after the fold")} ({answersBefore.Length:N0} characters compared); the months' (the periods'): {(answersBeforePrune == answersAfter ? "identical before and after the prune" : "DIFFERENT after the prune")} ({answersAfter.Length:N0} characters)");
        Console.WriteLine($"# load average at end: {BenchInfo.LoadAverage()}");
        return same ? 0 : 1;
    }

    /// <summary>
    /// <c>prune</c>: one month of <c>--month-events</c> acknowledged events (default 10 M) removed by the batched deletes
    /// against the next month, of as many events, removed by dropping its partition: two whole months long closed (four and
    /// three months back), every event in a sent report of its calendar month, every day's hours folded (what the
    /// retention service leaves of such sparse days). The fold and the hourly rows are left out: both ways time the events.
    /// </summary>
    public static async Task<int> RunPruneAsync(IReadOnlyList<string> rawArgs)
    {
        var args = new BenchArgs(rawArgs);
        var monthEvents = args.Int("month-events") ?? 10_000_000;
        var userCount = args.Int("users") ?? 10_000;
        var keptPercent = args.Int("kept-percent") ?? 0;
        args.EnsureAllRead();
        if (userCount < 2 || monthEvents < userCount || keptPercent is < 0 or >= 10)
        {
            throw new ArgumentException("need --users >= 2, --month-events >= --users and 0 <= --kept-percent < 10 (a month keeping a tenth is not dropped).");
        }

        Console.WriteLine($"# prune benchmark — {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, .NET {Environment.Version}, {BenchInfo.BuildConfiguration}");
        Console.WriteLine($"# PostgreSQL, two whole months of {monthEvents:N0} events each, {userCount:N0} accounts, the first {keptPercent} % of them unacknowledged (kept); load average at start: {BenchInfo.LoadAverage()}");
        await using var db = await BenchDatabase.CreateAsync(BenchProvider.Postgres, userCount, Configure, customerPlan: "pro");
        await using var connection = new NpgsqlConnection(db.ConnectionString);
        await connection.OpenAsync();
        var now = DateTimeOffset.UtcNow;
        var batchedMonth = BillingPeriod.CalendarMonth(now.AddMonths(-4));
        var droppedMonth = BillingPeriod.CalendarMonth(batchedMonth.End);
        var clock = Stopwatch.StartNew();
        foreach (var m in new[] { batchedMonth, droppedMonth })
        {
            await ExecuteAsync(connection, string.Create(CultureInfo.InvariantCulture,
                $"CREATE TABLE IF NOT EXISTS usage_events_y{m.Start:yyyy}m{m.Start:MM} PARTITION OF usage_events FOR VALUES FROM ('{m.Start:yyyy-MM-dd}T00:00:00Z') TO ('{m.End:yyyy-MM-dd}T00:00:00Z')"));
            var chunks = (monthEvents + ChunkRows - 1) / ChunkRows;
            for (var c = 0; c < chunks; c++)
            {
                await using var command = new NpgsqlCommand(GenerateSql, connection) { CommandTimeout = 0 };
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", m.End.AddMinutes(-5)));
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("start", m.Start));
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("pending_after", m.End));
                command.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. db.Users] });
                command.Parameters.Add(new NpgsqlParameter<int>("user_count", userCount));
                command.Parameters.Add(new NpgsqlParameter<long>("rows", monthEvents));
                command.Parameters.Add(new NpgsqlParameter<long>("from", ((long)monthEvents * c / chunks) + 1));
                command.Parameters.Add(new NpgsqlParameter<long>("to", (long)monthEvents * (c + 1) / chunks));
                await command.ExecuteNonQueryAsync();
            }
        }

        await ExecuteAsync(connection, ReportsSql);
        if (keptPercent > 0)
        {
            // The first accounts' reports of both months never acknowledged: their events must stay, and the partition
            // drop puts them back into usage_events while recording waits.
            await ExecuteAsync(connection, string.Create(CultureInfo.InvariantCulture,
                $"UPDATE usage_reports SET status = 'needs_review', sent_at = NULL WHERE stripe_customer_id IN (SELECT 'cus_bench' || g FROM generate_series(0, {(userCount * keptPercent / 100) - 1}) g)"));
        }

        await ExecuteAsync(connection, UsageBillingMigrationSql.BackfillUsageDailyPostgres);
        await ExecuteAsync(connection, "UPDATE usage_daily SET hours_folded = TRUE");
        await ExecuteAsync(connection, "VACUUM ANALYZE");
        Console.WriteLine($"#   generated {2L * monthEvents:N0} events, their reports and daily rollup, vacuumed ({clock.Elapsed.TotalSeconds:N0} s)");

        var steps = (IUsageRetentionSteps)db.Services.GetRequiredService<IUsageRetentionStore>();
        var batch = db.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<UsageBillingOptions>>().Value.Retention.BatchSize;
        var rows = new List<(string Way, BillingPeriod Month, long Rows, long Bytes, UsagePruneResult Result, TimeSpan Took, Probe Probe)>();
        var recorder = db.Services.GetRequiredService<IUsageRecorder>();
        foreach (var (way, month, drop) in new[] { ("batched deletes", batchedMonth, false), ("partition drop", droppedMonth, true) })
        {
            var name = $"usage_events_y{month.Start:yyyy}m{month.Start:MM}";
            var monthRows = await ScalarAsync(connection, $"SELECT count(*) FROM {name}");
            var monthBytes = await ScalarAsync(connection, $"SELECT pg_total_relation_size('{name}')");
            using var stop = new CancellationTokenSource();
            var probe = Task.Run(() => ProbeRecordingAsync(recorder, db.Users[^1], way, stop.Token));
            var took = Stopwatch.StartNew();
            var result = await steps.PruneAsync(month.End, batch, dropPartitions: drop, foldHourly: false, default);
            took.Stop();
            await stop.CancelAsync();
            rows.Add((way, month, monthRows, monthBytes, result, took.Elapsed, await probe));
        }

        var left = await ScalarAsync(connection, "SELECT count(*) FROM usage_events");
        Console.WriteLine();
        Console.WriteLine("| way | month | rows | MB with indexes | events removed | partitions dropped | s | events/s | recorded meanwhile (one caller) | its p99 / max ms |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Way}{(r.Way == "batched deletes" ? $" of {batch:N0}" : "")} | {r.Month.Start:yyyy-MM} | {r.Rows:N0} | {r.Bytes / 1048576.0:N0} | {r.Result.EventsDeleted:N0} | {r.Result.PartitionsDropped} | {r.Took.TotalSeconds:N1} | {r.Result.EventsDeleted / r.Took.TotalSeconds:N0} | {r.Probe.Count:N0} | {r.Probe.P99Ms:N1} / {r.Probe.MaxMs:N1} |"));
        }

        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# partition drop / batched deletes: {rows[0].Took.TotalSeconds / rows[1].Took.TotalSeconds:N1}x less time; events left in usage_events: {left:N0}"));
        Console.WriteLine($"# load average at end: {BenchInfo.LoadAverage()}");
        return rows.All(r => r.Result.EventsDeleted > 0) ? 0 : 1;
    }

    private sealed record Probe(int Count, double P99Ms, double MaxMs);

    // One caller recording for an account while the prune runs: how long the prune's locks hold the app's writes up.
    private static async Task<Probe> ProbeRecordingAsync(IUsageRecorder recorder, Guid user, string way, CancellationToken stop)
    {
        var latencies = new List<double>();
        var watch = new Stopwatch();
        while (!stop.IsCancellationRequested)
        {
            watch.Restart();
            await recorder.RecordAsync(user, "ai_messages", 1, $"probe-{way}-{latencies.Count}", cancellationToken: CancellationToken.None);
            latencies.Add(watch.Elapsed.TotalMilliseconds);
        }

        latencies.Sort();
        return latencies.Count == 0 ? new Probe(0, 0, 0) : new Probe(latencies.Count, latencies[(int)Math.Min(latencies.Count - 1, Math.Ceiling(latencies.Count * 0.99) - 1)], latencies[^1]);
    }

    private static void Configure(UsageBillingOptions o)
    {
        o.Meters["api_calls"] = new MeterDefinition { DisplayName = "API calls", Aggregation = MeterAggregation.Count };
        var pro = new PlanDefinition { DisplayName = "Pro", MonthlyPrice = 49m };
        pro.Meters["ai_messages"] = new PlanMeterPrice { Included = 100_000, UnitPrice = 0.002m };
        pro.Meters["api_calls"] = new PlanMeterPrice { Included = 10_000, UnitPrice = 0.001m };
        o.Plans["pro"] = pro;
    }

    private static List<BillingPeriod> Months(DateTimeOffset from, DateTimeOffset to)
    {
        var months = new List<BillingPeriod>();
        for (var m = BillingPeriod.CalendarMonth(from); m.Start < to; m = BillingPeriod.CalendarMonth(m.End))
        {
            months.Add(m);
        }

        return months;
    }

    // Pruned history answers exactly for its billing periods (here calendar months); a ragged range's edge day in it no
    // longer has the events or hours it would need, so ragged ranges are compared across the fold only.
    private static async Task<string> AnswersAsync(IUsageStore store, IEnumerable<Guid> users, List<BillingPeriod> months, bool ragged)
    {
        var text = new StringBuilder();
        foreach (var user in users)
        {
            foreach (var m in months)
            {
                // The month, and a range with ragged edges (both edge days read hour by hour: from the hourly rollup, or from
                // the events once folded).
                var ranges = ragged ? new[] { (m.Start, m.End), (m.Start.AddHours(9).AddMinutes(17), m.End.AddHours(9).AddMinutes(17)) } : [(m.Start, m.End)];
                foreach (var (from, to) in ranges)
                {
                    var rows = await store.GetUsageByDayAsync(user, from, to, default);
                    foreach (var r in rows.OrderBy(r => r.Meter, StringComparer.Ordinal).ThenBy(r => r.Day))
                    {
                        text.Append(user).Append(' ').Append(from.ToString("O", CultureInfo.InvariantCulture)).Append(' ').Append(r).Append('\n');
                    }
                }
            }
        }

        return text.ToString();
    }

    private sealed record Sizes(long Events, long EventsHeap, Dictionary<string, long> Indexes, long Hourly, long HourlyRows, long Daily, long DailyRows)
    {
        public long Total => EventsHeap + Indexes.Values.Sum() + Hourly + Daily;
    }

    private static async Task<Sizes> SizesAsync(NpgsqlConnection connection)
    {
        var indexes = new Dictionary<string, long>(StringComparer.Ordinal);
        // usage_events is partitioned: each index's size is the sum of its partitions' copies.
        const string indexesSql = """
            SELECT p.indexrelid::regclass::text, COALESCE(sum(pg_relation_size(i.inhrelid)), 0)::bigint
            FROM pg_index p LEFT JOIN pg_inherits i ON i.inhparent = p.indexrelid
            WHERE p.indrelid = 'usage_events'::regclass GROUP BY 1
            UNION ALL SELECT 'usage_event_keys (table and key)', pg_total_relation_size('usage_event_keys')
            """;
        await using (var command = new NpgsqlCommand(indexesSql, connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                indexes[reader.GetString(0)] = reader.GetInt64(1);
            }
        }

        // The heap with its TOAST and free-space/visibility maps: the table's total minus its indexes.
        return new Sizes(
            await ScalarAsync(connection, "SELECT count(*) FROM usage_events"),
            await ScalarAsync(connection, "SELECT sum(pg_total_relation_size(relid) - pg_indexes_size(relid))::bigint FROM pg_partition_tree('usage_events') WHERE isleaf"),
            indexes,
            await ScalarAsync(connection, "SELECT pg_total_relation_size('usage_hourly')"),
            await ScalarAsync(connection, "SELECT count(*) FROM usage_hourly"),
            await ScalarAsync(connection, "SELECT pg_total_relation_size('usage_daily')"),
            await ScalarAsync(connection, "SELECT count(*) FROM usage_daily"));
    }

    private static async Task<long> IndexSizeAsync(NpgsqlConnection connection, string create, string name)
    {
        await ExecuteAsync(connection, create);
        var size = await ScalarAsync(connection, $"SELECT COALESCE(sum(pg_relation_size(inhrelid)), 0)::bigint FROM pg_inherits WHERE inhparent = '{name}'::regclass");
        await ExecuteAsync(connection, $"DROP INDEX {name}");
        return size;
    }

    private static async Task<Stats> MeasureAsync<T>(int runs, Func<Task<T>> read)
    {
        var warmUp = Stopwatch.StartNew();
        for (var i = 0; i < runs / 4 || warmUp.Elapsed < TimeSpan.FromSeconds(2); i++)
        {
            await read();
        }

        var times = new double[runs];
        for (var i = 0; i < runs; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await read();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        Array.Sort(times);
        return new Stats(At(0.50), At(0.99));

        double At(double q) => times[Math.Min(times.Length - 1, (int)Math.Ceiling(q * times.Length) - 1)];
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<long> ScalarAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        return Convert.ToInt64(await command.ExecuteScalarAsync(), CultureInfo.InvariantCulture);
    }

    private readonly record struct Stats(double P50, double P99);
}
