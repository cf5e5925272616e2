using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.Benchmarks;

/// <summary>
/// <c>transports</c>: the same backlog flushed once over v1 meter events and once over the v2 meter event stream, in one
/// run, against an emulator that adds the same latency to every request of either transport and enforces Stripe's
/// limits (<c>--limits live</c>, default: v1 1 000 calls/s on meter events and one call in flight per customer·meter,
/// v2 10 000 stream requests/s; <c>--limits test</c>: 25/s for both), the flusher limited to the same rates. Reports Stripe requests/s and meter events (reports)/s of each,
/// and v2 / v1 within the run.
/// </summary>
public static partial class FlushBenchmark
{

    public static async Task<int> RunTransportsAsync(IReadOnlyList<string> rawArgs)
    {
        var args = new BenchArgs(rawArgs);
        var groups = args.Int("groups") ?? 20_000;
        var latencyMs = args.Int("latency-ms") ?? 100;
        var concurrency = args.Int("concurrency") ?? 128;
        var markBatch = args.Int("mark-batch");
        var limits = args.String("limits") ?? "live";
        // Stripe's limits: live mode 1 000 meter-event calls/s and 10 000 stream requests/s; test mode shares the
        // basic 25 requests/s (STRIPE.md; for the stream an assumption, Stripe documents no test-mode figure).
        var (v1Limit, v2Limit) = limits switch
        {
            "live" => (1_000, 10_000),
            "test" => (25, 25),
            _ => throw new ArgumentException($"--limits must be live or test, was '{limits}'."),
        };
        var providerName = args.String("provider") ?? "both";
        args.EnsureAllRead();
        BenchProvider[] providers = providerName switch
        {
            "sqlite" => [BenchProvider.Sqlite],
            "postgres" or "pg" => [BenchProvider.Postgres],
            "both" => [BenchProvider.Postgres, BenchProvider.Sqlite],
            _ => throw new ArgumentException($"--provider must be sqlite, postgres or both, was '{providerName}'."),
        };

        Console.WriteLine($"# transports benchmark — {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, .NET {Environment.Version}, {BenchInfo.BuildConfiguration}");
        Console.WriteLine($"# {groups} reports (customer·meter groups, 2 usage events each), {latencyMs} ms added to every meter-event request, MaxConcurrentCalls={concurrency}, SendBatchSize=10000, MarkBatchSize={markBatch?.ToString(CultureInfo.InvariantCulture) ?? "default (50)"}");
        Console.WriteLine($"# {limits}-mode limits (emulator = flusher): v1 {v1Limit} calls/s + one in flight per customer·meter; v2 stream {v2Limit} requests/s");
        Console.WriteLine($"# load average at start: {BenchInfo.LoadAverage()}");

        // Stripe's limits, in the emulator's own options (its admin API sets only the account-wide one).
        await using var emulator = await BenchEmulator.StartChildAsync(
            "--MeterEventRateLimitPerSecond", v1Limit.ToString(CultureInfo.InvariantCulture),
            "--MeterEventStreamRateLimitPerSecond", v2Limit.ToString(CultureInfo.InvariantCulture));
        Console.WriteLine($"# emulator at {emulator.ApiBase} (child process pid {emulator.ChildPid})");

        var rows = new List<TransportRow>();
        foreach (var provider in providers)
        {
            foreach (var transport in new[] { FlushTransport.V1, FlushTransport.V2Stream })
            {
                rows.Add(await RunTransportAsync(provider, transport, emulator, groups, latencyMs, concurrency, markBatch, transport == FlushTransport.V1 ? v1Limit : v2Limit));
            }
        }

        Console.WriteLine($"# load average at end: {BenchInfo.LoadAverage()}");
        Console.WriteLine();
        Console.WriteLine(TransportTable(rows));
        return rows.All(r => r.Ok) ? 0 : 1;
    }

