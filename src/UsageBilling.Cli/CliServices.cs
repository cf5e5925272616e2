using UsageBilling.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.Cli;

/// <summary>What a command needs wired.</summary>
[Flags]
internal enum Needs
{
    None = 0,
    Database = 1,
    Stripe = 2,
    Flusher = 4 | Database | Stripe,
    Provisioner = 8 | Stripe,
    Meters = 16,
}

/// <summary>
/// A plain service provider wired like the app (<c>AddUsageBilling</c>, the store, Stripe, the flusher), without
/// a host: the flusher's background service never starts, commands call <see cref="IUsageFlusher"/> directly.
/// </summary>
internal sealed class CliServices : IAsyncDisposable
{
    private readonly ServiceProvider _provider;

    private CliServices(ServiceProvider provider, DatabaseProvider? database, string? connection)
    {
        _provider = provider;
        DatabaseProvider = database;
        ConnectionString = connection;
    }

    public DatabaseProvider? DatabaseProvider { get; }

    public string? ConnectionString { get; }

    public TimeProvider Time => Get<TimeProvider>();

    public T Get<T>()
        where T : notnull => _provider.GetRequiredService<T>();

    public static CliServices Build(CliSettings settings, Needs needs, bool databaseMustExist = true)
    {
        var config = settings.Configuration;
        var services = new ServiceCollection();
        services.AddLogging(b =>
        {
            b.ClearProviders();
            if (settings.Verbose)
            {
                b.AddSimpleConsole(o => o.SingleLine = true);
                b.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
                b.SetMinimumLevel(LogLevel.Information);
                b.AddFilter("Microsoft.EntityFrameworkCore", LogLevel.Warning);
            }
        });

        var builder = services.AddUsageBilling(config.GetSection(UsageBillingOptions.SectionName));
        DatabaseProvider? provider = null;
        string? connection = null;
        if (needs.HasFlag(Needs.Database))
        {
            (var p, connection) = settings.Database(databaseMustExist);
            provider = p;
            try
            {
                _ = p == Cli.DatabaseProvider.Sqlite ? builder.UseSqlite(connection) : builder.UsePostgres(connection);
            }
            catch (ArgumentException ex)
            {
                throw new CliException(ex.Message);
            }
        }

        if (needs.HasFlag(Needs.Stripe))
        {
            builder.UseStripe(config.GetSection(StripeOptions.SectionName));
        }

        if ((needs & Needs.Flusher) == Needs.Flusher)
        {
            builder.AddFlusher(config.GetSection("UsageBilling:Flush"));

            // No host runs here, so the background service would not start anyway; say so explicitly.
            services.PostConfigure<FlushOptions>(o => o.Enabled = false);
        }

        if ((needs & Needs.Provisioner) == Needs.Provisioner)
        {
            builder.AddStripeProvisioner();
        }

        var serviceProvider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true });
        var cli = new CliServices(serviceProvider, provider, connection);

        // A plain provider does not run ValidateOnStart: resolve the options now so a wrong setting is one clear line.
        if (needs.HasFlag(Needs.Meters))
        {
            _ = cli.Get<IOptions<UsageBillingOptions>>().Value;
        }

        if (needs.HasFlag(Needs.Stripe))
        {
            _ = cli.Get<IOptions<StripeOptions>>().Value;
        }

        if ((needs & Needs.Flusher) == Needs.Flusher)
        {
            _ = cli.Get<IOptions<FlushOptions>>().Value;
        }

        return cli;
    }

    /// <summary>A context on the built-in UsageBilling model (it maps the same usage tables the web app's context does).</summary>
    public UsageBillingDbContext CreateContext() => DatabaseProvider switch
    {
        Cli.DatabaseProvider.Sqlite => Get<IDbContextFactory<SqliteUsageBillingDbContext>>().CreateDbContext(),
        Cli.DatabaseProvider.Postgres => Get<IDbContextFactory<PostgresUsageBillingDbContext>>().CreateDbContext(),
        _ => throw new InvalidOperationException("This command did not ask for a database."),
    };

    public async ValueTask DisposeAsync()
    {
        await _provider.DisposeAsync().ConfigureAwait(false);
        if (DatabaseProvider == Cli.DatabaseProvider.Sqlite)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        }
    }
}
