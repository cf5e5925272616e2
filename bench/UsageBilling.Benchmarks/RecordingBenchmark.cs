using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using UsageBilling.EntityFrameworkCore.Entities;

namespace UsageBilling.Benchmarks;

/// <summary>
/// <c>recording</c>: durable events/s through the real <see cref="IUsageRecorder"/> (group commit)
/// at 1, 8 and 64 concurrent callers, against (a) a naive baseline — one EF Core SaveChanges per
/// event on its own DbContext, same concurrency — and (b) the practical upper bound — raw multi-row
/// INSERTs of the same rows on one connection, <c>--raw-batch</c> rows per transaction. Every run
/// gets a fresh migrated database with its users; its row count is checked afterwards.
/// </summary>
public static class RecordingBenchmark
{
    private const string Meter = "ai_messages";
    private const int UserCount = 1000;

    public static async Task<int> RunAsync(IReadOnlyList<string> rawArgs)
    {
        var args = new BenchArgs(rawArgs);
        var events = args.Int("events") ?? 20_000;
        var naiveEventsOption = args.Int("naive-events");
        var providerName = args.String("provider") ?? "both";
        var callersGiven = args.IntList("callers");
        var callerCounts = callersGiven ?? [1, 8, 64];
        var writers = args.Int("writers");
        var batchSize = args.Int("batch-size");
        var rawBatch = args.Int("raw-batch") ?? 1000;
        var rawSql = args.String("raw-sql") ?? "unnest";
        var rawStatement = args.Int("raw-statement-rows") ?? 10;
        var skipNaive = args.Flag("skip-naive");
        var skipRaw = args.Flag("skip-raw");
        var enforcement = args.Flag("enforcement");
        var rounds = args.Int("rounds") ?? 2;
        var firstTouch = args.Flag("first-touch");
        args.EnsureAllRead();

        BenchProvider[] providers = providerName switch
        {
            "sqlite" => [BenchProvider.Sqlite],
            "postgres" or "pg" => [BenchProvider.Postgres],
            "both" => [BenchProvider.Postgres, BenchProvider.Sqlite],
            _ => throw new ArgumentException($"--provider must be sqlite, postgres or both, was '{providerName}'."),
        };
        if (rawSql is not ("values" or "unnest"))
        {
            throw new ArgumentException($"--raw-sql must be values or unnest, was '{rawSql}'.");
        }

        Console.WriteLine($"# recording benchmark — {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, .NET {Environment.Version}, " +
            $"{(Debugger.IsAttached ? "debugger attached, " : "")}{BenchInfo.BuildConfiguration}");
        Console.WriteLine($"# events={events}, users={UserCount}, meter={Meter}, half with idempotency keys, writers={writers?.ToString(CultureInfo.InvariantCulture) ?? "default"}, " +
            $"max batch={batchSize?.ToString(CultureInfo.InvariantCulture) ?? "default"}, raw={rawSql} x{rawBatch} rows/tx (SQLite: {rawStatement} rows/statement)");
        Console.WriteLine($"# load average at start: {BenchInfo.LoadAverage()}");

        if (enforcement)
        {
            return await RunEnforcementAsync(providers, events, callersGiven ?? [64], rounds, firstTouch);
        }

        var rows = new List<Row>();
        foreach (var provider in providers)
        {
            // The naive baseline pays one durable commit (fsync) per event: keep its N small by default.
            var naiveEvents = naiveEventsOption ?? Math.Min(events, 5_000);
            foreach (var callers in callerCounts)
            {
                var recorder = await MeasureAsync(provider, "recorder", events, callers, o =>
                {
                    o.Recording.MaxConcurrentBatches = writers;
                    if (batchSize is { } b)
                    {
                        o.Recording.MaxBatchSize = b;
                    }
                }, RecorderDriver);
                var naive = skipNaive ? null : await MeasureAsync(provider, "naive", naiveEvents, callers, null, NaiveDriver);
                var raw = skipRaw ? null : await MeasureAsync(provider, "raw", events, 1, null, (db, c, n, warm) => RawDriver(db, n, warm, rawBatch, rawSql, rawStatement));
                var row = new Row(provider, callers, recorder, naive, raw);
                rows.Add(row);
                Console.WriteLine($"  -> {row.Provider} x{callers}: recorder {Rate(recorder)}, naive {Rate(naive)}, raw {Rate(raw)}");
            }
        }

        Console.WriteLine($"# load average at end: {BenchInfo.LoadAverage()}");
        Console.WriteLine();
        Console.WriteLine(Table(rows));
        return 0;
    }


