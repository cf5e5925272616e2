using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace UsageBilling.Cli;

/// <summary>The database the CLI talks to.</summary>
internal enum DatabaseProvider
{
    Sqlite,
    Postgres,
}

/// <summary>The global options every command accepts.</summary>
/// <param name="Connection">--connection.</param>
/// <param name="Provider">--provider.</param>
/// <param name="StripeKey">--stripe-key.</param>
/// <param name="StripeApiBase">--stripe-api-base.</param>
/// <param name="Verbose">--verbose.</param>
internal sealed record GlobalValues(string? Connection, string? Provider, string? StripeKey, string? StripeApiBase, bool Verbose);

/// <summary>
/// The configuration the app reads (appsettings.json in the current folder, then environment variables
/// such as <c>ConnectionStrings__UsageBilling</c>, <c>Stripe__SecretKey</c>, <c>UsageBilling__Meters__…</c>),
/// with the command-line options on top.
/// </summary>
internal sealed class CliSettings
{
    /// <summary>The web app's default SQLite file, relative to the folder the command runs in.</summary>
    public const string DefaultSqliteConnection = "Data Source=data/usagebilling.db";

    private CliSettings(IConfiguration configuration, GlobalValues values)
    {
        Configuration = configuration;
        Values = values;
    }

    public IConfiguration Configuration { get; }

    public GlobalValues Values { get; }

    public bool Verbose => Values.Verbose;

    /// <summary>The Stripe section bound without validation (for display; commands that call Stripe validate it).</summary>
    public StripeOptions StripeForDisplay => Configuration.GetSection(StripeOptions.SectionName).Get<StripeOptions>() ?? new StripeOptions();

    public static CliSettings Load(GlobalValues values)
    {
        var overrides = new Dictionary<string, string?>(StringComparer.Ordinal);
        if (values.Connection is not null)
        {
            overrides["ConnectionStrings:UsageBilling"] = values.Connection;
        }

        if (values.Provider is not null)
        {
            overrides["Database:Provider"] = values.Provider;
        }

        if (values.StripeKey is not null)
        {
            overrides["Stripe:SecretKey"] = values.StripeKey;
        }

        if (values.StripeApiBase is not null)
        {
            overrides["Stripe:ApiBase"] = values.StripeApiBase;
        }

        IConfiguration configuration;
        try
        {
            configuration = new ConfigurationBuilder()
                .SetBasePath(Directory.GetCurrentDirectory())
                .AddJsonFile("appsettings.json", optional: true, reloadOnChange: false)
                .AddEnvironmentVariables()
                .AddInMemoryCollection(overrides)
                .Build();
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException)
        {
            throw new CliException($"appsettings.json in {Directory.GetCurrentDirectory()} is not valid JSON: {ex.InnerException?.Message ?? ex.Message}");
        }

        return new CliSettings(configuration, values);
    }

    /// <summary>The connection string and provider; <paramref name="mustExist"/> refuses a SQLite file that is not there yet (only <c>db migrate</c> creates one).</summary>
    public (DatabaseProvider Provider, string ConnectionString) Database(bool mustExist)
    {
        var connection = Configuration.GetConnectionString("UsageBilling");
        var providerText = Configuration["Database:Provider"];
        DatabaseProvider? provider = providerText switch
        {
            null or "" => null,
            _ when providerText.Equals("sqlite", StringComparison.OrdinalIgnoreCase) => DatabaseProvider.Sqlite,
            _ when providerText.Equals("postgres", StringComparison.OrdinalIgnoreCase) || providerText.Equals("postgresql", StringComparison.OrdinalIgnoreCase) => DatabaseProvider.Postgres,
            _ => throw new CliException($"--provider (Database:Provider) must be sqlite or postgres, was '{providerText}'."),
        };

        if (string.IsNullOrWhiteSpace(connection))
        {
            if (provider == DatabaseProvider.Postgres)
            {
                throw new CliException("PostgreSQL needs a connection string: pass --connection or set ConnectionStrings__UsageBilling.");
            }

            connection = DefaultSqliteConnection;
            provider = DatabaseProvider.Sqlite;
        }

        provider ??= Infer(connection);
        if (provider == DatabaseProvider.Sqlite)
        {
            string file;
            try
            {
                file = new SqliteConnectionStringBuilder(connection).DataSource;
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException or KeyNotFoundException)
            {
                throw new CliException($"the SQLite connection string is malformed: {ex.Message}");
            }

            if (mustExist && !string.IsNullOrEmpty(file) && file != ":memory:" && !File.Exists(file))
            {
                throw new CliException($"no SQLite database at '{Path.GetFullPath(file)}': pass --connection, set ConnectionStrings__UsageBilling, or create it with 'usagebilling db migrate'.");
            }
        }
        else
        {
            try
            {
                _ = new NpgsqlConnectionStringBuilder(connection);
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException or KeyNotFoundException)
            {
                throw new CliException($"the PostgreSQL connection string is malformed: {ex.Message}");
            }
        }

        return (provider.Value, connection);
    }

    /// <summary>Guesses the provider from the connection string's keywords.</summary>
    internal static DatabaseProvider Infer(string connection)
    {
        var keys = connection.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(part => part.Split('=', 2)[0].Trim().Replace(" ", "", StringComparison.Ordinal).ToUpperInvariant())
            .ToHashSet(StringComparer.Ordinal);
        if (keys.Contains("HOST") || keys.Contains("SERVER"))
        {
            return DatabaseProvider.Postgres;
        }

        if (keys.Contains("DATASOURCE") || keys.Contains("FILENAME"))
        {
            return DatabaseProvider.Sqlite;
        }

        throw new CliException("cannot tell the database from the connection string: pass --provider sqlite or --provider postgres.");
    }

    /// <summary>A connection string fit to print: passwords masked.</summary>
    public static string Redact(DatabaseProvider provider, string connection)
    {
        if (provider == DatabaseProvider.Postgres)
        {
            var builder = new NpgsqlConnectionStringBuilder(connection);
            return $"{builder.Host}:{builder.Port}/{builder.Database}";
        }

        return new SqliteConnectionStringBuilder(connection).DataSource;
    }
}
