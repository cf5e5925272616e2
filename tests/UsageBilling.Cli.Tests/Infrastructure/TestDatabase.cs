using Microsoft.EntityFrameworkCore;
using Npgsql;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.Cli.Tests.Infrastructure;

public enum Provider
{
    Sqlite,
    Postgres,
}

/// <summary>A fresh database per test: a temp SQLite file, or a new PostgreSQL database on the server named by USAGEBILLING_TEST_PG.</summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private readonly Func<Task> _drop;

    private TestDatabase(Provider provider, string connectionString, Func<Task> drop)
    {
        Provider = provider;
        ConnectionString = connectionString;
        _drop = drop;
    }

    public Provider Provider { get; }

    public string ConnectionString { get; }

    public static string PostgresServer =>
        Environment.GetEnvironmentVariable("USAGEBILLING_TEST_PG")
        ?? "Host=127.0.0.1;Port=5432;Username=usagebilling;Password=usagebilling;Database=postgres";

    public static async Task<TestDatabase> CreateAsync(Provider provider)
    {
        if (provider == Provider.Sqlite)
        {
            var dir = Path.Combine(Path.GetTempPath(), "usagebilling-cli-tests");
            Directory.CreateDirectory(dir);
            var file = Path.Combine(dir, $"{Guid.NewGuid():N}.db");
            return new TestDatabase(provider, $"Data Source={file}", () =>
            {
                Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
                foreach (var f in new[] { file, file + "-wal", file + "-shm" })
                {
                    File.Delete(f);
                }

                return Task.CompletedTask;
            });
        }

        var name = $"ub_cli_{Guid.NewGuid():N}";
        await using (var admin = new NpgsqlConnection(PostgresServer))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        var cs = new NpgsqlConnectionStringBuilder(PostgresServer) { Database = name }.ToString();
        return new TestDatabase(provider, cs, async () =>
        {
            NpgsqlConnection.ClearAllPools();
            await using var admin = new NpgsqlConnection(PostgresServer);
            await admin.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
        });
    }

    public UsageBillingDbContext CreateContext() => Provider == Provider.Sqlite
        ? new SqliteUsageBillingDbContext(new DbContextOptionsBuilder<SqliteUsageBillingDbContext>().UseSqlite(ConnectionString).Options)
        : new PostgresUsageBillingDbContext(new DbContextOptionsBuilder<PostgresUsageBillingDbContext>().UseNpgsql(ConnectionString).Options);

    public async ValueTask DisposeAsync() => await _drop();
}
