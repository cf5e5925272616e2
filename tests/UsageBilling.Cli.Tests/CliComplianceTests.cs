using Microsoft.EntityFrameworkCore;
using Stripe;
using Stripe.Billing;
using UsageBilling.Cli.Tests.Infrastructure;
using UsageBilling.Storage;

namespace UsageBilling.Cli.Tests;

/// <summary>The CLI run as a real process against a real database and the emulator; the facts hold on SQLite and PostgreSQL alike.</summary>
public abstract class CliComplianceTests(Provider provider) : IAsyncLifetime
{
    private CliWorld _world = null!;

    public async ValueTask InitializeAsync()
    {
        _world = await CliWorld.CreateAsync(provider);
        var migrate = await _world.RunOkAsync("db", "migrate");
        Assert.Contains("Applied", migrate.Stdout, StringComparison.Ordinal);
    }

    public async ValueTask DisposeAsync() => await _world.DisposeAsync();

    [Fact]
    public async Task Setup_SecondRun_CreatesNothing()
    {
        var dry = await _world.RunOkAsync("setup", "--dry-run");
        Assert.Contains("Dry run: would create 6, update 0; 0 unchanged.", dry.Stdout, StringComparison.Ordinal);
        Assert.Empty(await new MeterService(_world.Stripe).ListAsync(new MeterListOptions { Limit = 100 }, cancellationToken: TestContext.Current.CancellationToken));

        var first = await _world.RunOkAsync("setup");
        Assert.Contains("Created 6, updated 0, unchanged 0.", first.Stdout, StringComparison.Ordinal);
        var meters = await new MeterService(_world.Stripe).ListAsync(new MeterListOptions { Limit = 100 }, cancellationToken: TestContext.Current.CancellationToken);
        var prices = await new PriceService(_world.Stripe).ListAsync(new PriceListOptions { Limit = 100 }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(["ai_messages", "api_calls"], meters.Select(m => m.EventName).Order(StringComparer.Ordinal));
        foreach (var meter in meters)
        {
            Assert.Contains(meter.Id, first.Stdout, StringComparison.Ordinal);
        }

        var migrateAgain = await _world.RunOkAsync("db", "migrate");
        Assert.Contains("up to date", migrateAgain.Stdout, StringComparison.Ordinal);

        var second = await _world.RunOkAsync("setup");
        Assert.Contains("Created 0, updated 0, unchanged 6.", second.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, (await new MeterService(_world.Stripe).ListAsync(new MeterListOptions { Limit = 100 }, cancellationToken: TestContext.Current.CancellationToken)).Count());
        Assert.Equal(prices.Count(), (await new PriceService(_world.Stripe).ListAsync(new PriceListOptions { Limit = 100 }, cancellationToken: TestContext.Current.CancellationToken)).Count());
    }

    [Fact]
    public async Task Flush_PendingUsage_IsSentAndStatusMatchesDatabase()
    {
        await _world.RunOkAsync("setup");
        var (alice, aliceCus) = await _world.AddCustomerAsync();
        var (bob, bobCus) = await _world.AddCustomerAsync();
        await _world.AddEventsAsync(alice, "ai_messages", 2, 3, 5);
        await _world.AddEventsAsync(bob, "ai_messages", 7);

        var before = await _world.StatusAsync();
        Assert.Equal(4, (long)before["pending_events"]!);
        Assert.Equal(0, (long)before["reports"]!["sent"]!);
        Assert.NotNull((string?)before["oldest_unreported_at"]);
        Assert.StartsWith("emulator", (string)before["stripe_mode"]!, StringComparison.Ordinal);

        var flush = await _world.RunOkAsync("flush", "--customer", alice.ToString());
        Assert.Matches(@"Reports sent\s+│\s+1\s", flush.Stdout);
        Assert.Equal(10m, await _world.StripeTotalAsync(aliceCus, "ai_messages"));
        Assert.Equal(0m, await _world.StripeTotalAsync(bobCus, "ai_messages"));

        await _world.RunOkAsync("flush");
        Assert.Equal(7m, await _world.StripeTotalAsync(bobCus, "ai_messages"));

        var after = await _world.StatusAsync();
        var reports = await _world.ReportsAsync();
        Assert.Equal(2, reports.Count(r => r.Status == UsageReportStatus.Sent));
        Assert.Equal(reports.Count(r => r.Status == UsageReportStatus.Sent), (long)after["reports"]!["sent"]!);
        Assert.Equal(0, (long)after["pending_events"]!);
        Assert.Null((string?)after["oldest_unreported_at"]);
        Assert.Equal(reports.Max(r => r.SentAt)!.Value, DateTimeOffset.Parse((string)after["last_sent_at"]!, System.Globalization.CultureInfo.InvariantCulture), TimeSpan.FromMilliseconds(1));

        var human = await _world.RunOkAsync("status");
        Assert.Contains("pending 0  sent 2  dead 0  needs_review 0", human.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Flush_ReportThatGoesDead_ExitsNonZero()
    {
        await _world.RunOkAsync("setup");
        var (alice, _) = await _world.AddCustomerAsync();

        // Usage older than Stripe's 35-day window can never be sent: its report is dead at claim time.
        await _world.AddEventsAsync(alice, "ai_messages", 1);
        await _world.AddEventsAsync(alice, DateTimeOffset.UtcNow.AddDays(-40), "ai_messages", 5);
        var flush = await _world.RunAsync("flush");
        Assert.Equal(1, flush.ExitCode);
        Assert.Matches(@"Reports dead\s+│\s+1\s", flush.Stdout);
        Assert.Single(flush.StderrLines);
        var reports = await _world.ReportsAsync();
        Assert.Equal([UsageReportStatus.Sent, UsageReportStatus.Dead], reports.OrderBy(r => r.Quantity).Select(r => r.Status));
        Assert.StartsWith("too_old_for_stripe", reports.Single(r => r.Status == UsageReportStatus.Dead).LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reconcile_ExtraEventOnStripeSide_IsUnexplainedDrift()
    {
        await _world.RunOkAsync("setup");
        var (alice, aliceCus) = await _world.AddCustomerAsync();
        await _world.AddEventsAsync(alice, "ai_messages", 4, 6);
        await _world.RunOkAsync("flush");

        var clean = await _world.RunOkAsync("reconcile");
        Assert.Contains("0 with unexplained drift", clean.Stdout, StringComparison.Ordinal);

        await _world.SendMeterEventAsync(aliceCus, "ai_messages", 7);
        var drift = await _world.RunAsync("reconcile");
        Assert.Equal(1, drift.ExitCode);
        Assert.Matches(@"│\s+10\s+│\s+17\s+│\s+\+7\s+│\s+UNEXPLAINED", drift.Stdout);
        Assert.Contains("unexplained drift", Assert.Single(drift.StderrLines), StringComparison.Ordinal);

        // --repair does not paper over drift it cannot explain.
        var repair = await _world.RunAsync("reconcile", "--repair");
        Assert.Equal(1, repair.ExitCode);
    }

    [Fact]
    public async Task ReconcileRepair_NeedsReviewReports_AreMarkedSentOrResentUnderNewIdentifier()
    {
        await _world.RunOkAsync("setup");
        var (alice, aliceCus) = await _world.AddCustomerAsync();
        var (bob, bobCus) = await _world.AddCustomerAsync();
        await _world.AddEventsAsync(alice, "ai_messages", 1);
        await _world.AddEventsAsync(bob, "ai_messages", 2);
        await _world.RunOkAsync("flush");

        // Alice's report reached Stripe but the acknowledgement was lost; Bob's never arrived.
        var arrived = await _world.AddNeedsReviewReportAsync(alice, aliceCus, "ai_messages", 4);
        await _world.SendMeterEventAsync(aliceCus, "ai_messages", 4, identifier: arrived.ToString());
        var lost = await _world.AddNeedsReviewReportAsync(bob, bobCus, "ai_messages", 6);

        var look = await _world.RunOkAsync("reconcile");
        Assert.Contains($"needs_review {arrived}: Stripe has it", look.Stdout, StringComparison.Ordinal);
        Assert.Contains($"needs_review {lost}: not in Stripe", look.Stdout, StringComparison.Ordinal);
        Assert.Contains("2 needs_review report(s) to repair", look.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, (await _world.ReportsAsync()).Count(r => r.Status == UsageReportStatus.NeedsReview));

        var repair = await _world.RunOkAsync("reconcile", "--repair");
        Assert.Contains("1 needs_review report(s) marked sent, 1 superseded", repair.Stdout, StringComparison.Ordinal);

        var reports = await _world.ReportsAsync();
        var arrivedRow = reports.Single(r => r.Id == arrived);
        Assert.Equal(UsageReportStatus.Sent, arrivedRow.Status);
        Assert.NotNull(arrivedRow.SentAt);
        var lostRow = reports.Single(r => r.Id == lost);
        Assert.Equal(UsageReportStatus.Dead, lostRow.Status);
        var replacement = reports.Single(r => r.LastError == $"resend of {lost} after reconcile: Stripe did not have it");
        Assert.Equal($"superseded by {replacement.Id} after reconcile", lostRow.LastError);
        Assert.Equal(UsageReportStatus.Pending, replacement.Status);
        Assert.Equal((bobCus, "ai_messages", 6L, lostRow.Timestamp), (replacement.StripeCustomerId, replacement.Meter, replacement.Quantity, replacement.Timestamp));
        await using (var db = _world.Database.CreateContext())
        {
            Assert.Single(await db.UsageEvents.Where(e => e.ReportId == arrived).ToListAsync(TestContext.Current.CancellationToken));
            Assert.Single(await db.UsageEvents.Where(e => e.ReportId == replacement.Id).ToListAsync(TestContext.Current.CancellationToken));
            Assert.Empty(await db.UsageEvents.Where(e => e.ReportId == lost).ToListAsync(TestContext.Current.CancellationToken));
        }

        await _world.RunOkAsync("flush");
        Assert.Equal(5m, await _world.StripeTotalAsync(aliceCus, "ai_messages"));
        Assert.Equal(8m, await _world.StripeTotalAsync(bobCus, "ai_messages"));
        var final = await _world.RunOkAsync("reconcile");
        Assert.Contains("0 with unexplained drift, 0 needs_review report(s) to repair", final.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApiKeys_CreateListRevoke_SecretShownOnceAndStoredHashed()
    {
        var (alice, _) = await _world.AddCustomerAsync();

        var created = await _world.RunOkAsync("api-keys", "create", "--name", "billing worker", "--account", alice.ToString());
        var secret = System.Text.RegularExpressions.Regex.Match(created.Stdout, @"ubk_[A-Za-z0-9_-]{43}").Value;
        Assert.NotEmpty(secret);
        Assert.Contains($"account {alice}", created.Stdout, StringComparison.Ordinal);
        await using (var db = _world.Database.CreateContext())
        {
            var row = await db.UsageApiKeys.SingleAsync(TestContext.Current.CancellationToken);
            Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(secret))), row.SecretHash);
            Assert.Equal(alice, row.UserId);
        }

        var list = await _world.RunOkAsync("api-keys", "list");
        Assert.Contains("billing worker", list.Stdout, StringComparison.Ordinal);
        Assert.Contains(secret[..12], list.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, list.Stdout, StringComparison.Ordinal);

        await using var check = _world.Database.CreateContext();
        var id = (await check.UsageApiKeys.SingleAsync(TestContext.Current.CancellationToken)).Id;
        var revoked = await _world.RunOkAsync("api-keys", "revoke", id.ToString());
        Assert.Contains($"Revoked API key {id}", revoked.Stdout, StringComparison.Ordinal);
        var again = await _world.RunAsync("api-keys", "revoke", id.ToString());
        Assert.Equal(2, again.ExitCode);
        Assert.StartsWith("error: no live API key", Assert.Single(again.StderrLines), StringComparison.Ordinal);

        var unknown = await _world.RunAsync("api-keys", "create", "--name", "x", "--account", Guid.NewGuid().ToString());
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("does not exist", Assert.Single(unknown.StderrLines), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AdjustVoid_ReportedEvent_NextFlushCancelsAndResends_StripeTotalExact()
    {
        await _world.RunOkAsync("setup");
        var (alice, aliceCus) = await _world.AddCustomerAsync();
        await _world.AddEventsAsync(alice, "ai_messages", 2, 3, 5);
        await _world.RunOkAsync("flush");
        Assert.Equal(10m, await _world.StripeTotalAsync(aliceCus, "ai_messages"));
        await using var db = _world.Database.CreateContext();
        var five = await db.UsageEvents.Where(e => e.UserId == alice && e.Quantity == 5).Select(e => e.Id).SingleAsync(TestContext.Current.CancellationToken);

        var adjusted = await _world.RunOkAsync("adjust", "void", five.ToString(), "--reason", "duplicate job", "--by", "ops@example.com");
        Assert.Contains("the next flush cancels that report", adjusted.Stdout, StringComparison.Ordinal);
        await _world.RunOkAsync("flush");

        Assert.Equal(5m, await _world.StripeTotalAsync(aliceCus, "ai_messages"));
        var list = await _world.RunOkAsync("adjust", "list", "--account", alice.ToString());
        Assert.Contains("duplicate job", list.Stdout, StringComparison.Ordinal);
        Assert.Contains("ops@example.com", list.Stdout, StringComparison.Ordinal);
        Assert.Contains("Done", list.Stdout, StringComparison.Ordinal);

        var gone = await _world.RunAsync("adjust", "void", five.ToString(), "--reason", "again");
        Assert.Equal(2, gone.ExitCode);
        Assert.StartsWith($"error: No usage event {five}", Assert.Single(gone.StderrLines), StringComparison.Ordinal);
        var noReason = await _world.RunAsync("adjust", "void", five.ToString());
        Assert.Equal(2, noReason.ExitCode);
    }

    [Fact]
    public async Task DbPrune_AcknowledgedEventsOfAnOldPeriod_RemovedAndCounted_PendingKept()
    {
        var (alice, alicesCustomer) = await _world.AddCustomerAsync();
        var old = BillingPeriod.CalendarMonth(DateTimeOffset.UtcNow.AddDays(-100));
        var reportId = Guid.CreateVersion7();
        await using (var db = _world.Database.CreateContext())
        {
            if (provider == Provider.Postgres)
            {
                // That month's own partition, as a database migrated with its history has: the prune drops it whole.
                await db.Database.ExecuteSqlRawAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"CREATE TABLE usage_events_y{old.Start:yyyy}m{old.Start:MM} PARTITION OF usage_events FOR VALUES FROM ('{old.Start:O}') TO ('{old.End:O}')"), TestContext.Current.CancellationToken);
            }

            var at = old.Start.AddDays(3);
            db.UsageReports.Add(new UsageBilling.EntityFrameworkCore.Entities.UsageReport
            {
                Id = reportId, StripeCustomerId = alicesCustomer, Meter = "ai_messages", Quantity = 5, EventCount = 2, Timestamp = at, PeriodStart = old.Start, PeriodEnd = old.End,
                Status = UsageReportStatus.Sent, Attempts = 1, NextAttemptAt = at, FirstAttemptAt = at, CreatedAt = at, SentAt = at,
            });
            foreach (var q in new long[] { 2, 3 })
            {
                db.UsageEvents.Add(new UsageBilling.EntityFrameworkCore.Entities.UsageEvent { Id = Guid.CreateVersion7(), UserId = alice, Meter = "ai_messages", Quantity = q, OccurredAt = at, CreatedAt = at, ReportId = reportId });
            }

            db.UsageEvents.Add(new UsageBilling.EntityFrameworkCore.Entities.UsageEvent { Id = Guid.CreateVersion7(), UserId = alice, Meter = "ai_messages", Quantity = 7, OccurredAt = at, CreatedAt = at });

            // The day's rollups, as the recorder and the flusher leave them: a closed sparse day, which the prune folds first.
            db.UsageDaily.Add(new UsageBilling.EntityFrameworkCore.Entities.UsageDaily { UserId = alice, Day = at, Meter = "ai_messages", Quantity = 12, EventCount = 3, ReportedQuantity = 5, ReportedCount = 2, LastReportedAt = at });
            db.UsageHourly.Add(new UsageBilling.EntityFrameworkCore.Entities.UsageHourly { UserId = alice, Hour = at, Meter = "ai_messages", Quantity = 12, EventCount = 3, ReportedQuantity = 5, ReportedCount = 2, LastReportedAt = at });
            await db.SaveChangesAsync(TestContext.Current.CancellationToken);
        }

        var prune = await _world.RunOkAsync("db", "prune", "--keep", "40d");

        Assert.Contains("Pruned 2 acknowledged event(s) and 0 hourly rollup row(s) from before", prune.Stdout, StringComparison.Ordinal);
        Assert.Contains("The hours of 1 closed account·meter·day(s) were folded into the daily rollup (1 hourly row(s)).", System.Text.RegularExpressions.Regex.Replace(prune.Stdout, @"\s+", " "), StringComparison.Ordinal);
        if (provider == Provider.Postgres)
        {
            // The console wraps long lines: compare with the whitespace collapsed.
            Assert.Contains("1 monthly partition(s) of usage_events were dropped whole.", System.Text.RegularExpressions.Regex.Replace(prune.Stdout, @"\s+", " "), StringComparison.Ordinal);
        }

        await using var after = _world.Database.CreateContext();
        Assert.Equal([7L], await after.UsageEvents.Where(e => e.UserId == alice).Select(e => e.Quantity).ToListAsync(TestContext.Current.CancellationToken));
        Assert.Equal(5, (await after.UsageReports.SingleAsync(r => r.Id == reportId, TestContext.Current.CancellationToken)).Quantity);
        var again = await _world.RunOkAsync("db", "prune", "--keep", "40d");
        Assert.Contains("Pruned 0 acknowledged event(s)", again.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("folded", again.Stdout, StringComparison.Ordinal);
        Assert.True((await after.UsageDaily.SingleAsync(d => d.UserId == alice, TestContext.Current.CancellationToken)).HoursFolded);
    }
}

public sealed class SqliteCliTests() : CliComplianceTests(Provider.Sqlite);

public sealed class PostgresCliTests() : CliComplianceTests(Provider.Postgres);
