using System.CommandLine;
using System.Globalization;
using Microsoft.EntityFrameworkCore;
using Spectre.Console;
using Stripe;
using Stripe.Billing;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.Cli.Commands;

/// <summary>
/// <c>reconcile [--period current|previous] [--repair]</c>: for every customer·meter·period with sent (or
/// needs-review) reports, compares the local sent total with Stripe's meter event summary over the period
/// (minute-aligned), and explains the drift by reports whose delivery is unknown. <c>--repair</c> resolves
/// needs-review reports: Stripe has them → marked sent; it does not → superseded by a new pending report with a
/// fresh identifier (the old report keeps its identifier and becomes dead), which the next flush sends.
/// </summary>
internal static class ReconcileCommand
{
    /// <summary>Above this many unknown reports in one group, the subset search is not attempted.</summary>
    private const int MaxCandidates = 16;

    public static Command Create(GlobalOptions globals)
    {
        var period = new Option<string>("--period") { Description = "current (periods containing now) or previous (each customer·meter's latest ended period).", DefaultValueFactory = _ => "current" };
        period.AcceptOnlyFromAmong("current", "previous");
        var repair = new Option<bool>("--repair") { Description = "Resolve needs_review reports: mark sent when Stripe has them, else resend under a new identifier." };
        var command = new Command("reconcile", "Compare local sent totals with Stripe's meter event summaries; exit 1 on unexplained drift.");
        command.Options.Add(period);
        command.Options.Add(repair);
        CliApp.SetHandler(command, globals, (result, settings, ct) => RunAsync(settings, result.GetValue(period) == "previous", result.GetValue(repair), ct));
        return command;
    }

    private static async Task<int> RunAsync(CliSettings settings, bool previous, bool repair, CancellationToken ct)
    {
        await using var services = CliServices.Build(settings, Needs.Database | Needs.Stripe | Needs.Meters);
        var console = Output.Console;
        var now = services.Time.GetUtcNow();
        var groups = await LoadGroupsAsync(services, now, previous, ct).ConfigureAwait(false);
        if (groups.Count == 0)
        {
            console.WriteLine($"Nothing to reconcile: no sent or needs_review reports in the {(previous ? "previous" : "current")} period.");
            return ExitCodes.Ok;
        }

        var stripe = services.Get<StripeClient>();
        var meterIds = new Dictionary<string, string>(StringComparer.Ordinal);
        await foreach (var meter in stripe.V1.Billing.Meters.ListAutoPagingAsync(new MeterListOptions { Limit = 100 }, cancellationToken: ct).ConfigureAwait(false))
        {
            if (!meterIds.ContainsKey(meter.EventName) || meter.Status == "active")
            {
                meterIds[meter.EventName] = meter.Id;
            }
        }

        var summaries = new MeterEventSummaryService(stripe);
        var table = Output.NewTable("Customer", "Meter", "Period", "Local sent", "Stripe", "Drift", "Result");
        int unexplained = 0, markedSent = 0, resent = 0, toReview = 0;
        foreach (var group in groups)
        {
            var sent = group.Reports.Where(r => r.Status == UsageReportStatus.Sent).Sum(r => r.Quantity);
            var unknown = group.Reports.Where(r => r.Status != UsageReportStatus.Sent).ToList();
            string result;
            decimal? stripeTotal = null;
            if (!meterIds.TryGetValue(group.Meter, out var meterId))
            {
                result = "UNEXPLAINED: no such meter in Stripe (run 'usagebilling setup')";
                unexplained++;
            }
            else
            {
                var start = FloorMinute(group.PeriodStart);
                var end = CeilMinute(group.PeriodEnd);
                var list = await summaries.ListAsync(
                    meterId,
                    new MeterEventSummaryListOptions { Customer = group.Customer, StartTime = start.UtcDateTime, EndTime = end.UtcDateTime, Limit = 100 },
                    cancellationToken: ct).ConfigureAwait(false);
                stripeTotal = list.Data.Sum(s => (decimal)s.AggregatedValue);
                var drift = stripeTotal.Value - sent;
                var arrived = Explain(unknown, drift);
                if (arrived is null)
                {
                    result = unknown.Count == 0 ? "UNEXPLAINED drift" : $"UNEXPLAINED drift ({unknown.Count} report(s) of unknown delivery do not account for it)";
                    unexplained++;
                }
                else
                {
                    var notes = new List<string>();
                    var review = unknown.Where(r => r.Status == UsageReportStatus.NeedsReview).ToList();
                    var inFlight = unknown.Count - review.Count;
                    if (inFlight > 0)
                    {
                        notes.Add($"{inFlight} pending report(s) in flight, left to the flusher");
                    }

                    foreach (var report in review)
                    {
                        var delivered = arrived.Contains(report.Id);
                        if (!repair)
                        {
                            toReview++;
                            notes.Add($"needs_review {report.Id}: {(delivered ? "Stripe has it" : "not in Stripe")} (--repair {(delivered ? "marks it sent" : "resends it")})");
                        }
                        else if (delivered)
                        {
                            await MarkSentAsync(services, report.Id, now, ct).ConfigureAwait(false);
                            markedSent++;
                            notes.Add($"needs_review {report.Id}: in Stripe, marked sent");
                        }
                        else
                        {
                            var replacement = await SupersedeAsync(services, report.Id, now, ct).ConfigureAwait(false);
                            resent++;
                            notes.Add($"needs_review {report.Id}: not in Stripe, superseded by {replacement}");
                        }
                    }

                    result = notes.Count == 0 ? "ok" : (drift == 0 ? "ok; " : "explained; ") + string.Join("; ", notes);
                }
            }

            table.AddRow(
                Markup.Escape(group.Customer),
                Markup.Escape(group.Meter),
                Markup.Escape($"{group.PeriodStart.UtcDateTime:yyyy-MM-dd HH:mm}..{group.PeriodEnd.UtcDateTime:yyyy-MM-dd HH:mm}"),
                Output.N(sent),
                stripeTotal is { } t ? t.ToString(CultureInfo.InvariantCulture) : "-",
                stripeTotal is { } d ? (d - sent).ToString("+0;-0;0", CultureInfo.InvariantCulture) : "-",
                Markup.Escape(result));
        }

        console.Write(table);
        console.WriteLine($"{groups.Count} customer·meter·period(s) checked: {unexplained} with unexplained drift"
            + (repair ? $", {markedSent} needs_review report(s) marked sent, {resent} superseded by new pending reports" : $", {toReview} needs_review report(s) to repair")
            + ".");
        if (resent > 0)
        {
            console.WriteLine("The new reports are pending under fresh identifiers: 'usagebilling flush' sends them.");
        }

        if (unexplained > 0)
        {
            Console.Error.WriteLine($"unexplained drift in {unexplained} customer·meter·period(s): Stripe's totals differ from what UsageBilling sent.");
            return ExitCodes.Finding;
        }

        return ExitCodes.Ok;
    }

