using System.CommandLine;
using Microsoft.EntityFrameworkCore;
using Spectre.Console;
using UsageBilling.Storage;

namespace UsageBilling.Cli.Commands;

/// <summary>
/// <c>flush [--customer ID]</c>: runs flush cycles until nothing it can lease is due, then prints what happened and
/// what still waits. Exit 0: all sent; 1: a report went dead or needs review; 4: some reports wait for a retry
/// (backoff); 5: another flusher holds some due reports; 2: configuration refused (key, meters).
/// </summary>
internal static class FlushCommand
{
    private const int MaxCycles = 1000;

    public static Command Create(GlobalOptions globals)
    {
        var customer = new Option<string?>("--customer") { Description = "Only this customer: the app's user id (a GUID) or the Stripe customer id (cus_…)." };
        var command = new Command("flush", "Report buffered usage to Stripe until nothing is due; exit 0 all sent, 1 dead or needs review, 4 some in backoff, 5 some held by another flusher.");
        command.Options.Add(customer);
        CliApp.SetHandler(command, globals, async (result, settings, ct) =>
        {
            await using var services = CliServices.Build(settings, Needs.Flusher | Needs.Meters);
            var (userId, stripeCustomerId) = await ResolveCustomerAsync(services, result.GetValue(customer), ct).ConfigureAwait(false);
            var flusher = services.Get<IUsageFlusher>();
            var console = Output.Console;
            var total = FlushResult.Empty;
            var cycles = 0;

            async Task RunAsync(Action<FlushResult> progress)
            {
                // One FlushOnceAsync claims and sends everything due; loop for events recorded meanwhile.
                while (cycles < MaxCycles)
                {
                    cycles++;
                    var before = total;
                    var cycle = userId is { } id
                        ? await flusher.FlushCustomerAsync(id, ct).ConfigureAwait(false)
                        : await flusher.FlushOnceAsync(new Progress(p => progress(before.Add(p))), ct).ConfigureAwait(false);
                    total = total.Add(cycle);
                    progress(total);
                    if (cycle.ConfigurationError is not null || (cycle.EventsClaimed == 0 && cycle.ReportsSent == 0 && cycle.ReportsDead == 0 && cycle.ReportsNeedingReview == 0))
                    {
                        break;
                    }
                }
            }

            if (Output.Interactive)
            {
                // Bars sized from the backlog at the start; the send bar grows as claims create reports.
                var start = await services.Get<IUsageFlushStore>().GetBacklogAsync(ct).ConfigureAwait(false);
                var pendingReports = start.ReportsByStatus.GetValueOrDefault(UsageReportStatus.Pending);
                await console.Progress().StartAsync(async ctx =>
                {
                    var claimBar = ctx.AddTask("Claiming events", maxValue: Math.Max(1, start.PendingEvents - start.PendingEventsWithoutCustomer));
                    var sendBar = ctx.AddTask("Sending reports", maxValue: Math.Max(1, pendingReports));
                    await RunAsync(p =>
                    {
                        claimBar.MaxValue = Math.Max(claimBar.MaxValue, p.EventsClaimed);
                        claimBar.Value = p.EventsClaimed;
                        sendBar.MaxValue = Math.Max(1, pendingReports + p.ReportsCreated - p.ReportsDead);
                        sendBar.Value = Math.Min(sendBar.MaxValue, p.ReportsSent + p.ReportsDead + p.ReportsNeedingReview);
                    }).ConfigureAwait(false);
                    claimBar.Value = claimBar.MaxValue;
                    sendBar.Value = sendBar.MaxValue;
                }).ConfigureAwait(false);
            }
            else
            {
                await RunAsync(_ => { }).ConfigureAwait(false);
            }

            var store = services.Get<IUsageFlushStore>();
            var backlog = await store.GetBacklogAsync(ct).ConfigureAwait(false);
            var now = services.Time.GetUtcNow();
            var leases = await store.GetLeasesAsync(now, stripeCustomerId, ct).ConfigureAwait(false);
            var table = Output.NewTable("Flush", "Count");
            table.AddRow("Events claimed", Output.N(total.EventsClaimed));
            table.AddRow("Reports created", Output.N(total.ReportsCreated));
            table.AddRow("Reports sent", Output.N(total.ReportsSent));
            table.AddRow("Reports retrying later", Output.N(total.ReportsRetried));
            table.AddRow("Reports dead", Output.N(total.ReportsDead));
            table.AddRow("Reports needing review", Output.N(total.ReportsNeedingReview));
            table.AddRow("Still pending reports", Output.N(backlog.ReportsByStatus.GetValueOrDefault(UsageReportStatus.Pending)));
            table.AddRow(Markup.Escape("  in backoff (retry later)"), Output.N(leases.InBackoff));
            table.AddRow(Markup.Escape("  held by another flusher"), Output.N(leases.Leased));
            table.AddRow(Markup.Escape("  due, not leased"), Output.N(leases.DueReports));
            table.AddRow("Events without a Stripe customer", Output.N(backlog.PendingEventsWithoutCustomer));
            console.Write(table);

            if (total.ConfigurationError is { } refused)
            {
                throw new CliException(
                    refused.Contains("flushing refused", StringComparison.Ordinal) ? refused : $"Stripe refused UsageBilling's credentials, flushing stopped: {refused}",
                    ExitCodes.BadInput);
            }

            if (total.ReportsDead > 0 || total.ReportsNeedingReview > 0)
            {
                Console.Error.WriteLine($"{total.ReportsDead} report(s) went dead and {total.ReportsNeedingReview} need review: see 'usagebilling status' and 'usagebilling reconcile --repair'.");
                return ExitCodes.Finding;
            }

            if (leases.InBackoff > 0)
            {
                Console.Error.WriteLine($"{leases.InBackoff} report(s) wait for a retry after Stripe failed transiently, the next at {Output.Time(leases.NextRetryAt)}; run flush again then (or let the background flusher).");
                return ExitCodes.InBackoff;
            }

            if (leases.Holders.Count > 0)
            {
                var holders = string.Join(", ", leases.Holders.Select(h => $"{h.Owner} ({Output.N(h.Reports)} until {Output.Time(h.ExpiresAt)})"));
                Console.Error.WriteLine($"{leases.Leased} report(s) are being sent by another flusher: {holders}; see 'usagebilling status'.");
                return ExitCodes.HeldElsewhere;
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>Reports synchronously on the flusher's thread (System.Progress would post to the thread pool, out of order).</summary>
    private sealed class Progress(Action<FlushResult> report) : IProgress<FlushResult>
    {
        public void Report(FlushResult value) => report(value);
    }

    /// <summary>The user id and (when the user has one) the Stripe customer of <c>--customer</c>.</summary>
    private static async Task<(Guid? UserId, string? StripeCustomerId)> ResolveCustomerAsync(CliServices services, string? customer, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(customer))
        {
            return (null, null);
        }

        await using var context = services.CreateContext();
        if (Guid.TryParse(customer, out var userId))
        {
            var stripeId = await context.BillingCustomers.AsNoTracking().Where(c => c.UserId == userId)
                .Select(c => c.StripeCustomerId).FirstOrDefaultAsync(ct).ConfigureAwait(false);
            return (userId, stripeId ?? "");
        }

        if (!customer.StartsWith("cus_", StringComparison.Ordinal))
        {
            throw new CliException($"--customer must be a user id (GUID) or a Stripe customer id (cus_…), was '{customer}'.");
        }

        var found = await context.BillingCustomers.AsNoTracking().Where(c => c.StripeCustomerId == customer)
            .Select(c => (Guid?)c.UserId).FirstOrDefaultAsync(ct).ConfigureAwait(false);
        return (found ?? throw new CliException($"no user has Stripe customer {customer}."), customer);
    }
}
