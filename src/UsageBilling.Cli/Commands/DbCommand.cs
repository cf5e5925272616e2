using System.CommandLine;
using Spectre.Console;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.Cli.Commands;

/// <summary>
/// <c>db prune --keep 90d</c>: removes acknowledged history older than the window (<see cref="IUsageRetention"/>).
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

        var keep = new Option<string>("--keep") { Description = "History to keep, in days (for example 90d; at least 35d, Stripe's meter-event window).", Required = true };
        var prune = new Command("prune", "Fold the hourly rollup rows of closed sparse days into the daily rollup, then delete events Stripe acknowledged before the window (never pending or unacknowledged ones) and the hourly rollup rows no summary reads; summaries, past periods and reconcile answer the same from the rollups and reports.");
        prune.Options.Add(keep);
        CliApp.SetHandler(prune, globals, (result, settings, ct) => PruneAsync(ParseKeep(result.GetValue(keep)), settings, ct));
        db.Subcommands.Add(prune);
        return db;
    }

    /// <summary>Parses <c>90d</c> into 90 days; anything else, or less than the minimum, is one clear line.</summary>
    internal static TimeSpan ParseKeep(string? text)
    {
        var value = text?.Trim() ?? "";
        if (value.Length < 2 || value[^1] is not ('d' or 'D')
            || !int.TryParse(value.AsSpan(0, value.Length - 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var days))
        {
            throw new CliException($"--keep must be a number of days such as 90d; got '{text}'");
        }

        var keep = TimeSpan.FromDays(days);
        if (keep < IUsageRetention.MinimumKeep)
        {
            throw new CliException($"--keep must be at least {IUsageRetention.MinimumKeep.TotalDays:0}d (Stripe's meter-event window: younger events can still be recorded, sent or corrected); got {value}");
        }

        return keep;
    }

    private static async Task<int> PruneAsync(TimeSpan keep, CliSettings settings, CancellationToken cancellationToken)
    {
        // No meter configuration needed: pruning reads the database alone.
        await using var services = CliServices.Build(settings, Needs.Database);
        var retention = services.Get<IUsageRetention>();

        // The fold first (as the retention service does): a folded day that holds a period edge keeps its events.
        var folded = await retention.FoldHoursAsync(cancellationToken).ConfigureAwait(false);
        var result = await retention.PruneAsync(keep, cancellationToken).ConfigureAwait(false);
        Output.Console.WriteLine(
            $"Pruned {result.EventsDeleted:N0} acknowledged event(s) and {result.HourlyRowsFolded:N0} hourly rollup row(s) from before {result.Cutoff:yyyy-MM-dd HH:mm} UTC across {result.Accounts:N0} account(s); the daily rollup and the reports keep their totals."
            + (result.PartitionsDropped > 0 ? $" {result.PartitionsDropped:N0} monthly partition(s) of usage_events were dropped whole." : "")
            + (folded.DaysFolded > 0 ? $" The hours of {folded.DaysFolded:N0} closed account·meter·day(s) were folded into the daily rollup ({folded.HourlyRowsDeleted:N0} hourly row(s))." : ""));
        return ExitCodes.Ok;
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
