using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.IntegrationTests.Infrastructure;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// <c>migrationBuilder.BackfillUsageRollups()</c>, as the bundled UsageRollups migrations call it: a database
/// holding events from before the rollups existed comes out of the migration with rollups equal to its events.
/// </summary>
public abstract class MigrationBackfillTests(Provider provider) : IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new(2026, 11, 20, 15, 30, 0, TimeSpan.Zero);
    private TestDatabase _database = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _database = await TestDatabase.CreateAsync(provider);

    public async ValueTask DisposeAsync() => await _database.DisposeAsync();

    [Fact]
    public async Task RollupMigration_OnEventsRecordedBeforeIt_BackfillsHourlyAndDailyRollups()
    {
        await using var db = CreateContext();
        var migrations = db.Database.GetMigrations().ToList();
        var rollups = migrations.FindIndex(m => m.EndsWith("_UsageRollups", StringComparison.Ordinal));
        Assert.True(rollups > 0, $"No UsageRollups migration after an earlier one in [{string.Join(", ", migrations)}]");
        await db.GetService<IMigrator>().MigrateAsync(migrations[rollups - 1], Ct);

        // Events from before the rollups: two users, two meters, several hours and days, some acknowledged.
        var users = new[] { Guid.NewGuid(), Guid.NewGuid() };
        db.Users.AddRange(users.Select(u => new BillingUser { Id = u, CreatedAt = Now.AddDays(-10) }));
        db.UsageEvents.AddRange(Enumerable.Range(0, 120).Select(i => new UsageEvent
        {
            Id = Guid.CreateVersion7(Now),
            UserId = users[i % 2],
            Meter = i % 3 == 0 ? "api_calls" : "ai_messages",
            Quantity = i % 7 + 1,
            OccurredAt = Now.AddMinutes(-i * 97),
            IdempotencyKey = $"k-{i}",
            ReportedAt = i % 4 == 0 ? Now.AddMinutes(-i) : null,
            CreatedAt = Now.AddMinutes(-i * 97),
        }));
        await db.SaveChangesAsync(Ct);

        await db.Database.MigrateAsync(Ct);

        Assert.Empty(await db.Database.GetPendingMigrationsAsync(Ct));
        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal(120, await db.UsageDaily.SumAsync(d => d.EventCount, Ct));
        Assert.Equal(30, await db.UsageHourly.SumAsync(h => h.ReportedCount, Ct));
    }

    private UsageBillingDbContext CreateContext() => provider == Provider.Sqlite
        ? new SqliteUsageBillingDbContext(new DbContextOptionsBuilder<SqliteUsageBillingDbContext>().UseSqlite(_database.ConnectionString).Options)
        : new PostgresUsageBillingDbContext(new DbContextOptionsBuilder<PostgresUsageBillingDbContext>().UseNpgsql(_database.ConnectionString).Options);
}

public sealed class SqliteMigrationBackfillTests() : MigrationBackfillTests(Provider.Sqlite);

public sealed class PostgresMigrationBackfillTests() : MigrationBackfillTests(Provider.Postgres);
