using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Stripe;
using Stripe.Billing;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.Benchmarks;

/// <summary>
/// <c>flush</c>: <see cref="IUsageFlusher.FlushOnceAsync(CancellationToken)"/> end to end against the Stripe emulator.
/// (a) throughput: N pending events for C customers × 2 meters, no latency, no rate limit — events/s,
/// Stripe calls vs. groups, exact totals, peak memory; (b) rate limit: one call per group with
/// injected latency on every meter-event call and the emulator limiting at the same rate as the
/// flusher — achieved calls/s and 429s. Every scenario runs on a fresh database and a reset emulator.
/// </summary>
public static partial class FlushBenchmark
{
    private static readonly string[] Meters = ["ai_messages", "api_calls"];

    public static async Task<int> RunAsync(IReadOnlyList<string> rawArgs)
    {
        var args = new BenchArgs(rawArgs);
        var settings = new Settings
        {
            Events = args.Int("events") ?? 1_000_000,
            Customers = args.Int("customers") ?? 10_000,
            Concurrency = args.Int("concurrency") ?? 32,
            ClaimBatch = args.Int("claim-batch"),
            SendBatch = args.Int("send-batch"),
            Transport = ParseTransport(args.String("transport")),
            MarkBatch = args.Int("mark-batch"),
            Layout = args.String("layout") ?? "interleaved",
            LimitedGroups = args.Int("limited-groups") ?? 2_000,
            LimitedRate = args.Int("rate") ?? 100,
            LatencyMs = args.Int("latency-ms") ?? 100,
            Emulator = args.String("emulator") ?? "child",
            Flusher = args.String("flusher") ?? "child",
            Rollups = !args.Flag("without-rollups"),
        };
        var providerName = args.String("provider") ?? "postgres";
        var skipThroughput = args.Flag("skip-throughput");
        var skipLimited = args.Flag("skip-limited");
        args.EnsureAllRead();

        BenchProvider[] providers = providerName switch
        {
            "sqlite" => [BenchProvider.Sqlite],
            "postgres" or "pg" => [BenchProvider.Postgres],
            "both" => [BenchProvider.Postgres, BenchProvider.Sqlite],
            _ => throw new ArgumentException($"--provider must be sqlite, postgres or both, was '{providerName}'."),
        };
        if (settings.Layout is not ("interleaved" or "clustered"))
        {
            throw new ArgumentException($"--layout must be interleaved or clustered, was '{settings.Layout}'.");
        }

        if (settings.Flusher is not ("child" or "inprocess"))
        {
            throw new ArgumentException($"--flusher must be child or inprocess, was '{settings.Flusher}'.");
        }

        if (settings.Emulator is not ("child" or "inprocess"))
        {
            throw new ArgumentException($"--emulator must be child or inprocess, was '{settings.Emulator}'.");
        }

        Console.WriteLine($"# flush benchmark — {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, .NET {Environment.Version}, {BenchInfo.BuildConfiguration}, GC server={System.Runtime.GCSettings.IsServerGC}");
        Console.WriteLine($"# (a) events={settings.Events}, customers={settings.Customers} x {Meters.Length} meters, layout={settings.Layout}, MaxConcurrentCalls={settings.Concurrency}, " +
            $"ClaimBatchSize={settings.ClaimBatch?.ToString(CultureInfo.InvariantCulture) ?? "default"}, SendBatchSize={settings.SendBatch?.ToString(CultureInfo.InvariantCulture) ?? "default"}, Transport={settings.Transport}, MarkBatchSize={settings.MarkBatch?.ToString(CultureInfo.InvariantCulture) ?? "default"}, emulator={settings.Emulator}");
        Console.WriteLine($"# (b) groups={settings.LimitedGroups}, {settings.LatencyMs} ms injected on every meter event, flusher and emulator limit {settings.LimitedRate}/s");
        Console.WriteLine($"# load average at start: {BenchInfo.LoadAverage()}");

        await using var emulator = settings.Emulator == "child" ? await BenchEmulator.StartChildAsync() : await BenchEmulator.StartInProcessAsync();
        Console.WriteLine($"# emulator at {emulator.ApiBase} ({(emulator.IsChild ? $"child process pid {emulator.ChildPid}, so this process's memory is the flusher's + harness's alone" : "in this process")})");

        var throughputRows = new List<ThroughputRow>();
        var limitedRows = new List<LimitedRow>();
        foreach (var provider in providers)
        {
            if (!skipThroughput)
            {
                var row = await RunThroughputAsync(provider, emulator, settings);
                throughputRows.Add(row);
            }

            if (!skipLimited)
            {
                var row = await RunLimitedAsync(provider, emulator, settings);
                limitedRows.Add(row);
            }
        }

        Console.WriteLine($"# load average at end: {BenchInfo.LoadAverage()}");
        Console.WriteLine();
        if (throughputRows.Count > 0)
        {
            Console.WriteLine(ThroughputTable(throughputRows));
        }

        if (limitedRows.Count > 0)
        {
            Console.WriteLine(LimitedTable(limitedRows));
        }

        return throughputRows.All(r => r.Ok) && limitedRows.All(r => r.Ok) ? 0 : 1;
    }

    // ------------------------------------------------------------------ (a) throughput

    private static async Task<ThroughputRow> RunThroughputAsync(BenchProvider provider, BenchEmulator emulator, Settings s)
    {
        var name = provider == BenchProvider.Postgres ? "PostgreSQL" : "SQLite";
        Console.WriteLine($"## {name} throughput: setting up {s.Customers} customers and {s.Events:N0} events");
        await emulator.ResetWithMetersAsync(Meters);
        var customers = await emulator.CreateCustomersAsync(s.Customers);
        var db = await BenchDatabase.CreateAsync(provider, s.Customers, ConfigureMeters);
        try
        {
            return await MeasureThroughputAsync(db, name, emulator, customers, s);
        }
        finally
        {
            await DropAsync(db);
        }
    }

    private static async Task<ThroughputRow> MeasureThroughputAsync(BenchDatabase db, string name, BenchEmulator emulator, string[] customers, Settings s)
    {
        await AddBillingCustomersAsync(db, customers);
        var setup = Stopwatch.StartNew();
        var (periodStart, periodEnd) = await InsertEventsAsync(db, s.Events, s.Layout, s.Rollups);
        Console.WriteLine($"   inserted {await db.CountEventsAsync():N0} events{(s.Rollups ? " and their rollups" : " (no rollups: the marks insert them)")} in {setup.Elapsed.TotalSeconds:N1} s ({periodStart:yyyy-MM-dd} .. now, period ends {periodEnd:yyyy-MM-dd})");

        Console.WriteLine($"   load average before flush: {BenchInfo.LoadAverage()}");
        FlushMeasurement m;
        if (s.Flusher == "child")
        {
            m = await MeasureFlushInChildAsync(db, emulator, s);
        }
        else
        {
            await using var flusher = BuildFlusher(db.Provider, db.ConnectionString, emulator.ApiBase, o => ThroughputOptions(o, s.Concurrency, s.ClaimBatch, s.SendBatch, s.Transport, s.MarkBatch));
            m = await MeasureFlushAsync(flusher);
        }

        var result = m.Result;
        var peak = m.Memory;
        var peakRss = m.PeakRss;
        var (claimPhase, sendPhase) = (TimeSpan.FromSeconds(m.ClaimSeconds), TimeSpan.FromSeconds(m.SendSeconds));
        Console.WriteLine($"   flusher process before the flush: managed heap {Mb(m.HeapBefore)}, RSS {Mb(m.RssBefore)}, GC heap committed {Mb(m.CommittedBefore)}");
        Console.WriteLine($"   flushed in {m.Seconds:N1} s: claimed {result.EventsClaimed:N0}, reports {result.ReportsCreated:N0}, sent {result.ReportsSent:N0}, retried {result.ReportsRetried}, dead {result.ReportsDead}, review {result.ReportsNeedingReview}");
        Console.WriteLine($"   peak managed heap {Mb(peak.PeakHeap)} (sampled, incl. garbage; largest heap right after a GC {Mb(peak.PeakGcHeap)}), peak RSS {(peakRss is { } p ? Mb(p) : "n/a")}, GC heap committed at most {Mb(peak.PeakCommitted)}, gen2 GCs {peak.Gen2Collections}, load average {BenchInfo.LoadAverage()}");

        var check = await VerifyAsync(db, emulator, periodStart, periodEnd, s.Events, rollupsBuilt: s.Rollups);
        Console.WriteLine($"   phases: claim {claimPhase.TotalSeconds:N1} s ({result.EventsClaimed / claimPhase.TotalSeconds:N0} events/s), send+mark {sendPhase.TotalSeconds:N1} s ({m.Calls / sendPhase.TotalSeconds:N0} calls/s)");
        var row = new ThroughputRow(name, s.Events, s.Customers, s.Layout, TimeSpan.FromSeconds(m.Seconds), result, check, peak, peakRss, BenchInfo.LoadAverage(), claimPhase, sendPhase) { RssBefore = m.RssBefore, Flusher = s.Flusher };
        Console.WriteLine($"   -> {row.EventsPerSecond:N0} events/s, {check.Accepted:N0} Stripe calls accepted for {check.Groups:N0} groups, totals {check.TotalsSummary}");
        return row;
    }

    // ------------------------------------------------------------------ (b) latency + rate limit

    private static async Task<LimitedRow> RunLimitedAsync(BenchProvider provider, BenchEmulator emulator, Settings s)
    {
        var name = provider == BenchProvider.Postgres ? "PostgreSQL" : "SQLite";
        var customerCount = Math.Max(1, s.LimitedGroups / Meters.Length);
        var groups = customerCount * Meters.Length;

        // Two events per group, all in one claim batch: one report (one call) per group.
        var events = groups * 2;
        Console.WriteLine($"## {name} rate limit: {groups} groups ({events} events), {s.LatencyMs} ms latency, {s.LimitedRate}/s");
        await emulator.ResetWithMetersAsync(Meters);
        var customers = await emulator.CreateCustomersAsync(customerCount);
        var db = await BenchDatabase.CreateAsync(provider, customerCount, ConfigureMeters);
        try
        {
            return await MeasureLimitedAsync(db, name, emulator, customers, groups, events, s);
        }
        finally
        {
            await DropAsync(db);
        }
    }

    private static async Task<LimitedRow> MeasureLimitedAsync(BenchDatabase db, string name, BenchEmulator emulator, string[] customers, int groups, int events, Settings s)
    {
        await AddBillingCustomersAsync(db, customers);
        var (periodStart, periodEnd) = await InsertEventsAsync(db, events, "interleaved");
        await using var flusher = BuildFlusher(db.Provider, db.ConnectionString, emulator.ApiBase, o =>
        {
            o.RequestsPerSecond = s.LimitedRate;
            o.MaxConcurrentCalls = s.Concurrency;
            o.ClaimBatchSize = Math.Max(o.ClaimBatchSize, events);
            if (s.SendBatch is { } b)
            {
                o.SendBatchSize = b;
            }
        });

        // Faults and the emulator's own limit go on last: setup calls must not eat the budget.
        await emulator.Admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.Delay, Count: groups * 2, DelayMilliseconds: s.LatencyMs, Method: "POST"));
        await emulator.Admin.SetRateLimitAsync(s.LimitedRate);
        var rejectionsBefore = await emulator.Admin.GetRejectionCountsAsync();
        Console.WriteLine($"   load average before flush: {BenchInfo.LoadAverage()}");
        using var phases = new PhaseListener();
        var clock = Stopwatch.StartNew();
        var result = await flusher.GetRequiredService<IUsageFlusher>().FlushOnceAsync();
        clock.Stop();
        var rejectionsAfter = await emulator.Admin.GetRejectionCountsAsync();
        await emulator.Admin.SetRateLimitAsync(null);
        await emulator.Admin.ClearFaultsAsync();
        var rejected429 = Delta(rejectionsBefore, rejectionsAfter, "rate_limited") + Delta(rejectionsBefore, rejectionsAfter, "injected_rate_limit");
        var allRejections = string.Join(", ", rejectionsAfter.Where(kv => kv.Value != rejectionsBefore.GetValueOrDefault(kv.Key)).Select(kv => $"{kv.Key}={kv.Value - rejectionsBefore.GetValueOrDefault(kv.Key)}"));

