using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Spectre.Console;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.Storage;

namespace UsageBilling.Cli.Commands;

/// <summary><c>status [--json]</c>: the flush backlog from the database — pending reports due, in backoff and leased, and each live lease's owner and expiry — and which Stripe the configuration points at. Calls no Stripe API.</summary>
internal static class StatusCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var json = new Option<bool>("--json") { Description = "Print the numbers as JSON (for scripts and monitoring)." };
        var command = new Command("status", "Pending events, oldest pending age, reports by status, leases (owner, expiry), last flush and sent, Stripe mode.");
        command.Options.Add(json);
        CliApp.SetHandler(command, globals, async (result, settings, ct) =>
        {
            await using var services = CliServices.Build(settings, Needs.Database);
            var backlog = await services.Get<IUsageFlushStore>().GetBacklogAsync(ct).ConfigureAwait(false);
            DateTimeOffset? lastClaim;
            await using (var context = services.CreateContext())
            {
                lastClaim = await context.UsageReports.AsNoTracking().OrderByDescending(r => r.CreatedAt)
                    .Select(r => (DateTimeOffset?)r.CreatedAt).FirstOrDefaultAsync(ct).ConfigureAwait(false);
            }

            var now = services.Time.GetUtcNow();
            var leases = await services.Get<IUsageFlushStore>().GetLeasesAsync(now, null, ct).ConfigureAwait(false);
            var stripe = StripeMode.Describe(settings.StripeForDisplay);
            var database = $"{services.DatabaseProvider} {CliSettings.Redact(services.DatabaseProvider!.Value, services.ConnectionString!)}";
            long Count(UsageReportStatus s) => backlog.ReportsByStatus.GetValueOrDefault(s);
            var statuses = Enum.GetValues<UsageReportStatus>();

            if (result.GetValue(json))
            {
                var reports = new JsonObject();
                foreach (var s in statuses)
                {
                    reports[UsageBillingModelBuilderExtensions.StatusToText(s)] = Count(s);
                }

                var doc = new JsonObject
                {
                    ["database"] = database,
                    ["stripe_mode"] = stripe,
                    ["pending_events"] = backlog.PendingEvents,
                    ["pending_events_without_customer"] = backlog.PendingEventsWithoutCustomer,
                    ["oldest_unreported_at"] = backlog.OldestUnreportedAt?.ToString("O"),
                    ["oldest_unreported_age_seconds"] = backlog.OldestUnreportedAt is { } o ? (long)(now - o).TotalSeconds : null,
                    ["reports"] = reports,
                    ["pending_due"] = leases.DueReports,
                    ["pending_in_backoff"] = leases.InBackoff,
                    ["next_retry_at"] = leases.NextRetryAt?.ToString("O"),
                    ["pending_leased"] = leases.Leased,
                    ["leases"] = new JsonArray([.. leases.Holders.Select(h => (JsonNode)new JsonObject
                    {
                        ["owner"] = h.Owner,
                        ["reports"] = h.Reports,
                        ["expires_at"] = h.ExpiresAt.ToString("O"),
                        ["expires_in_seconds"] = (long)Math.Ceiling((h.ExpiresAt - now).TotalSeconds),
                    })]),
                    ["last_flush_at"] = lastClaim?.ToString("O"),
                    ["last_sent_at"] = backlog.LastSentAt?.ToString("O"),
                };
                Console.Out.WriteLine(doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return ExitCodes.Ok;
            }

            var grid = new Grid().AddColumn().AddColumn();
            void Row(string name, string value) => grid.AddRow(Markup.Escape(name), Markup.Escape(value));
            Row("Database", database);
            Row("Stripe", stripe);
            Row("Pending events", $"{Output.N(backlog.PendingEvents)} ({Output.N(backlog.PendingEventsWithoutCustomer)} without a Stripe customer)");
            Row("Oldest unreported", backlog.OldestUnreportedAt is { } oldest ? $"{Output.Age(now - oldest)} ago ({Output.Time(oldest)})" : "none");
            Row("Reports", string.Join("  ", statuses.Select(s => $"{UsageBillingModelBuilderExtensions.StatusToText(s)} {Output.N(Count(s))}")));
            Row("Pending reports", $"{Output.N(leases.DueReports)} due, {Output.N(leases.InBackoff)} in backoff{(leases.NextRetryAt is { } next ? $" (next retry {Output.Time(next)})" : "")}, {Output.N(leases.Leased)} leased");
            Row("Leases", leases.Holders.Count == 0 ? "none" : $"{leases.Holders.Count} flusher(s)");
            foreach (var holder in leases.Holders)
            {
                Row($"  {holder.Owner}", $"{Output.N(holder.Reports)} report(s) until {Output.Time(holder.ExpiresAt)} (in {Output.Age(holder.ExpiresAt - now)})");
            }

            Row("Last flush (report claimed)", Output.Time(lastClaim));
            Row("Last sent (Stripe acknowledged)", Output.Time(backlog.LastSentAt));
            Output.Console.Write(grid);
            if (Count(UsageReportStatus.NeedsReview) > 0)
            {
                Output.Console.WriteLine("Reports need review: run 'usagebilling reconcile --repair'.");
            }

            return ExitCodes.Ok;
        });
        return command;
    }
}