    private sealed record Group(string Customer, string Meter, DateTimeOffset PeriodStart, DateTimeOffset PeriodEnd, List<UsageReport> Reports);

    private static async Task<List<Group>> LoadGroupsAsync(CliServices services, DateTimeOffset now, bool previous, CancellationToken ct)
    {
        await using var context = services.CreateContext();
        var relevant = context.UsageReports.AsNoTracking().Where(r =>
            r.Status == UsageReportStatus.Sent
            || r.Status == UsageReportStatus.NeedsReview
            || (r.Status == UsageReportStatus.Pending && r.FirstAttemptAt != null));
        relevant = previous
            ? relevant.Where(r => r.PeriodEnd <= now && r.PeriodEnd > now.AddDays(-100))
            : relevant.Where(r => r.PeriodStart <= now && r.PeriodEnd > now);
        var reports = await relevant.ToListAsync(ct).ConfigureAwait(false);
        var groups = reports
            .GroupBy(r => (r.StripeCustomerId, r.Meter, r.PeriodStart, r.PeriodEnd))
            .Where(g => g.Any(r => r.Status != UsageReportStatus.Pending))
            .Select(g => new Group(g.Key.StripeCustomerId, g.Key.Meter, g.Key.PeriodStart, g.Key.PeriodEnd, [.. g]));
        if (previous)
        {
            // Only each customer·meter's latest ended period.
            groups = groups.GroupBy(g => (g.Customer, g.Meter)).Select(g => g.MaxBy(x => x.PeriodEnd)!);
        }

        return [.. groups.OrderBy(g => g.Customer, StringComparer.Ordinal).ThenBy(g => g.Meter, StringComparer.Ordinal).ThenBy(g => g.PeriodStart)];
    }

    /// <summary>
    /// The one set of reports of unknown delivery whose quantities add up to the drift (the reports Stripe has),
    /// or <see langword="null"/> when none or several do: then the drift is unexplained.
    /// </summary>
    internal static HashSet<Guid>? Explain(IReadOnlyList<UsageReport> unknown, decimal drift)
    {
        if (unknown.Count > MaxCandidates)
        {
            return drift == 0 ? [] : null;
        }

        HashSet<Guid>? match = null;
        for (var mask = 0; mask < (1 << unknown.Count); mask++)
        {
            decimal sum = 0;
            for (var i = 0; i < unknown.Count; i++)
            {
                if ((mask & (1 << i)) != 0)
                {
                    sum += unknown[i].Quantity;
                }
            }

            if (sum == drift)
            {
                if (match is not null)
                {
                    return null;
                }

                match = [.. unknown.Where((_, i) => (mask & (1 << i)) != 0).Select(r => r.Id)];
            }
        }

        return match;
    }

    private static Task MarkSentAsync(CliServices services, Guid reportId, DateTimeOffset now, CancellationToken ct) =>
        services.Get<IUsageFlushStore>().ConfirmSentAsync(reportId, now, "confirmed by reconcile: Stripe's event summary includes it", ct);

    /// <summary>A report's identifier never changes: the store moves the usage to a new pending report with a fresh id and the old one becomes dead.</summary>
    private static async Task<Guid> SupersedeAsync(CliServices services, Guid reportId, DateTimeOffset now, CancellationToken ct) =>
        await services.Get<IUsageFlushStore>().SupersedeAsync(reportId, now, ct).ConfigureAwait(false)
            ?? throw new CliException($"report {reportId} left needs-review while reconciling; run reconcile again.", ExitCodes.Unavailable);

    private static DateTimeOffset FloorMinute(DateTimeOffset t) => new(t.UtcTicks - (t.UtcTicks % TimeSpan.TicksPerMinute), TimeSpan.Zero);

    private static DateTimeOffset CeilMinute(DateTimeOffset t)
    {
        var floor = FloorMinute(t);
        return floor == t ? floor : floor.AddMinutes(1);
    }
}