        var accepted = await emulator.Admin.GetMeterEventsAsync();
        var first = accepted.Min(e => e.ReceivedAt);
        var last = accepted.Max(e => e.ReceivedAt);
        var check = await VerifyAsync(db, emulator, periodStart, periodEnd, events, accepted);
        var row = new LimitedRow(name, groups, s.LimitedRate, s.LatencyMs, clock.Elapsed, result, check, rejected429, allRejections.Length == 0 ? "none" : allRejections, BenchInfo.LoadAverage(), phases.ClaimPhase, phases.SendPhase);
        Console.WriteLine($"   flushed in {clock.Elapsed.TotalSeconds:N1} s: sent {result.ReportsSent}, retried {result.ReportsRetried}; emulator accepted {check.Accepted} ({first:HH:mm:ss} .. {last:HH:mm:ss}, whole seconds); rejections during flush: {row.Rejections}");
        Console.WriteLine($"   phases: claim {phases.ClaimPhase.TotalSeconds:N2} s, send+mark {phases.SendPhase.TotalSeconds:N1} s ({row.SendCallsPerSecond:N1} calls/s in the send phase)");
        Console.WriteLine($"   -> {row.CallsPerSecond:N1} calls/s = {row.CallsPerSecond / s.LimitedRate:P1} of {s.LimitedRate}/s, 429s received {rejected429}, totals {check.TotalsSummary}");
        return row;
    }

    /// <summary>
    /// Drops the database, retrying: after a million-row run PostgreSQL's autovacuum is often busy in it,
    /// and <c>DROP DATABASE … WITH (FORCE)</c> may not terminate a superuser's worker without pg_signal_backend.
    /// </summary>
    private static async Task DropAsync(BenchDatabase db)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await db.DisposeAsync();
                return;
            }
            catch (Npgsql.PostgresException ex) when (attempt < 30 && ex.SqlState is "42501" or "55006")
            {
                Console.WriteLine($"   (drop of the benchmark database failed: {ex.MessageText}; retrying)");
                await Task.Delay(TimeSpan.FromSeconds(2));
            }
        }
    }

    private static long Delta(IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after, string key) =>
        after.GetValueOrDefault(key) - before.GetValueOrDefault(key);

    // ------------------------------------------------------------------ setup

    private static void ConfigureMeters(UsageBillingOptions o)
    {
        foreach (var meter in Meters)
        {
            o.Meters[meter] = new MeterDefinition { DisplayName = meter };
        }
    }

    /// <summary>The library wired as an app would wire the flusher, on the benchmark's database.</summary>
    private static ServiceProvider BuildFlusher(BenchProvider provider, string connectionString, string apiBase, Action<FlushOptions> flush)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        var builder = services.AddUsageBilling(ConfigureMeters);
        if (provider == BenchProvider.Sqlite)
        {
            builder.UseSqlite(connectionString);
        }
        else
        {
            builder.UsePostgres(connectionString);
        }

        builder
            .UseStripe(o =>
            {
                o.SecretKey = "sk_test_bench";
                o.ApiBase = apiBase;
            })
            .AddFlusher(o =>
            {
                o.Enabled = false;
                flush(o);
            });
        return services.BuildServiceProvider();
    }

    private static async Task AddBillingCustomersAsync(BenchDatabase db, IReadOnlyList<string> customers)
    {
        await using var context = db.CreateContext();
        var now = DateTimeOffset.UtcNow;
        context.BillingCustomers.AddRange(db.Users.Select((u, i) => new BillingCustomer { UserId = u, StripeCustomerId = customers[i], CreatedAt = now, UpdatedAt = now }));
        await context.SaveChangesAsync();
    }

    /// <summary>
    /// Inserts <paramref name="count"/> events over users × meters with times spread evenly from the start
    /// of the current UTC month to a minute ago. <c>interleaved</c>: each event's user·meter is random
    /// (how usage arrives); <c>clustered</c>: all events of one user·meter are adjacent in
    /// <c>created_at</c> order (the claim order), the flusher's best case. Raw multi-row inserts skip what the recorder
    /// writes beside an event, so then, unless <paramref name="rollups"/> is false, the hourly and daily rollups are
    /// built from the events with the library's own backfill statements: the flusher's marks update rows that exist,
    /// as they do in an app.
    /// </summary>
    private static async Task<(DateTimeOffset Start, DateTimeOffset End)> InsertEventsAsync(BenchDatabase db, int count, string layout, bool rollups = true)
    {
        var now = DateTimeOffset.UtcNow;
        var start = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero);
        var end = start.AddMonths(1);
        var span = (now - TimeSpan.FromMinutes(1)) - start;
        if (span <= TimeSpan.Zero)
        {
            span = TimeSpan.FromSeconds(1);
        }

        var keys = db.Users.Count * Meters.Length;
        var random = new Random(20261126);
        await using var writer = RawInserter.Open(db, "unnest", 50);
        const int perTransaction = 10_000;
        var batch = new List<RawRow>(perTransaction);
        for (var i = 0; i < count; i++)
        {
            var key = layout == "clustered" ? (int)((long)i * keys / count) : (i < keys ? i : random.Next(keys));
            var at = start + (span * ((double)i / count));
            batch.Add(new RawRow(Guid.CreateVersion7(at), db.Users[key / Meters.Length], Meters[key % Meters.Length], random.Next(1, 101), at, null, at));
            if (batch.Count == perTransaction || i == count - 1)
            {
                await writer.InsertAsync(batch);
                batch.Clear();
            }
        }

        if (rollups)
        {
            await using var context = db.CreateContext();
            context.Database.SetCommandTimeout(TimeSpan.FromMinutes(30));
            var postgres = db.Provider == BenchProvider.Postgres;
            await context.Database.ExecuteSqlRawAsync(postgres ? UsageBillingMigrationSql.BackfillUsageHourlyPostgres : UsageBillingMigrationSql.BackfillUsageHourlySqlite);
            await context.Database.ExecuteSqlRawAsync(postgres ? UsageBillingMigrationSql.BackfillUsageDailyPostgres : UsageBillingMigrationSql.BackfillUsageDailySqlite);
            await context.Database.ExecuteSqlRawAsync(postgres ? "ANALYZE usage_hourly; ANALYZE usage_daily" : "ANALYZE");
        }

        await SettleAsync(db);
        return (start, end);
    }

    /// <summary>
    /// PostgreSQL: statistics for the fresh events (an app's table has them; without, autovacuum's analyze may land in
    /// the middle of the claim) and a checkpoint, so the flush does not pay for writing out the setup's dirty pages. Needs superuser or <c>pg_checkpoint</c> (scripts/test.sh grants it); without it, the setup's
    /// pages may be written during the flush.
    /// </summary>
    private static async Task SettleAsync(BenchDatabase db)
    {
        if (db.Provider != BenchProvider.Postgres)
        {
            return;
        }

        await using var context = db.CreateContext();
        context.Database.SetCommandTimeout(TimeSpan.FromMinutes(30));
        var clock = Stopwatch.StartNew();
        await context.Database.ExecuteSqlRawAsync("ANALYZE usage_events");
        var analyzed = clock.Elapsed;
        try
        {
            await context.Database.ExecuteSqlRawAsync("CHECKPOINT");
            Console.WriteLine($"   setup settled: ANALYZE usage_events {analyzed.TotalSeconds:N1} s, CHECKPOINT {(clock.Elapsed - analyzed).TotalSeconds:N1} s");
        }
        catch (Npgsql.PostgresException ex) when (ex.SqlState == Npgsql.PostgresErrorCodes.InsufficientPrivilege)
        {
            Console.WriteLine($"   setup settled: ANALYZE usage_events {analyzed.TotalSeconds:N1} s; no CHECKPOINT (the role lacks pg_checkpoint), so the setup's pages may be written during the flush");
        }
    }

    // ------------------------------------------------------------------ verification

    /// <summary>
    /// After the flush: every event reported and every report sent; the emulator accepted exactly one
    /// meter event per report, none flagged; per customer·meter the emulator's values sum to the local
    /// sum of quantities (all keys, from the accepted events), and the emulator's own aggregation agrees
    /// for a sample of 200 keys. The rollups acknowledge every event once: their reported columns sum to the events'
    /// quantity and count, hourly and daily; with the rollups built beforehand (<paramref name="rollupsBuilt"/>), every
    /// row's reported columns equal its recorded ones.
    /// </summary>
    private static async Task<Check> VerifyAsync(BenchDatabase db, BenchEmulator emulator, DateTimeOffset periodStart, DateTimeOffset periodEnd, int expectedEvents, IReadOnlyList<AcceptedMeterEvent>? accepted = null, bool rollupsBuilt = true)
    {
        await using var context = db.CreateContext();
        var unreported = await context.UsageEvents.LongCountAsync(e => !context.UsageReports.Any(r => r.Id == e.ReportId && r.Status == UsageReportStatus.Sent));
        var reportStatuses = await context.UsageReports.GroupBy(r => r.Status).Select(g => new { g.Key, Count = g.Count() }).ToListAsync();
        var reports = reportStatuses.Sum(r => r.Count);
        var sent = reportStatuses.Where(r => r.Key == UsageReportStatus.Sent).Sum(r => r.Count);
        var local = (await context.UsageEvents.AsNoTracking()
                .Join(context.BillingCustomers, e => e.UserId, c => c.UserId, (e, c) => new { c.StripeCustomerId, e.Meter, e.Quantity })
                .GroupBy(x => new { x.StripeCustomerId, x.Meter })
                .Select(g => new { g.Key.StripeCustomerId, g.Key.Meter, Sum = g.Sum(x => x.Quantity), Count = g.Count() })
                .ToListAsync())
            .ToDictionary(x => (x.StripeCustomerId, x.Meter), x => (x.Sum, x.Count));
        var events = local.Values.Sum(v => (long)v.Count);
        var groups = await context.UsageReports.Select(r => new { r.StripeCustomerId, r.Meter, r.PeriodStart }).Distinct().CountAsync();

        accepted ??= await emulator.Admin.GetMeterEventsAsync();
        var flagged = accepted.Count(e => e.ErrorCode is not null || e.Canceled);
        var remote = accepted.Where(e => e.ErrorCode is null && !e.Canceled)
            .GroupBy(e => (e.CustomerId!, e.EventName))
            .ToDictionary(g => g.Key, g => g.Sum(e => e.Value));
        var mismatched = local.Count(kv => remote.GetValueOrDefault(kv.Key) != kv.Value.Sum) + remote.Keys.Count(k => !local.ContainsKey(k));

        // The emulator's own aggregation (meter "sum" over the billing period) for a sample.
        var sample = local.Keys.OrderBy(k => k.StripeCustomerId, StringComparer.Ordinal).ThenBy(k => k.Meter, StringComparer.Ordinal)
            .Where((_, i) => i % Math.Max(1, local.Count / 200) == 0).Take(200).ToList();
        var sampleMismatched = 0;
        foreach (var (customer, meter) in sample)
        {
            var total = await emulator.Admin.GetMeterTotalAsync(customer, meter, periodStart, periodEnd);
            if (total != local[(customer, meter)].Sum)
            {
                sampleMismatched++;
            }
        }

        var quantity = local.Values.Sum(v => v.Sum);
        var hourly = await context.Set<UsageHourly>().GroupBy(_ => 1)
            .Select(g => new { Rows = g.LongCount(), Quantity = g.Sum(h => h.ReportedQuantity), Count = g.Sum(h => h.ReportedCount), Pending = g.LongCount(h => h.ReportedQuantity != h.Quantity || h.ReportedCount != h.EventCount) })
            .SingleOrDefaultAsync();
        var daily = await context.Set<UsageDaily>().GroupBy(_ => 1)
            .Select(g => new { Rows = g.LongCount(), Quantity = g.Sum(d => d.ReportedQuantity), Count = g.Sum(d => d.ReportedCount), Pending = g.LongCount(d => d.ReportedQuantity != d.Quantity || d.ReportedCount != d.EventCount) })
            .SingleOrDefaultAsync();
        var rollupsOk = hourly is not null && daily is not null
            && hourly.Quantity == quantity && hourly.Count == events && daily.Quantity == quantity && daily.Count == events
            && (!rollupsBuilt || (hourly.Pending == 0 && daily.Pending == 0));
        var check = new Check(events, expectedEvents, unreported, reports, sent, groups, accepted.Count, flagged, local.Count, mismatched, sample.Count, sampleMismatched)
        {
            HourlyRows = hourly?.Rows ?? 0,
            RollupsOk = rollupsOk,
        };
        if (!check.Ok)
        {
            Console.WriteLine($"   !! verification FAILED: {check}");
        }

        return check;
    }

    // ------------------------------------------------------------------ output

    private static string ThroughputTable(List<ThroughputRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| provider | events | customers × meters | layout | flush time (claim + send) | events/s | reports = Stripe calls accepted | groups (customer·meter·period) | calls / groups (target 1.0×) | totals exact (all keys / emulator sample) | peak managed heap (sampled / after GC) | flusher process | RSS before → peak | load avg (1/5/15 min) |");
        sb.AppendLine("|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---|---:|---|");
        foreach (var r in rows)
        {
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Provider} | {r.Events:N0} | {r.Customers:N0} × {Meters.Length} | {r.Layout} | {r.Elapsed.TotalSeconds:N1} s ({r.ClaimPhase.TotalSeconds:N0} + {r.SendPhase.TotalSeconds:N0}) | {r.EventsPerSecond:N0} | {r.Check.Reports:N0} = {r.Check.Accepted:N0} | {r.Check.Groups:N0} | {(double)r.Check.Accepted / r.Check.Groups:N2}×{(r.Check.Accepted == r.Check.Groups ? "" : " **miss**")} | " +
                $"{r.Check.TotalsSummary} | {Mb(r.Memory.PeakHeap)} / {Mb(r.Memory.PeakGcHeap)} | {r.Flusher} | {Mb(r.RssBefore)} → {(r.PeakRss is { } p ? Mb(p) : "n/a")} | {r.LoadAverage} |");
        }

        return sb.ToString();
    }

    private static string LimitedTable(List<LimitedRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| provider | groups = calls | injected latency | limit (flusher = emulator) | flush time (claim + send) | achieved calls/s (whole flush) | % of limit | calls/s in send phase | % of limit | 429s received | other rejections | totals exact | load avg (1/5/15 min) |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
        foreach (var r in rows)
        {
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Provider} | {r.Groups:N0} = {r.Check.Accepted:N0} | {r.LatencyMs} ms | {r.Rate}/s | {r.Elapsed.TotalSeconds:N1} s ({r.ClaimPhase.TotalSeconds:N2} + {r.SendPhase.TotalSeconds:N1}) | {r.CallsPerSecond:N1} | {r.CallsPerSecond / r.Rate:P1} | {r.SendCallsPerSecond:N1} | {r.SendCallsPerSecond / r.Rate:P1} | {r.Rejected429} | {r.Rejections} | {r.Check.TotalsSummary} | {r.LoadAverage} |");
        }

        return sb.ToString();
    }

    private static string Mb(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("N0", CultureInfo.InvariantCulture) + " MB";


    private sealed class Settings
    {
        public int Events { get; init; }

        public int Customers { get; init; }

        public int Concurrency { get; init; }

        public int? ClaimBatch { get; init; }

        public int? SendBatch { get; init; }

        /// <summary>How the throughput flush sends (<c>--transport v1|v2stream</c>, default v1, the library's default).</summary>
        public FlushTransport Transport { get; init; }

        /// <summary><c>Flush:MarkBatchSize</c> for the throughput flush (<c>--mark-batch</c>; null: the library's default).</summary>
        public int? MarkBatch { get; init; }

        /// <summary>
        /// Whether the throughput flush's events get the rollups the recorder would have kept (default), or none
        /// (<c>--without-rollups</c>, as the benchmark ran before 2026-12-03: the marks then insert every row).
        /// </summary>
        public bool Rollups { get; init; }

        public string Layout { get; init; } = "interleaved";

        public int LimitedGroups { get; init; }

        public int LimitedRate { get; init; }

        public int LatencyMs { get; init; }

        public string Emulator { get; init; } = "child";

        public string Flusher { get; init; } = "child";
    }

    private sealed record Check(long Events, long ExpectedEvents, long Unreported, int Reports, int Sent, int Groups, int Accepted, int Flagged, int Keys, int Mismatched, int Sampled, int SampleMismatched)
    {
        /// <summary>How many <c>usage_hourly</c> rows there are after the flush.</summary>
        public long HourlyRows { get; init; }

        /// <summary>Whether the rollups acknowledge every event exactly once (see <see cref="VerifyAsync"/>).</summary>
        public bool RollupsOk { get; init; }

        public bool Ok => Events == ExpectedEvents && Unreported == 0 && Reports == Sent && Accepted == Sent && Flagged == 0 && Mismatched == 0 && SampleMismatched == 0 && RollupsOk;

        public string TotalsSummary =>
            (Mismatched == 0 && SampleMismatched == 0 && Unreported == 0 && Flagged == 0 && Accepted == Sent && RollupsOk ? "yes" : "**NO**") +
            $" ({Keys - Mismatched:N0}/{Keys:N0} keys; {Sampled - SampleMismatched}/{Sampled} sampled; {HourlyRows:N0} hourly rows acknowledged" + (RollupsOk ? "" : " **wrongly**") + (Unreported > 0 ? $"; {Unreported:N0} events unreported" : "") + (Flagged > 0 ? $"; {Flagged} flagged" : "") + ")";
    }

    private sealed record ThroughputRow(string Provider, int Events, int Customers, string Layout, TimeSpan Elapsed, FlushResult Result, Check Check, MemoryPeak Memory, long? PeakRss, string LoadAverage, TimeSpan ClaimPhase, TimeSpan SendPhase)
    {
        public long RssBefore { get; init; }

        public string Flusher { get; init; } = "child";

        public double EventsPerSecond => Result.EventsClaimed / Elapsed.TotalSeconds;

        public bool Ok => Check.Ok;
    }

    private sealed record LimitedRow(string Provider, int Groups, int Rate, int LatencyMs, TimeSpan Elapsed, FlushResult Result, Check Check, long Rejected429, string Rejections, string LoadAverage, TimeSpan ClaimPhase, TimeSpan SendPhase)
    {
        public double CallsPerSecond => Check.Accepted / Elapsed.TotalSeconds;

        public double SendCallsPerSecond => Check.Accepted / SendPhase.TotalSeconds;

        public bool Ok => Check.Ok && Rejected429 == 0;
    }
}
