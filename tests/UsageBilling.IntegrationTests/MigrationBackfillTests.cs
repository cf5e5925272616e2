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
        // Written in SQL with that schema's columns: today's model has columns the old schema lacks.
        var users = new[] { Guid.NewGuid(), Guid.NewGuid() };
        foreach (var u in users)
        {
            await InsertAsync(db, "INSERT INTO users (id, email, created_at) VALUES ({0}, {1}, {2})", Id(u), null, Time(Now.AddDays(-10)));
        }

        for (var i = 0; i < 120; i++)
        {
            await InsertAsync(
                db,
                "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, reported_at, created_at) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8})",
                Id(Guid.CreateVersion7(Now)),
                Id(users[i % 2]),
                i % 3 == 0 ? "api_calls" : "ai_messages",
                (long)(i % 7 + 1),
                Time(Now.AddMinutes(-i * 97)),
                $"k-{i}",
                null,
                i % 4 == 0 ? Time(Now.AddMinutes(-i)) : null,
                Time(Now.AddMinutes(-i * 97)));
        }

        await db.Database.MigrateAsync(Ct);

        Assert.Empty(await db.Database.GetPendingMigrationsAsync(Ct));
        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal(120, await db.UsageDaily.SumAsync(d => d.EventCount, Ct));
        Assert.Equal(30, await db.UsageHourly.SumAsync(h => h.ReportedCount, Ct));
    }

    /// <summary>Runs an INSERT whose <c>{n}</c> placeholders become parameters, or NULL for a null value.</summary>
    private static Task<int> InsertAsync(UsageBillingDbContext db, string sql, params object?[] values)
    {
        var parameters = new List<object>();
        for (var i = 0; i < values.Length; i++)
        {
            sql = sql.Replace($"{{{i}}}", values[i] is null ? "NULL" : $"{{{parameters.Count}}}", StringComparison.Ordinal);
            if (values[i] is { } value)
            {
                parameters.Add(value);
            }
        }

        return db.Database.ExecuteSqlRawAsync(sql, parameters, Ct);
    }

    /// <summary>A Guid as the provider stores it (SQLite: EF's upper-case text).</summary>
    private object Id(Guid id) => provider == Provider.Sqlite ? id.ToString().ToUpperInvariant() : id;

    /// <summary>An instant as the provider stores it (SQLite: UsageBilling's microseconds since the epoch).</summary>
    private object Time(DateTimeOffset t) => provider == Provider.Sqlite ? UsageBillingSqliteConventions.ToUnixMicroseconds(t) : t;

    private UsageBillingDbContext CreateContext() => provider == Provider.Sqlite
        ? new SqliteUsageBillingDbContext(new DbContextOptionsBuilder<SqliteUsageBillingDbContext>().UseSqlite(_database.ConnectionString).Options)
        : new PostgresUsageBillingDbContext(new DbContextOptionsBuilder<PostgresUsageBillingDbContext>().UseNpgsql(_database.ConnectionString).Options);
}

public sealed class SqliteMigrationBackfillTests() : MigrationBackfillTests(Provider.Sqlite);

public sealed class PostgresMigrationBackfillTests() : MigrationBackfillTests(Provider.Postgres);
