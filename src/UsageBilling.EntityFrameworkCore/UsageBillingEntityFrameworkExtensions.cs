using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using UsageBilling.EntityFrameworkCore.Storage;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore;

/// <summary>Chooses the database: <c>AddUsageBilling(...).UseSqlite(cs)</c> or <c>.UsePostgres(cs)</c>.</summary>
public static class UsageBillingEntityFrameworkExtensions
{
    /// <summary>Stores usage in a SQLite file (WAL, synchronous=FULL) with the built-in <see cref="SqliteUsageBillingDbContext"/>.</summary>
    /// <param name="builder">The UsageBilling builder.</param>
    /// <param name="connectionString">A connection string naming a file, e.g. <c>Data Source=data/usage.db</c>.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder UseSqlite(this UsageBillingBuilder builder, string connectionString) =>
        builder.UseSqlite<SqliteUsageBillingDbContext>(connectionString);

    /// <summary>Stores usage in a SQLite file through the app's own context, which applied <see cref="UsageBillingModelBuilderExtensions.ApplyUsageBillingModel{TUser}"/> and <see cref="UsageBillingSqliteConventions.UseUsageBillingSqliteConventions"/>.</summary>
    /// <typeparam name="TContext">The app's context.</typeparam>
    /// <param name="builder">The UsageBilling builder.</param>
    /// <param name="connectionString">A connection string naming a file.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder UseSqlite<TContext>(this UsageBillingBuilder builder, string connectionString)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(builder);
        var normalized = NormalizeSqlite(connectionString);
        builder.Services.AddDbContextFactory<TContext>(o => o.UseSqlite(normalized).AddInterceptors(SqliteDurabilityInterceptor.Instance));
        return builder.UseStore<TContext>(new SqliteUsageSqlDialect(), new SqliteFlushSqlDialect());
    }

    /// <summary>Stores usage in PostgreSQL with the built-in <see cref="PostgresUsageBillingDbContext"/>.</summary>
    /// <param name="builder">The UsageBilling builder.</param>
    /// <param name="connectionString">An Npgsql connection string.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder UsePostgres(this UsageBillingBuilder builder, string connectionString) =>
        builder.UsePostgres<PostgresUsageBillingDbContext>(connectionString);

    /// <summary>Stores usage in PostgreSQL through the app's own context, which applied <see cref="UsageBillingModelBuilderExtensions.ApplyUsageBillingModel{TUser}"/>.</summary>
    /// <typeparam name="TContext">The app's context.</typeparam>
    /// <param name="builder">The UsageBilling builder.</param>
    /// <param name="connectionString">An Npgsql connection string.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder UsePostgres<TContext>(this UsageBillingBuilder builder, string connectionString)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new ArgumentException("A PostgreSQL connection string is required, e.g. 'Host=127.0.0.1;Database=usage;Username=app;Password=…'.", nameof(connectionString));
        }

        builder.Services.AddDbContextFactory<TContext>(o => o.UseNpgsql(connectionString));
        return builder.UseStore<TContext>(new PostgresUsageSqlDialect(), new PostgresFlushSqlDialect());
    }

    private static UsageBillingBuilder UseStore<TContext>(this UsageBillingBuilder builder, IUsageSqlDialect dialect, IFlushSqlDialect flushDialect)
        where TContext : DbContext
    {
        builder.Services.RemoveAll<IUsageStore>();
        builder.Services.RemoveAll<IUsageFlushStore>();
        builder.Services.RemoveAll<ISpendControlStore>();
        builder.Services.AddSingleton(sp => new EfUsageStore<TContext>(
            sp.GetRequiredService<IDbContextFactory<TContext>>(),
            dialect,
            new UsageGuard(sp.GetRequiredService<IOptions<UsageBillingOptions>>().Value),
            sp.GetRequiredService<TimeProvider>()));
        builder.Services.AddSingleton<IUsageStore>(sp => sp.GetRequiredService<EfUsageStore<TContext>>());
        builder.Services.AddSingleton<ISpendControlStore>(sp => sp.GetRequiredService<EfUsageStore<TContext>>());
        builder.Services.AddSingleton<IUsageFlushStore>(sp => new EfUsageFlushStore<TContext>(sp.GetRequiredService<IDbContextFactory<TContext>>(), flushDialect, dialect, sp.GetRequiredService<TimeProvider>()));
        builder.Services.RemoveAll<IUsageCorrectionStore>();
        builder.Services.AddSingleton<IUsageCorrectionStore>(sp => new EfUsageCorrectionStore<TContext>(sp.GetRequiredService<IDbContextFactory<TContext>>(), flushDialect, dialect));
        builder.Services.RemoveAll<IUsageRetentionStore>();
        builder.Services.AddSingleton<IUsageRetentionStore>(sp => new EfUsageRetentionStore<TContext>(sp.GetRequiredService<IDbContextFactory<TContext>>(), dialect is PostgresUsageSqlDialect));
        builder.Services.RemoveAll<IUsageApiKeyStore>();
        builder.Services.AddSingleton<IUsageApiKeyStore>(sp => new EfUsageApiKeyStore<TContext>(sp.GetRequiredService<IDbContextFactory<TContext>>()));
        builder.Services.RemoveAll<IBillingAccountStore>();
        builder.Services.AddSingleton<IBillingAccountStore>(sp => new EfBillingAccountStore<TContext>(sp.GetRequiredService<IDbContextFactory<TContext>>(), sp.GetRequiredService<TimeProvider>()));
        builder.Services.TryAddSingleton<IUsageBillingDatabase, UsageBillingDatabase<TContext>>();
        return builder;
    }

    /// <summary>Checks that a SQLite connection string names a file and creates its folder.</summary>
    /// <param name="connectionString">The connection string.</param>
    /// <returns>The connection string to use.</returns>
    /// <exception cref="ArgumentException">It is empty or in memory.</exception>
    internal static string NormalizeSqlite(string connectionString)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new ArgumentException("A SQLite connection string is required, e.g. 'Data Source=data/usage.db'.", nameof(connectionString));
        }

        SqliteConnectionStringBuilder parsed;
        try
        {
            parsed = new SqliteConnectionStringBuilder(connectionString);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or KeyNotFoundException)
        {
            throw new ArgumentException($"The SQLite connection string is malformed: {ex.Message}", nameof(connectionString), ex);
        }

        var source = parsed.DataSource;
        if (string.IsNullOrWhiteSpace(source) || source == ":memory:" || parsed.Mode == SqliteOpenMode.Memory)
        {
            throw new ArgumentException("The SQLite connection string must name a file (e.g. 'Data Source=data/usage.db'): an in-memory database is not durable, and usage must survive a crash.", nameof(connectionString));
        }

        var folder = Path.GetDirectoryName(Path.GetFullPath(source));
        if (!string.IsNullOrEmpty(folder))
        {
            Directory.CreateDirectory(folder);
        }

        return parsed.ToString();
    }

    /// <summary>Every SQLite connection runs in WAL mode with full fsync on commit: "committed" means durable.</summary>
    private sealed class SqliteDurabilityInterceptor : DbConnectionInterceptor
    {
        public static readonly SqliteDurabilityInterceptor Instance = new();

        public override void ConnectionOpened(DbConnection connection, ConnectionEndEventData eventData) => Apply(connection);

        public override Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData, CancellationToken cancellationToken = default)
        {
            Apply(connection);
            return Task.CompletedTask;
        }

        private static void Apply(DbConnection connection)
        {
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000;";
            command.ExecuteNonQuery();
        }
    }
}

/// <summary>Schema operations on the UsageBilling database.</summary>
public interface IUsageBillingDatabase
{
    /// <summary>Applies pending migrations (the production path is the CLI's <c>db migrate</c>).</summary>
    /// <param name="cancellationToken">Cancels the migration.</param>
    /// <returns>A task that completes when the schema is current.</returns>
    Task MigrateAsync(CancellationToken cancellationToken = default);
}

/// <summary>Applies the migrations of <typeparamref name="TContext"/>.</summary>
/// <typeparam name="TContext">The context.</typeparam>
/// <param name="contexts">The context factory.</param>
internal sealed class UsageBillingDatabase<TContext>(IDbContextFactory<TContext> contexts) : IUsageBillingDatabase
    where TContext : DbContext
{
    public async Task MigrateAsync(CancellationToken cancellationToken = default)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Database.MigrateAsync(cancellationToken).ConfigureAwait(false);
    }
}
