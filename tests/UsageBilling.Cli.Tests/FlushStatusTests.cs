using Microsoft.EntityFrameworkCore;
using Npgsql;
using UsageBilling.Cli.Tests.Infrastructure;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.Cli.Tests;

/// <summary>
/// <c>flush</c>'s summary and exit code tell "all sent" from "some in backoff" from "held by another flusher";
/// <c>status</c> shows leases, owners and expiry; a meter configuration that disagrees with the data is refused.
/// </summary>
public abstract class FlushStatusTests(Provider provider) : IAsyncLifetime
{
    private CliWorld _world = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _world = await CliWorld.CreateAsync(provider);
        await _world.RunOkAsync("db", "migrate");
        await _world.RunOkAsync("setup");
    }

    public async ValueTask DisposeAsync() => await _world.DisposeAsync();

    [Fact]
    public async Task Flush_ReportsHeldByAnotherFlusherThenInBackoff_ExitCodesAndStatusSayWhy()
    {
        var (alice, aliceCus) = await _world.AddCustomerAsync();
        var (bob, bobCus) = await _world.AddCustomerAsync();
        await _world.AddEventsAsync(alice, "ai_messages", 2);

        // Another live flusher holds Bob's report: its lease runs five more minutes (and on PostgreSQL its session holds the key lock).
        const string other = "otherhost:4242:1:feedface";
        var held = await AddPendingReportAsync(bob, bobCus, 3, r => { r.LeaseOwner = other; r.LeaseExpiresAt = DateTimeOffset.UtcNow.AddMinutes(5); r.FirstAttemptAt = DateTimeOffset.UtcNow; });
        await using var keyLock = await HoldKeyLockAsync(bobCus, "ai_messages");

        var flush = await _world.RunAsync("flush");
        Assert.True(flush.ExitCode == 5, flush.ToString());
        Assert.Matches(@"held by another flusher\s+│\s+1\s", flush.Stdout);
        Assert.Matches(@"Reports sent\s+│\s+1\s", flush.Stdout);
        Assert.Contains($"being sent by another flusher: {other} (1 until", Assert.Single(flush.StderrLines), StringComparison.Ordinal);
        Assert.Equal(2m, await _world.StripeTotalAsync(aliceCus, "ai_messages"));
        Assert.Equal(0m, await _world.StripeTotalAsync(bobCus, "ai_messages"));

        var status = await _world.StatusAsync();
        Assert.Equal(1, (long)status["pending_leased"]!);
        var lease = Assert.Single(status["leases"]!.AsArray())!;
        Assert.Equal(other, (string)lease["owner"]!);
        Assert.Equal(1, (long)lease["reports"]!);
        Assert.InRange((long)lease["expires_in_seconds"]!, 200, 301);
        var human = await _world.RunOkAsync("status");
        Assert.Contains(other, human.Stdout, StringComparison.Ordinal);
        Assert.Contains("1 leased", human.Stdout, StringComparison.Ordinal);

        // A report waiting for a retry after a transient failure: exit 4 names the next retry.
        await AddPendingReportAsync(alice, aliceCus, 4, r => { r.Attempts = 1; r.NextAttemptAt = DateTimeOffset.UtcNow.AddMinutes(10); r.FirstAttemptAt = DateTimeOffset.UtcNow; r.LastError = "HTTP 500"; });
        var backoff = await _world.RunAsync("flush");
        Assert.True(backoff.ExitCode == 4, backoff.ToString());
        Assert.Contains("wait for a retry", Assert.Single(backoff.StderrLines), StringComparison.Ordinal);
        Assert.Equal(1, (long)(await _world.StatusAsync())["pending_in_backoff"]!);

        // Once the other flusher is gone and the retry is due, everything goes and flush exits 0.
        await keyLock.DisposeAsync();
        await using (var db = _world.Database.CreateContext())
        {
            await db.UsageReports.Where(r => r.Status == UsageReportStatus.Pending)
                .ExecuteUpdateAsync(s => s.SetProperty(r => r.NextAttemptAt, DateTimeOffset.UtcNow.AddMinutes(-1)).SetProperty(r => r.LeaseExpiresAt, DateTimeOffset.UtcNow.AddMinutes(-1)), Ct);
        }

        await _world.RunOkAsync("flush");
        Assert.Equal(6m, await _world.StripeTotalAsync(aliceCus, "ai_messages"));
        Assert.Equal(3m, await _world.StripeTotalAsync(bobCus, "ai_messages"));
        Assert.Equal(UsageReportStatus.Sent, (await _world.ReportsAsync()).Single(r => r.Id == held).Status);
        Assert.Empty((await _world.StatusAsync())["leases"]!.AsArray());
    }

    [Fact]
    public async Task Flush_ConfigurationSumsAMeterTheDatabaseCounted_RefusedWithOneLineNamingIt()
    {
        // Earlier flushes valued api_calls as Count: a report of two events (quantities 5 and 6) worth 2.
        var (alice, aliceCus) = await _world.AddCustomerAsync();
        var counted = await AddPendingReportAsync(alice, aliceCus, 2, r => { r.Meter = "api_calls"; r.EventCount = 2; r.Status = UsageReportStatus.Sent; r.SentAt = DateTimeOffset.UtcNow; }, 5, 6);
        await _world.AddEventsAsync(alice, "api_calls", 7);

        // This CLI's appsettings.json has api_calls without "Aggregation": "Count".
        var flush = await _world.RunAsync("flush");

        Assert.True(flush.ExitCode == 2, flush.ToString());
        var line = Assert.Single(flush.StderrLines);
        Assert.Contains("meter 'api_calls' is configured with Aggregation Sum", line, StringComparison.Ordinal);
        Assert.Contains(counted.ToString(), line, StringComparison.Ordinal);
        Assert.Equal(0m, await _world.StripeTotalAsync(aliceCus, "api_calls"));
        Assert.Equal(1, (long)(await _world.StatusAsync())["pending_events"]!);
    }

    /// <summary>A pending report of this month with one event per quantity (or one event of <paramref name="quantity"/>).</summary>
    private async Task<Guid> AddPendingReportAsync(Guid userId, string customerId, long quantity, Action<UsageReport> change, params long[] eventQuantities)
    {
        var now = DateTimeOffset.UtcNow;
        var period = BillingPeriod.CalendarMonth(now);
        var report = new UsageReport
        {
            Id = Guid.CreateVersion7(),
            StripeCustomerId = customerId,
            Meter = "ai_messages",
            Quantity = quantity,
            EventCount = 1,
            Timestamp = now.AddMinutes(-1),
            PeriodStart = period.Start,
            PeriodEnd = period.End,
            Status = UsageReportStatus.Pending,
            NextAttemptAt = now.AddMinutes(-1),
            CreatedAt = now.AddMinutes(-1),
        };
        change(report);
        await using var db = _world.Database.CreateContext();
        db.UsageReports.Add(report);
        foreach (var q in eventQuantities.Length == 0 ? [quantity] : eventQuantities)
        {
            db.UsageEvents.Add(new UsageEvent { Id = Guid.CreateVersion7(), UserId = userId, Meter = report.Meter, Quantity = q, OccurredAt = report.Timestamp, ReportId = report.Id, CreatedAt = report.CreatedAt });
        }

        await db.SaveChangesAsync(Ct);
        return report.Id;
    }

    /// <summary>On PostgreSQL, what a live flusher's session holds while it sends for a customer·meter; nothing on SQLite.</summary>
    private async Task<IAsyncDisposable> HoldKeyLockAsync(string customerId, string meter)
    {
        if (provider != Provider.Postgres)
        {
            return new Nothing();
        }

        // Unpooled: a pooled connection would keep the session lock after disposal until its next use.
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(_world.Database.ConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand("SELECT pg_advisory_lock(hashtextextended(@key, 7817))", connection);
        command.Parameters.AddWithValue("key", $"{customerId}|{meter}");
        await command.ExecuteNonQueryAsync(Ct);
        return connection;
    }

    private sealed class Nothing : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

public sealed class SqliteFlushStatusTests() : FlushStatusTests(Provider.Sqlite);

public sealed class PostgresFlushStatusTests() : FlushStatusTests(Provider.Postgres);