    private static async Task<TransportRow> RunTransportAsync(BenchProvider provider, FlushTransport transport, BenchEmulator emulator, int groups, int latencyMs, int concurrency, int? markBatch, int limit)
    {
        var name = provider == BenchProvider.Postgres ? "PostgreSQL" : "SQLite";
        var customerCount = Math.Max(1, groups / Meters.Length);
        groups = customerCount * Meters.Length;
        var events = groups * 2;
        Console.WriteLine($"## {name} {transport}: {groups} reports ({events} usage events), {latencyMs} ms latency");
        await emulator.ResetWithMetersAsync(Meters);
        var customers = await emulator.CreateCustomersAsync(customerCount);
        var db = await BenchDatabase.CreateAsync(provider, customerCount, ConfigureMeters);
        try
        {
            await AddBillingCustomersAsync(db, customers);
            var (periodStart, periodEnd) = await InsertEventsAsync(db, events, "interleaved");
            var stream = transport == FlushTransport.V2Stream;
            await using var flusher = BuildFlusher(db.Provider, db.ConnectionString, emulator.ApiBase, o =>
            {
                o.Transport = transport;
                o.RequestsPerSecond = limit;
                o.MaxConcurrentCalls = concurrency;
                o.ClaimBatchSize = Math.Max(o.ClaimBatchSize, events);
                o.SendBatchSize = 10_000;
                if (markBatch is { } m)
                {
                    o.MarkBatchSize = m;
                }
            });

            // Latency on every request of the transport (more uses than requests; cleared afterwards).
            var path = stream ? "/v2/billing/meter_event_stream" : "/v1/billing/meter_events";
            await emulator.Admin.InjectFaultAsync(new FaultSpec(path, FaultKind.Delay, Count: groups * 2, DelayMilliseconds: latencyMs, Method: "POST"));
            await emulator.Admin.SetConcurrencyEnforcementAsync(true);
            var rejectionsBefore = await emulator.Admin.GetRejectionCountsAsync();
            using var phases = new PhaseListener();
            var clock = Stopwatch.StartNew();
            var result = await flusher.GetRequiredService<IUsageFlusher>().FlushOnceAsync();
            clock.Stop();
            var rejectionsAfter = await emulator.Admin.GetRejectionCountsAsync();
            await emulator.Admin.ClearFaultsAsync();
            await emulator.Admin.SetConcurrencyEnforcementAsync(false);
            var rejected = string.Join(", ", rejectionsAfter.Where(kv => kv.Value != rejectionsBefore.GetValueOrDefault(kv.Key)).Select(kv => $"{kv.Key}={kv.Value - rejectionsBefore.GetValueOrDefault(kv.Key)}"));
            var check = await VerifyAsync(db, emulator, periodStart, periodEnd, events);
            var row = new TransportRow(name, transport, groups, latencyMs, limit, clock.Elapsed, phases.ClaimPhase, phases.SendPhase, phases.Calls, result, check, rejected.Length == 0 ? "none" : rejected, BenchInfo.LoadAverage());
            Console.WriteLine($"   flushed in {clock.Elapsed.TotalSeconds:N1} s (claim {phases.ClaimPhase.TotalSeconds:N2} s, send+mark {phases.SendPhase.TotalSeconds:N1} s): {phases.Calls} Stripe requests, sent {result.ReportsSent}, retried {result.ReportsRetried}; rejections {row.Rejections}");
            Console.WriteLine($"   -> {row.RequestsPerSecond:N1} requests/s, {row.ReportsPerSecond:N0} meter events/s (whole flush), totals {check.TotalsSummary}");
            return row;
        }
        finally
        {
            await DropAsync(db);
        }
    }

    private static string TransportTable(List<TransportRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| provider | transport | reports = meter events accepted | Stripe requests | latency | limit (flusher = emulator) | flush time (claim + send) | requests/s | meter events/s | usage events/s | meter events/s vs V1 | rejections | totals exact | load avg (1/5/15 min) |");
        sb.AppendLine("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|");
        foreach (var r in rows)
        {
            var baseline = rows.FirstOrDefault(b => b.Provider == r.Provider && b.Transport == FlushTransport.V1);
            var ratio = baseline is null ? "" : (r.ReportsPerSecond / baseline.ReportsPerSecond).ToString("N1", CultureInfo.InvariantCulture) + "×";
            var limit = r.Transport == FlushTransport.V1 ? $"{r.Limit:N0} calls/s, 1 per customer·meter" : $"{r.Limit:N0} requests/s";
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Provider} | {r.Transport} | {r.Groups:N0} = {r.Check.Accepted:N0} | {r.Requests:N0} | {r.LatencyMs} ms | {limit} | {r.Elapsed.TotalSeconds:N1} s ({r.ClaimPhase.TotalSeconds:N2} + {r.SendPhase.TotalSeconds:N1}) | {r.RequestsPerSecond:N1} | {r.ReportsPerSecond:N0} | {r.ReportsPerSecond * 2:N0} | {ratio} | {r.Rejections} | {r.Check.TotalsSummary} | {r.LoadAverage} |");
        }

        return sb.ToString();
    }

    private sealed record TransportRow(
        string Provider, FlushTransport Transport, int Groups, int LatencyMs, int Limit, TimeSpan Elapsed, TimeSpan ClaimPhase, TimeSpan SendPhase, long Requests,
        FlushResult Result, Check Check, string Rejections, string LoadAverage)
    {
        public double RequestsPerSecond => Requests / Elapsed.TotalSeconds;

        public double ReportsPerSecond => Check.Accepted / Elapsed.TotalSeconds;

        public bool Ok => Check.Ok && Result.ReportsRetried == 0;
    }
}
