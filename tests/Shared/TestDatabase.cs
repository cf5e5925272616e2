using Npgsql;

namespace UsageBilling.Testing;

// Linked into every test project that needs a real database (see the test csproj files).

/// <summary>Which database a test class runs on.</summary>
public enum Provider
{
    Sqlite,
    Postgres,
}

/// <summary>
/// A fresh database per test class: a temp SQLite file, or a new PostgreSQL database on the server
/// named by USAGEBILLING_TEST_PG (scripts/test.sh starts it and exports the variable).
/// </summary>
public sealed partial class TestDatabase : IAsyncDisposable
{
    private TestDatabase(Provider provider, string connectionString, Func<Task> drop)
    {
        Provider = provider;
        ConnectionString = connectionString;
        _drop = drop;
    }

    private readonly Func<Task> _drop;

    public Provider Provider { get; }

    public string ConnectionString { get; }

    public static string PostgresServer =>
        Environment.GetEnvironmentVariable("USAGEBILLING_TEST_PG")
        ?? "Host=127.0.0.1;Port=5432;Username=usagebilling;Password=usagebilling;Database=postgres";

    public static async Task<TestDatabase> CreateAsync(Provider provider)
    {
        if (provider == Provider.Sqlite)
        {
            var dir = Path.Combine(Path.GetTempPath(), "usagebilling-tests");
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

        var name = $"ub_test_{Guid.NewGuid():N}";
        await using (var admin = new NpgsqlConnection(PostgresServer))
        {
            try
            {
                await admin.OpenAsync();
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"PostgreSQL is not reachable with USAGEBILLING_TEST_PG='{PostgresServer}'. Run the tests through scripts/test.sh, which starts it.", ex);
            }

            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        var cs = new NpgsqlConnectionStringBuilder(PostgresServer) { Database = name, MaxPoolSize = 100 }.ToString();
        return new TestDatabase(provider, cs, async () =>
        {
            NpgsqlConnection.ClearAllPools();
            await using var admin = new NpgsqlConnection(PostgresServer);
            await admin.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
        });
    }

    public async ValueTask DisposeAsync() => await _drop();
}
