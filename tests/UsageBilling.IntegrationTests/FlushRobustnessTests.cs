using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Stripe.Billing;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// The flusher under slow Stripe, kill -9 and several instances (issue 12), on both databases: leases that cannot
/// lapse mid-send, acknowledgements committed as they arrive, no deadlocks, one report per customer·meter·period
/// however many flushers claim, and a configuration that disagrees with the data refused.
/// </summary>
public abstract class FlushRobustnessTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    private const string MeterEvents = "/v1/billing/meter_events";

    /// <summary>Waves of backlog the four worker processes race over; USAGEBILLING_FLUSH_RACE_RUNS changes it.</summary>
    private static int Waves => int.TryParse(Environment.GetEnvironmentVariable("USAGEBILLING_FLUSH_RACE_RUNS"), out var n) ? n : 20;

    [Fact]
    public async Task Flush_FourWorkerProcessesShortLeaseSlowStripe_EachReportSentByOneFlusherAndNoDeadlock()
    {
        // Workers run on the wall clock; bring the shared fake clock (app and emulator) to it.
        Time.SetUtcNow(DateTimeOffset.UtcNow);
        var customers = new List<(Guid User, string Customer)>();
        for (var i = 0; i < 20; i++)
        {
            customers.Add(await NewCustomerAsync());
        }

        // 150 ms on every meter event; a 1 s lease; a round of 40 keys at 4 calls at a time lasts about 1.5 s.
        await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEvents, FaultKind.Delay, Count: 1_000_000, DelayMilliseconds: 150, Method: "POST"), Ct);
        var workers = new List<Worker>();
        try
        {
            for (var i = 1; i <= 4; i++)
            {
                workers.Add(await StartWorkerAsync($"id={i}", "lease-ms=1000", "timeout-ms=600", "retries=0", "send-batch=40", "concurrency=4", "claim-batch=25", "rps=1000"));
            }

            var clock = Stopwatch.StartNew();
            for (var wave = 0; wave < Waves; wave++)
            {
                foreach (var (user, _) in customers)
                {
                    await Recorder.RecordAsync(user, "ai_messages", 1 + (wave % 4), cancellationToken: Ct);
                    await Recorder.RecordAsync(user, "api_calls", 2, cancellationToken: Ct);
                }

                await WaitUntilAllSentAsync(TimeSpan.FromSeconds(90), workers);
            }

            TestContext.Current.SendDiagnosticMessage($"{Waves} waves of 40 keys in {clock.Elapsed.TotalSeconds:N1} s");
        }
        finally
        {
            foreach (var worker in workers)
            {
                worker.Kill();
            }
        }

        var errors = workers.SelectMany(w => w.Errors).ToList();
        Assert.DoesNotContain(errors, e => e.Contains("40P01", StringComparison.Ordinal) || e.Contains("deadlock", StringComparison.OrdinalIgnoreCase));

        // Each report went out from one flusher only, unless its first attempt failed (a timeout) and another retried it.
        await using var db = Host.CreateContext();
        var reports = await db.UsageReports.AsNoTracking().ToDictionaryAsync(r => r.Id.ToString(), Ct);
        var requests = await Emulator.Admin.GetMeterEventRequestsAsync(Ct);
        var byIdentifier = requests.GroupBy(r => r.Identifier).ToList();
        Assert.Equal(reports.Count, byIdentifier.Count);
        var shared = byIdentifier.Where(g => g.Count() > 1).ToList();
        Assert.All(shared, g => Assert.True(reports[g.Key].Attempts > 1, $"report {g.Key} was sent by {g.Count()} flushers although its first attempt succeeded; worker stderr: {string.Join('\n', errors.Take(40))}"));
        Assert.All(reports.Values, r => Assert.Equal(UsageReportStatus.Sent, r.Status));
        var accepted = await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct);
        Assert.Equal(reports.Count, accepted.Count);
        await AssertTotalsMatchAsync();
        TestContext.Current.SendDiagnosticMessage($"{reports.Count} reports, {requests.Sum(r => r.Requests)} meter-event requests, {shared.Count} retried by another flusher after a failed attempt, worker stderr lines: {errors.Count}: {string.Join(" | ", errors.Take(10))}");
    }

    [Fact]
    public async Task Flush_WorkerKilledMidRound_AnotherFlusherSendsItsReportsAtOnceNotAfterTheLease()
    {
        Time.SetUtcNow(DateTimeOffset.UtcNow);
        for (var i = 0; i < 30; i++)
        {
            var (user, _) = await NewCustomerAsync();
            await Recorder.RecordAsync(user, "ai_messages", 1 + i, cancellationToken: Ct);
        }

        await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEvents, FaultKind.Delay, Count: 1_000_000, DelayMilliseconds: 300, Method: "POST"), Ct);

        // A two-minute lease over all 30 keys, sent one at a time.
        var worker = await StartWorkerAsync("lease-ms=120000", "timeout-ms=2000", "retries=0", "send-batch=100", "concurrency=1");
        await WaitForAcceptedAsync(3, worker);
        worker.Kill();

        // The worker claimed on the wall clock: bring the fake one up to it (the worker's lease still has ~2 minutes to run).
        Time.SetUtcNow(DateTimeOffset.UtcNow);
        await using (var db = Host.CreateContext())
        {
            var leased = await db.UsageReports.CountAsync(r => r.Status == UsageReportStatus.Pending && r.LeaseExpiresAt > Time.GetUtcNow().AddSeconds(60), Ct);
            Assert.True(leased > 10, $"only {leased} reports were still under the killed worker's lease");
        }

        await Emulator.Admin.ClearFaultsAsync(Ct);
        var clock = Stopwatch.StartNew();
        var result = await Flusher.FlushOnceAsync(Ct);   // no clock advance: the dead worker's lease has not lapsed
        clock.Stop();

        Assert.True(result.ReportsSent > 10, $"sent {result.ReportsSent}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
        await using (var db = Host.CreateContext())
        {
            Assert.Equal(30, await db.UsageReports.CountAsync(r => r.Status == UsageReportStatus.Sent, Ct));
        }

        await AssertTotalsMatchAsync();
        TestContext.Current.SendDiagnosticMessage($"the killed worker's {result.ReportsSent} remaining reports sent in {clock.Elapsed.TotalSeconds:N2} s (its lease ran 120 s)");
    }

    [Fact]
    public async Task Flush_WorkerKilledInSecondHalfOfRound_AcksOfFirstHalfSurvive()
    {
        Time.SetUtcNow(DateTimeOffset.UtcNow);
        for (var i = 0; i < 20; i++)
        {
            var (user, _) = await NewCustomerAsync();
            await Recorder.RecordAsync(user, "ai_messages", 1 + i, cancellationToken: Ct);
        }

        await Emulator.Admin.InjectFaultAsync(new FaultSpec(MeterEvents, FaultKind.Delay, Count: 1_000_000, DelayMilliseconds: 200, Method: "POST"), Ct);

        // One round of 20 reports, one call at a time; killed once more than half were accepted.
        var worker = await StartWorkerAsync("lease-ms=120000", "timeout-ms=2000", "retries=0", "send-batch=100", "concurrency=1");
        await WaitForAcceptedAsync(12, worker);
        var acceptedBeforeKill = (await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count;
        worker.Kill();
        var acceptedAtKill = (await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count;
        Assert.True(acceptedAtKill < 20, "the worker finished its round before it was killed");

        List<Guid> sentAtKill;
        await using (var db = Host.CreateContext())
        {
            sentAtKill = await db.UsageReports.Where(r => r.Status == UsageReportStatus.Sent).Select(r => r.Id).ToListAsync(Ct);
        }

        // At most the acknowledgement in flight and the group being written are lost.
        Assert.True(sentAtKill.Count >= acceptedBeforeKill - 2, $"{acceptedBeforeKill} accepted before the kill, only {sentAtKill.Count} marked sent");
        Assert.True(sentAtKill.Count >= 10, $"only {sentAtKill.Count} of the first half's acknowledgements survived");

        await Emulator.Admin.ClearFaultsAsync(Ct);
        Time.SetUtcNow(DateTimeOffset.UtcNow);
        var rest = await Flusher.FlushOnceAsync(Ct);
        Assert.Equal(20, sentAtKill.Count + rest.ReportsSent);
        await AssertTotalsMatchAsync();

        // Nothing acknowledged before the kill was sent again.
        var requests = (await Emulator.Admin.GetMeterEventRequestsAsync(Ct)).GroupBy(r => r.Identifier).ToDictionary(g => g.Key, g => g.Sum(r => r.Requests));
        Assert.All(sentAtKill, id => Assert.Equal(1, requests[id.ToString()]));
        TestContext.Current.SendDiagnosticMessage($"killed with {acceptedAtKill}/20 accepted; {sentAtKill.Count} were already marked sent");
    }

    [Fact]
    public async Task Flush_StripeMeterWithOtherFormula_RefusedNamingTheMeter()
    {
        await new MeterService(Stripe).CreateAsync(new MeterCreateOptions { DisplayName = "Tokens", EventName = "ai_tokens", DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "count" } }, cancellationToken: Ct);
        var (user, _) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 3, cancellationToken: Ct);
        var host = await StartFlusherHostAsync(o => o.Meters["ai_tokens"] = new MeterDefinition());

        var result = await host.Get<IUsageFlusher>().FlushOnceAsync(Ct);

        Assert.NotNull(result.ConfigurationError);
        Assert.Contains("'ai_tokens' aggregates with formula 'count'", result.ConfigurationError, StringComparison.Ordinal);
        Assert.Equal(0, result.EventsClaimed);
        Assert.Equal(result.ConfigurationError, host.Get<FlushState>().ConfigurationError);
        Assert.Empty(await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct));
    }

    [Fact]
    public async Task Flush_ConfigurationLacksCountAggregation_RefusedNamingTheMeterAndNothingSummed()
    {
        // The app's flusher (api_calls: Count) values a report of three events as 3, whatever their quantities.
        var (user, customer) = await NewCustomerAsync();
        foreach (var quantity in new[] { 4, 5, 6 })
        {
            await Recorder.RecordAsync(user, "api_calls", quantity, cancellationToken: Ct);
        }

        await FlushUntilDoneAsync();

        // A process whose configuration lacks "Aggregation: Count" would send sums: it refuses instead.
        await Recorder.RecordAsync(user, "api_calls", 7, cancellationToken: Ct);
        var cli = await StartFlusherHostAsync(o => o.Meters["api_calls"] = new MeterDefinition());
        var refused = await cli.Get<IUsageFlusher>().FlushOnceAsync(Ct);

        Assert.NotNull(refused.ConfigurationError);
        Assert.Contains("meter 'api_calls' is configured with Aggregation Sum", refused.ConfigurationError, StringComparison.Ordinal);
        Assert.Contains("valued as Count", refused.ConfigurationError, StringComparison.Ordinal);
        Assert.Equal(0, refused.EventsClaimed);

        await FlushUntilDoneAsync();
        Assert.Equal(4m, await Emulator.Admin.GetMeterTotalAsync(customer, "api_calls", Now.AddDays(-30), Now.AddDays(30), Ct));
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Flush_FourFlushersClaimSameBacklog_OneReportPerCustomerMeterPeriod()
    {
        var customers = new List<(Guid User, string Customer)>();
        for (var i = 0; i < 40; i++)
        {
            customers.Add(await NewCustomerAsync());
        }

        // 2 000 events over 40 customers × 2 meters × 2 calendar months: 160 customer·meter·period keys.
        var random = new Random(12);
        var monthStart = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
        var work = Enumerable.Range(0, 2000).Select(i => (
            User: customers[i % customers.Count].User,
            Meter: (i / customers.Count) % 2 == 0 ? "ai_messages" : "api_calls",
            Quantity: (long)random.Next(1, 9),
            At: i % 3 == 0 ? monthStart.AddDays(-5).AddMinutes(i) : monthStart.AddDays(2).AddMinutes(i))).ToList();
        await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = Ct }, async (w, ct) =>
            await Recorder.RecordAsync(w.User, w.Meter, w.Quantity, occurredAt: w.At, cancellationToken: ct));

        var flushers = new List<IUsageFlusher>();
        for (var i = 0; i < 4; i++)
        {
            flushers.Add((await AddFlusherHostAsync(o => o.ClaimBatchSize = 50)).Get<IUsageFlusher>());
        }

        var results = await Task.WhenAll(flushers.Select(f => Task.Run(() => f.FlushOnceAsync(Ct), Ct)));

        Assert.Equal(2000, results.Sum(r => r.EventsClaimed));
        await using var db = Host.CreateContext();
        var perKey = await db.UsageReports.AsNoTracking()
            .GroupBy(r => new { r.StripeCustomerId, r.Meter, r.PeriodStart })
            .Select(g => g.Count()).ToListAsync(Ct);
        Assert.Equal(160, perKey.Count);
        Assert.All(perKey, n => Assert.Equal(1, n));
        Assert.Equal(160, results.Sum(r => r.ReportsSent));
        Assert.Equal(160, (await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count);
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Flush_AnotherFlusherHoldsTheMostOverdueKeys_ThisOneSendsEverythingElse()
    {
        for (var i = 0; i < 10; i++)
        {
            var (user, _) = await NewCustomerAsync();
            await Recorder.RecordAsync(user, "ai_messages", 1 + i, cancellationToken: Ct);
        }

        var store = Host.Get<IUsageFlushStore>();
        var claimed = await store.ClaimAsync(5000, null, (events, items) => ReportPlanning.Plan(events, items, Time.GetUtcNow(), TimeSpan.FromDays(34)), Ct);
        Assert.Equal(10, claimed.ReportsCreated);

        // Another live flusher leases the three most overdue keys (on PostgreSQL its session holds their locks).
        var other = await store.LeaseDueReportsAsync(Time.GetUtcNow(), 3, null, "otherhost:4242:1:feedface", Time.GetUtcNow().AddMinutes(5), Ct);
        Assert.Equal(3, other.Reports.Count);

        // This flusher leases two keys a round: the first keys it finds are the held ones, and it goes on to the free ones.
        var flusher = (await AddFlusherHostAsync(o => o.SendBatchSize = 2)).Get<IUsageFlusher>();
        var first = await flusher.FlushOnceAsync(Ct);
        Assert.Equal(7, first.ReportsSent);
        var leases = await store.GetLeasesAsync(Time.GetUtcNow(), null, Ct);
        Assert.Equal(3, leases.Leased);
        Assert.Equal("otherhost:4242:1:feedface", Assert.Single(leases.Holders).Owner);

        await other.DisposeAsync();
        var second = await flusher.FlushOnceAsync(Ct);
        Assert.Equal(3, second.ReportsSent);
        await AssertTotalsMatchAsync();
    }

    /// <summary>A flusher host over the same database with the test's meters changed by <paramref name="meters"/>.</summary>
    private async Task<BillingHost> StartFlusherHostAsync(Action<UsageBillingOptions> meters)
    {
        var host = await BillingHost.StartAsync(Database, Time, meters, b => b
            .UseStripe(o =>
            {
                o.SecretKey = "sk_test_flush";
                o.ApiBase = Emulator.ApiBase;
                o.Timeout = TimeSpan.FromSeconds(2);
                o.MaxNetworkRetries = 0;
            })
            .AddFlusher(o => o.Enabled = false));
        Hosts.Add(host);
        return host;
    }

    private async Task WaitUntilAllSentAsync(TimeSpan timeout, IReadOnlyList<Worker> workers)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            await using (var db = Host.CreateContext())
            {
                if (!await db.UsageEvents.AnyAsync(e => e.ReportId == null, Ct) && !await db.UsageReports.AnyAsync(r => r.Status == UsageReportStatus.Pending, Ct))
                {
                    return;
                }
            }

            if (deadline.Elapsed > timeout || workers.Any(w => w.HasExited))
            {
                Assert.Fail($"the workers did not send everything within {timeout}; stderr: {string.Join('\n', workers.SelectMany(w => w.Errors).Take(30))}");
            }

            await Task.Delay(50, Ct);
        }
    }

    private async Task WaitForAcceptedAsync(int count, Worker worker)
    {
        var deadline = Stopwatch.StartNew();
        while ((await Emulator.Admin.GetMeterEventsAsync(cancellationToken: Ct)).Count < count)
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(60) || worker.HasExited)
            {
                worker.Kill();
                Assert.Fail($"the worker did not get {count} events accepted; stderr: {string.Join('\n', worker.Errors.Take(30))}");
            }

            await Task.Delay(10, Ct);
        }
    }

    private async Task<Worker> StartWorkerAsync(params string[] settings)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "UsageBilling.FlushWorker.dll"));
        start.ArgumentList.Add(Provider == Provider.Sqlite ? "sqlite" : "postgres");
        start.ArgumentList.Add(ConnectionString);
        start.ArgumentList.Add(Emulator.ApiBase);
        foreach (var setting in settings)
        {
            start.ArgumentList.Add(setting);
        }

        var worker = new Worker(Process.Start(start)!);
        worker.Process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                worker.Errors.Enqueue(line);
            }
        };
        worker.Process.BeginErrorReadLine();
        var ready = await worker.Process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), Ct);
        if (ready != "ready")
        {
            worker.Kill();
            Assert.Fail($"worker did not start: {ready} {string.Join('\n', worker.Errors)}");
        }

        return worker;
    }

    private sealed class Worker(Process process)
    {
        public Process Process { get; } = process;

        public ConcurrentQueue<string> Errors { get; } = new();

        public bool HasExited => _killed || Process.HasExited;

        private bool _killed;

        /// <summary>SIGKILL: no finally blocks, no disposal, no unlock.</summary>
        public void Kill()
        {
            if (_killed)
            {
                return;
            }

            _killed = true;
            if (!Process.HasExited)
            {
                Process.Kill();
            }

            Assert.True(Process.WaitForExit(30_000), "killed worker did not exit");
            Process.Dispose();
        }
    }
}

public sealed class SqliteFlushRobustnessTests() : FlushRobustnessTests(Provider.Sqlite);

public sealed class PostgresFlushRobustnessTests() : FlushRobustnessTests(Provider.Postgres);
