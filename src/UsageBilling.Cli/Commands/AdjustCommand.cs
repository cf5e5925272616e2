using System.CommandLine;
using Spectre.Console;

namespace UsageBilling.Cli.Commands;

/// <summary>
/// <c>adjust void &lt;event-id&gt; --reason … [--by …]</c> and <c>adjust list</c>: corrections of recorded usage, audited.
/// A void of usage Stripe already has is sent by the next flush (the app's flusher or 'usagebilling flush').
/// </summary>
internal static class AdjustCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var command = new Command("adjust", "Correct recorded usage (void an event) and list the audit of corrections.");

        var eventId = new Argument<Guid>("event-id") { Description = "The usage event to void." };
        var reason = new Option<string>("--reason") { Description = "Why (kept in the audit).", Required = true };
        var by = new Option<string?>("--by") { Description = "Who asks (kept in the audit); default the OS user." };
        var voidCommand = new Command("void", "Void a usage event: out of totals and rollups; Stripe corrected by the next flush (cancel and resend within 24 h, a negative event after).");
        voidCommand.Arguments.Add(eventId);
        voidCommand.Options.Add(reason);
        voidCommand.Options.Add(by);
        CliApp.SetHandler(voidCommand, globals, async (result, settings, ct) =>
        {
            await using var services = CliServices.Build(settings, Needs.Database | Needs.Meters);
            var actor = result.GetValue(by) ?? Environment.UserName;
            var correction = await services.Get<IUsageCorrections>().VoidAsync(result.GetValue(eventId), actor, result.GetValue(reason)!, ct).ConfigureAwait(false);
            var console = Output.Console;
            console.WriteLine($"Voided usage event {correction.EventId}: {Output.N(correction.Quantity)} × '{correction.Meter}' of account {correction.UserId} (correction {correction.Id}).");
            console.WriteLine(correction.Kind switch
            {
                UsageCorrectionKind.Removed => "Stripe never had it: nothing to send.",
                UsageCorrectionKind.CancelAndResend => $"Stripe has it in report {correction.ReportId}: the next flush cancels that report and resends its other usage.",
                _ => $"Stripe received it more than 23 hours ago: the next flush sends a negative event (report {correction.CorrectionReportId}) in the same period.",
            });
            return ExitCodes.Ok;
        });

        var account = new Option<Guid?>("--account") { Description = "Only this account's corrections." };
        var limit = new Option<int>("--limit") { Description = "Most rows (1–1000).", DefaultValueFactory = _ => 50 };
        var list = new Command("list", "The audit of corrections, newest first: who, why, what, and whether Stripe's side is done.");
        list.Options.Add(account);
        list.Options.Add(limit);
        CliApp.SetHandler(list, globals, async (result, settings, ct) =>
        {
            var rows = result.GetValue(limit);
            if (rows is < 1 or > 1000)
            {
                throw new CliException("--limit must be between 1 and 1000");
            }

            await using var services = CliServices.Build(settings, Needs.Database | Needs.Meters);
            var corrections = await services.Get<IUsageCorrections>().ListAsync(result.GetValue(account), rows, ct).ConfigureAwait(false);
            var table = Output.NewTable("Correction", "Event", "Account", "Usage", "Kind", "Status", "By", "Reason", "At");
            foreach (var c in corrections)
            {
                table.AddRow(
                    c.Id.ToString(),
                    c.EventId.ToString(),
                    c.UserId.ToString(),
                    Markup.Escape($"{Output.N(c.Quantity)} × {c.Meter}"),
                    c.Kind.ToString(),
                    Markup.Escape(c.Status + (c.LastError is null ? "" : $": {c.LastError}")),
                    Markup.Escape(c.Actor),
                    Markup.Escape(c.Reason),
                    Output.Time(c.CreatedAt));
            }

            Output.Console.Write(table);
            return ExitCodes.Ok;
        });

        command.Subcommands.Add(voidCommand);
        command.Subcommands.Add(list);
        return command;
    }
}
