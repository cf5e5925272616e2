using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;

namespace UsageBilling.Benchmarks;

/// <summary>The databases the benchmarks run on.</summary>
public enum BenchProvider
{
    Sqlite,
    Postgres,
}

/// <summary>
/// A fresh, migrated database with its users, wired exactly like an app
/// (<c>AddUsageBilling(...).UseSqlite(cs)</c> / <c>.UsePostgres(cs)</c>). Dropped on dispose.
/// </summary>
public sealed class BenchDatabase : IAsyncDisposable
{
    private readonly Func<Task> _drop;

    private BenchDatabase(BenchProvider provider, string connectionString, ServiceProvider services, IReadOnlyList<Guid> users, Func<Task> drop)
    {
        Provider = provider;
        ConnectionString = connectionString;
        Services = services;
        Users = users;
        _drop = drop;
    }

    /// <summary>The server the benchmark creates its databases on (USAGEBILLING_TEST_PG when set).</summary>
    public static string PostgresServer =>
        Environment.GetEnvironmentVariable("USAGEBILLING_TEST_PG")
        ?? "Host=127.0.0.1;Port=5432;Username=usagebilling;Password=usagebilling;Database=postgres";

    public BenchProvider Provider { get; }

    public string ConnectionString { get; }

    public ServiceProvider Services { get; }

    public IReadOnlyList<Guid> Users { get; }

    /// <summary>Creates a new database, migrates it through the library, and inserts <paramref name="userCount"/> users.</summary>
    /// <param name="provider">The database.</param>
    /// <param name="userCount">How many users to insert.</param>
    /// <param name="configure">Options on top of the one meter.</param>
    /// <param name="customerPlan">When set, every user also gets a billing customer on this plan.</param>
    public static async Task<BenchDatabase> CreateAsync(BenchProvider provider, int userCount, Action<UsageBillingOptions>? configure = null, string? customerPlan = null)
    {
        string cs;
        Func<Task> drop;
        if (provider == BenchProvider.Sqlite)
        {
            var dir = Path.Combine(Path.GetTempPath(), "usagebilling-bench");
            Directory.CreateDirectory(dir);
            var file = Path.Combine(dir, $"{Guid.NewGuid():N}.db");
            cs = $"Data Source={file}";
            drop = () =>
            {
                SqliteConnection.ClearAllPools();
                foreach (var f in new[] { file, file + "-wal", file + "-shm" })
                {
                    File.Delete(f);
                }

                return Task.CompletedTask;
            };
        }
        else
        {
            var name = $"ub_bench_{Guid.NewGuid():N}";
            await using (var admin = new NpgsqlConnection(PostgresServer))
            {
                await admin.OpenAsync();
                await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
                await create.ExecuteNonQueryAsync();
            }

            // Pool large enough for the naive baseline's 64 concurrent contexts.
            cs = new NpgsqlConnectionStringBuilder(PostgresServer) { Database = name, MaxPoolSize = 90 }.ToString();
            drop = async () =>
            {
                NpgsqlConnection.ClearAllPools();
                await using var admin = new NpgsqlConnection(PostgresServer);
                await admin.OpenAsync();
                await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", admin);
                await command.ExecuteNonQueryAsync();
            };
        }

        var services = new ServiceCollection();
        services.AddLogging();
        var builder = services.AddUsageBilling(o =>
        {
            o.Meters["ai_messages"] = new MeterDefinition { DisplayName = "AI messages" };

            // The recording benchmarks' users have no plan: they measure the write path, not the no-plan policy.
            o.Limits.NoPlan = NoPlanPolicy.Allow;
            configure?.Invoke(o);
        });
        if (provider == BenchProvider.Sqlite)
        {
            builder.UseSqlite(cs);
        }
        else
        {
            builder.UsePostgres(cs);
        }

        var sp = services.BuildServiceProvider();
        try
        {
            await sp.GetRequiredService<IUsageBillingDatabase>().MigrateAsync();
            var users = Enumerable.Range(0, userCount).Select(_ => Guid.NewGuid()).ToArray();
            await using (var context = CreateContext(sp, provider))
            {
                var now = DateTimeOffset.UtcNow;
                context.Users.AddRange(users.Select((id, i) => new BillingUser { Id = id, Email = $"user{i}@bench.example", CreatedAt = now }));
                if (customerPlan is not null)
                {
                    context.BillingCustomers.AddRange(users.Select((id, i) => new BillingCustomer { UserId = id, StripeCustomerId = $"cus_bench{i}", PlanId = customerPlan, CreatedAt = now, UpdatedAt = now }));
                }

                await context.SaveChangesAsync();
            }

            return new BenchDatabase(provider, cs, sp, users, drop);
        }
        catch
        {
            await sp.DisposeAsync();
            await drop();
            throw;
        }
    }

    /// <summary>A new context from the library's registered factory (the same options the store uses).</summary>
    public UsageBillingDbContext CreateContext() => CreateContext(Services, Provider);

    /// <summary>The number of rows in <c>usage_events</c>, counted by the database.</summary>
    public async Task<long> CountEventsAsync()
    {
        await using var context = CreateContext();
        return await context.UsageEvents.LongCountAsync();
    }

    private static UsageBillingDbContext CreateContext(IServiceProvider services, BenchProvider provider) =>
        provider == BenchProvider.Sqlite
            ? services.GetRequiredService<IDbContextFactory<SqliteUsageBillingDbContext>>().CreateDbContext()
            : services.GetRequiredService<IDbContextFactory<PostgresUsageBillingDbContext>>().CreateDbContext();

    /// <summary>Leave the database in place on dispose (to inspect it, or reuse it with <see cref="OpenPostgresAsync"/>).</summary>
    public bool Keep { get; set; }

    /// <summary>Wires the library to an existing PostgreSQL benchmark database (kept by an earlier run) and migrates it.</summary>
    public static async Task<BenchDatabase> OpenPostgresAsync(string databaseName, Action<UsageBillingOptions>? configure = null)
    {
        var cs = new NpgsqlConnectionStringBuilder(PostgresServer) { Database = databaseName, MaxPoolSize = 90 }.ToString();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddUsageBilling(o =>
        {
            o.Meters["ai_messages"] = new MeterDefinition { DisplayName = "AI messages" };
            o.Limits.NoPlan = NoPlanPolicy.Allow;
            configure?.Invoke(o);
        }).UsePostgres(cs);
        var sp = services.BuildServiceProvider();
        await sp.GetRequiredService<IUsageBillingDatabase>().MigrateAsync();
        await using var context = CreateContext(sp, BenchProvider.Postgres);
        var users = await context.Users.OrderBy(u => u.Email).Select(u => u.Id).ToListAsync();
        return new BenchDatabase(BenchProvider.Postgres, cs, sp, users, () => Task.CompletedTask) { Keep = true };
    }

    public async ValueTask DisposeAsync()
    {
        await Services.DisposeAsync();
        if (Keep)
        {
            Console.WriteLine($"# database kept: {new NpgsqlConnectionStringBuilder(ConnectionString).Database ?? ConnectionString}");
            return;
        }

        await _drop();
    }
}