    /// <summary>
    /// <c>recording --enforcement</c>: the recorder with spend control on (every user on a plan with a
    /// hard limit, a spend limit and three alert thresholds that the run crosses) against the same
    /// recorder with <c>Limits:Enforce=false</c>, same users, same workload, alternating rounds. With
    /// <c>--first-touch</c> the warm-up reaches only half the users, so the other half record the first
    /// event of their period (and open its totals row) during the timed run.
    /// </summary>
    private static async Task<int> RunEnforcementAsync(BenchProvider[] providers, int events, IReadOnlyList<int> callerCounts, int rounds, bool firstTouch)
    {
        static void Plan(UsageBillingOptions o, bool enforce)
        {
            var plan = new PlanDefinition { DisplayName = "Bench", MonthlyPrice = 10m };
            plan.Meters[Meter] = new PlanMeterPrice { Included = 10, UnitPrice = 0.01m, HardLimit = 1_000_000, SpendLimit = 5_000m };
            o.Plans["bench"] = plan;
            foreach (var p in new[] { 50m, 80m, 100m })
            {
                o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfIncluded, Value = p });
            }

            o.Limits.Enforce = enforce;
        }

        var rows = new List<(BenchProvider Provider, int Callers, List<Measurement> On, List<Measurement> Off)>();
        foreach (var provider in providers)
        {
            foreach (var callers in callerCounts)
            {
                var on = new List<Measurement>();
                var off = new List<Measurement>();
                for (var round = 0; round < rounds; round++)
                {
                    // Warm-up: one event per user, so the period rows exist (a month's steady state; the
                    // first event of each account·meter·period pays one more round trip to seed its row).
                    var warmup = firstTouch ? UserCount / 2 : UserCount;
                    off.Add(await MeasureAsync(provider, "enf-off", events, callers, o => Plan(o, false), RecorderDriver, "bench", warmup));
                    on.Add(await MeasureAsync(provider, "enf-on", events, callers, o => Plan(o, true), RecorderDriver, "bench", warmup));
                }

                rows.Add((provider, callers, on, off));
            }
        }

        Console.WriteLine($"# load average at end: {BenchInfo.LoadAverage()}");
        Console.WriteLine();
        Console.WriteLine("| provider | callers | enforcement off ev/s (rounds) | enforcement on ev/s (rounds) | on/off (means) | on batches (avg size) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (provider, callers, on, off) in rows)
        {
            static string Runs(List<Measurement> m) => string.Join(" / ", m.Select(x => x.EventsPerSecond.ToString("N0", CultureInfo.InvariantCulture)));
            var ratio = on.Average(m => m.EventsPerSecond) / off.Average(m => m.EventsPerSecond);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {(provider == BenchProvider.Postgres ? "PostgreSQL" : "SQLite")} | {callers} | {Runs(off)} | {Runs(on)} | **{ratio:0.00}×** | {on[^1].Batches} ({on[^1].AverageBatch:0.0}) |"));
        }

        return 0;
    }

    /// <summary>Runs one method on a fresh database: warm-up, timed run, row-count check.</summary>
    private static async Task<Measurement> MeasureAsync(BenchProvider provider, string method, int events, int callers, Action<UsageBillingOptions>? configure, Driver driver, string? customerPlan = null, int? warmupEvents = null)
    {
        await using var db = await BenchDatabase.CreateAsync(provider, UserCount, configure, customerPlan);
        var warmup = warmupEvents ?? Math.Min(500, Math.Max(10, events / 20));
        await driver(db, callers, Workload.Warmup(warmup), null);

        using var batches = new BatchSizeListener();
        var stats = new RunStats();
        var clock = Stopwatch.StartNew();
        await driver(db, callers, Workload.Timed(events), stats);
        clock.Stop();

        var count = await db.CountEventsAsync();
        var expected = warmup + events;
        if (count != expected)
        {
            throw new InvalidOperationException($"{provider} {method} x{callers}: usage_events holds {count} rows, expected {expected} ({warmup} warm-up + {events}). The run lost or duplicated rows.");
        }

        if (stats.DistinctIds is { } distinct && distinct != events)
        {
            throw new InvalidOperationException($"{provider} {method} x{callers}: RecordAsync returned {distinct} distinct ids for {events} events.");
        }

        var m = new Measurement(events, clock.Elapsed, batches.Count, batches.Count == 0 ? 0 : (double)batches.Sum / batches.Count, batches.Max);
        Console.WriteLine($"{provider,-8} {method,-8} callers={callers,-3} n={events,-7} {m.EventsPerSecond,10:N0} ev/s  {m.Elapsed.TotalSeconds,6:N2}s" +
            (m.Batches > 0 ? $"  batches={m.Batches} avg={m.AverageBatch:N1} max={m.MaxBatch}" : "") + $"  rows verified={count}");
        return m;
    }

    private delegate Task Driver(BenchDatabase db, int callers, Workload workload, RunStats? stats);

    /// <summary>The real thing: every caller awaits <see cref="IUsageRecorder.RecordAsync"/>, which returns after commit.</summary>
    private static async Task RecorderDriver(BenchDatabase db, int callers, Workload workload, RunStats? stats)
    {
        var recorder = db.Services.GetRequiredService<IUsageRecorder>();
        var ids = new Guid[workload.Count];
        await Callers.RunAsync(callers, workload.Count, async i =>
        {
            ids[i] = await recorder.RecordAsync(workload.User(db, i), Meter, 1, workload.Key(i)).ConfigureAwait(false);
        });
        if (stats is not null)
        {
            stats.DistinctIds = ids.Distinct().Count();
        }
    }

    /// <summary>Naive: one DbContext and one SaveChanges (one autocommit INSERT) per event.</summary>
    private static Task NaiveDriver(BenchDatabase db, int callers, Workload workload, RunStats? stats) =>
        Callers.RunAsync(callers, workload.Count, async i =>
        {
            var now = DateTimeOffset.UtcNow;
            await using var context = db.CreateContext();
            context.UsageEvents.Add(new UsageEvent
            {
                Id = Guid.CreateVersion7(now),
                UserId = workload.User(db, i),
                Meter = Meter,
                Quantity = 1,
                OccurredAt = now,
                IdempotencyKey = workload.Key(i),
                CreatedAt = now,
            });
            await context.SaveChangesAsync().ConfigureAwait(false);
        });

    /// <summary>Raw: one connection, multi-row INSERTs, one transaction per <paramref name="rowsPerTransaction"/> rows.</summary>
    private static async Task RawDriver(BenchDatabase db, Workload workload, RunStats? stats, int rowsPerTransaction, string sql, int rowsPerStatement)
    {
        _ = stats;
        await using var writer = RawInserter.Open(db, sql, rowsPerStatement);
        var batch = new List<RawRow>(rowsPerTransaction);
        for (var i = 0; i < workload.Count; i++)
        {
            var now = DateTimeOffset.UtcNow;
            batch.Add(new RawRow(Guid.CreateVersion7(now), workload.User(db, i), Meter, 1, now, workload.Key(i), now));
            if (batch.Count == rowsPerTransaction || i == workload.Count - 1)
            {
                await writer.InsertAsync(batch).ConfigureAwait(false);
                batch.Clear();
            }
        }
    }

    private static string Rate(Measurement? m) => m is null ? "-" : m.EventsPerSecond.ToString("N0", CultureInfo.InvariantCulture) + " ev/s";

    private static string Table(List<Row> rows)
    {
        static string N(Measurement? m) => m is null ? "–" : m.EventsPerSecond.ToString("N0", CultureInfo.InvariantCulture);
        static string Ratio(Measurement a, Measurement? b) => b is null ? "–" : (a.EventsPerSecond / b.EventsPerSecond).ToString("0.00", CultureInfo.InvariantCulture) + "×";
        var sb = new StringBuilder();
        sb.AppendLine("| provider | callers | recorder ev/s | naive ev/s | raw ev/s | recorder/naive | recorder/raw | recorder batches (avg size) | N recorder / naive / raw |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {(r.Provider == BenchProvider.Postgres ? "PostgreSQL" : "SQLite")} | {r.Callers} | {N(r.Recorder)} | {N(r.Naive)} | {N(r.Raw)} | ");
            sb.Append(CultureInfo.InvariantCulture, $"{Ratio(r.Recorder, r.Naive)} | {Ratio(r.Recorder, r.Raw)} | {r.Recorder.Batches} ({r.Recorder.AverageBatch:0.0}) | ");
            sb.AppendLine(CultureInfo.InvariantCulture, $"{r.Recorder.Events} / {r.Naive?.Events.ToString(CultureInfo.InvariantCulture) ?? "–"} / {r.Raw?.Events.ToString(CultureInfo.InvariantCulture) ?? "–"} |");
        }

        return sb.ToString();
    }

    private sealed record Row(BenchProvider Provider, int Callers, Measurement Recorder, Measurement? Naive, Measurement? Raw);

    private sealed record Measurement(int Events, TimeSpan Elapsed, long Batches, double AverageBatch, long MaxBatch)
    {
        public double EventsPerSecond => Events / Elapsed.TotalSeconds;
    }

    private sealed class RunStats
    {
        public int? DistinctIds { get; set; }
    }

    /// <summary>
    /// The events of one run: event i belongs to user i mod 1000; even events carry a unique
    /// idempotency key, odd ones none. Warm-up keys never collide with timed ones.
    /// </summary>
    private sealed class Workload(int count, string keyPrefix)
    {
        public int Count { get; } = count;

        public static Workload Warmup(int count) => new(count, "warm-");

        public static Workload Timed(int count) => new(count, "req-");

        public Guid User(BenchDatabase db, int i) => db.Users[i % db.Users.Count];

        public string? Key(int i) => i % 2 == 0 ? keyPrefix + i.ToString(CultureInfo.InvariantCulture) : null;
    }

    /// <summary>Listens to the recorder's batch-size histogram (how many events each transaction carried).</summary>
    private sealed class BatchSizeListener : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _count;
        private long _sum;
        private long _max;

        public BatchSizeListener()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == UsageBillingMetrics.Name && instrument.Name == "usagebilling.record.batch_size")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<int>((_, value, _, _) =>
            {
                Interlocked.Increment(ref _count);
                Interlocked.Add(ref _sum, value);
                long seen;
                while (value > (seen = Interlocked.Read(ref _max)) && Interlocked.CompareExchange(ref _max, value, seen) != seen)
                {
                }
            });
            _listener.Start();
        }

        public long Count => Interlocked.Read(ref _count);

        public long Sum => Interlocked.Read(ref _sum);

        public long Max => Interlocked.Read(ref _max);

        public void Dispose() => _listener.Dispose();
    }
}

/// <summary>N concurrent callers, each looping until the shared count of events is done.</summary>
internal static class Callers
{
    public static Task RunAsync(int callers, int events, Func<int, Task> call)
    {
        var next = -1;
        return Task.WhenAll(Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < events)
            {
                await call(i).ConfigureAwait(false);
            }
        })));
    }
}
