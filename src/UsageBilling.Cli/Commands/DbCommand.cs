using System.CommandLine;
using Spectre.Console;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.Cli.Commands;

/// <summary>
/// <c>db migrate</c>: applies the built-in UsageBilling schema's migrations (SQLite or PostgreSQL). A database
/// migrated by another migration set (the web app's Identity context) is refused: the web app owns its schema.
/// </summary>
internal static class DbCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var db = new Command("db", "Database schema operations.");
        var migrate = new Command("migrate", "Apply the UsageBilling schema migrations to the configured database (the production path).");
        CliApp.SetHandler(migrate, globals, MigrateAsync);
        db.Subcommands.Add(migrate);
        return db;
    }

    private static async Task<int> MigrateAsync(ParseResult result, CliSettings settings, CancellationToken cancellationToken)
    {
        await using var services = CliServices.Build(settings, Needs.Database, databaseMustExist: false);
        var console = Output.Console;
        List<string> pending;
        await using (var context = services.CreateContext())
        {
            var known = context.Database.GetMigrations().ToHashSet(StringComparer.Ordinal);
            var applied = (await context.Database.GetAppliedMigrationsAsync(cancellationToken).ConfigureAwait(false)).ToList();
            var foreign = applied.Where(m => !known.Contains(m)).ToList();
            if (foreign.Count > 0)
            {
                throw new CliException(
                    $"this database carries migrations that are not UsageBilling's ({string.Join(", ", foreign.Take(3))}{(foreign.Count > 3 ? ", …" : "")}): "
                    + "it belongs to an app with its own DbContext (such as UsageBilling.Web), which applies its own migrations. 'db migrate' manages only the built-in UsageBilling schema.");
            }

            pending = [.. await context.Database.GetPendingMigrationsAsync(cancellationToken).ConfigureAwait(false)];
        }

        await services.Get<IUsageBillingDatabase>().MigrateAsync(cancellationToken).ConfigureAwait(false);
        var target = CliSettings.Redact(services.DatabaseProvider!.Value, services.ConnectionString!);
        if (pending.Count == 0)
        {
            console.WriteLine($"{services.DatabaseProvider} database {target} is up to date.");
        }
        else
        {
            console.WriteLine($"Applied {pending.Count} migration(s) to {services.DatabaseProvider} database {target}:");
            foreach (var migration in pending)
            {
                console.WriteLine($"  {migration}");
            }
        }

        return ExitCodes.Ok;
    }
}
