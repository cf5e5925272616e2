using UsageBilling.Benchmarks;

// One subcommand per benchmark, one file per benchmark. Add new ones to the switch and to Usage.
var command = args.Length > 0 ? args[0] : "";
var rest = args.Length > 0 ? args[1..] : [];
try
{
    return command switch
    {
        "recording" => await RecordingBenchmark.RunAsync(rest),
        "flush" => await FlushBenchmark.RunAsync(rest),
        "flush-worker" => await FlushBenchmark.RunWorkerAsync(rest),
        "transports" => await FlushBenchmark.RunTransportsAsync(rest),
        "summary" => await SummaryBenchmark.RunAsync(rest),
        "storage" => await StorageBenchmark.RunAsync(rest),
        "prune" => await StorageBenchmark.RunPruneAsync(rest),
        _ => Usage(),
    };
}
catch (ArgumentException ex)
{
    await Console.Error.WriteLineAsync(ex.Message);
    return Usage();
}

static int Usage()
{
    Console.Error.WriteLine("""
        usage: UsageBilling.Benchmarks <benchmark> [options]

        benchmarks:
          recording   durable RecordAsync throughput vs. naive EF SaveChanges vs. raw multi-row INSERT
                      [--events N] [--naive-events N] [--provider sqlite|postgres|both]
                      [--callers 1,8,64] [--writers K] [--batch-size B] [--raw-batch R]
                      [--raw-sql values|unnest] [--raw-statement-rows S] [--skip-naive] [--skip-raw]
          flush       FlushOnceAsync against the Stripe emulator: events/s, calls vs. groups, totals, peak memory;
                      then achieved calls/s under injected latency and a rate limit, 429s
                      [--events N] [--customers C] [--provider postgres|sqlite|both] [--layout interleaved|clustered]
                      [--concurrency K] [--claim-batch B] [--send-batch S] [--limited-groups G] [--rate R]
                      [--latency-ms L] [--emulator child|inprocess] [--flusher child|inprocess]
                      [--transport v1|v2stream] [--mark-batch M] [--without-rollups]
                      [--skip-throughput] [--skip-limited]
                      (the throughput flush runs in a child process of its own by default, as an app's flusher
                      does, so its memory is not the harness's: flush-worker is that process's entry point)
          transports  one backlog flushed over v1 meter events and over the v2 meter event stream, in one run, with
                      latency on every request and Stripe's limits (live: v1 1000/s + 1 per customer·meter, v2 10000/s;
                      test: 25/s each):
                      requests/s and meter events/s of each, v2/v1
                      [--groups G] [--latency-ms L] [--concurrency K] [--mark-batch M] [--limits live|test]
                      [--provider postgres|sqlite|both]
          summary     usage-page read (GetCurrentPeriodAsync) p50/p95/p99 for a customer with 1M events in a 10M-row
                      PostgreSQL table, vs. one aggregate over usage_events; both must agree
                      [--events N] [--customer-events M] [--users U] [--iterations I] [--baseline-iterations B] [--recorded R]
          storage     bytes per event (usage_events + indexes + rollups) over months of acknowledged usage, then
                      db prune: its time, bytes after, a month dropped as its own table, reads and answers before/after
                      [--events N] [--users U] [--days D] [--keep K] [--iterations I] [--sample S]
          prune       one month of M acknowledged events removed by the batched deletes against the next month's, of
                      as many, removed by dropping its partition: time and events/s of each, and one recording
                      caller's latency meanwhile [--month-events M] [--users U] [--kept-percent P]
        """);
    return 2;
}
