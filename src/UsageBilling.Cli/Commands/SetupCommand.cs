using System.CommandLine;
using Spectre.Console;

namespace UsageBilling.Cli.Commands;

/// <summary><c>setup [--dry-run]</c>: provisions the configured meters, products and prices in Stripe, idempotently.</summary>
internal static class SetupCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var dryRun = new Option<bool>("--dry-run") { Description = "Only read Stripe and print what would be created or updated." };
        var command = new Command("setup", "Create or update the Stripe meters, products and prices described by UsageBilling:Meters and UsageBilling:Plans.");
        command.Options.Add(dryRun);
        CliApp.SetHandler(command, globals, async (result, settings, ct) =>
        {
            await using var services = CliServices.Build(settings, Needs.Provisioner | Needs.Meters);
            var console = Output.Console;
            console.WriteLine($"Stripe: {StripeMode.Describe(settings.StripeForDisplay)}");
            var outcome = await services.Get<IStripeProvisioner>().ProvisionAsync(result.GetValue(dryRun), ct).ConfigureAwait(false);
            var table = Output.NewTable("Kind", "Key", "Plan", "Action", "Stripe id", "Note");
            foreach (var o in outcome.Objects)
            {
                table.AddRow(
                    Markup.Escape(o.Kind.ToString()),
                    Markup.Escape(o.Key),
                    Markup.Escape(o.Plan ?? ""),
                    Markup.Escape(outcome.DryRun && o.Action != ProvisioningAction.Unchanged ? $"would be {o.Action.ToString().ToLowerInvariant()}" : o.Action.ToString().ToLowerInvariant()),
                    Markup.Escape(o.StripeId ?? "-"),
                    Markup.Escape(o.Note ?? ""));
            }

            console.Write(table);
            var unchanged = outcome.Objects.Count - outcome.CreatedCount - outcome.UpdatedCount;
            console.WriteLine(outcome.DryRun
                ? $"Dry run: would create {outcome.CreatedCount}, update {outcome.UpdatedCount}; {unchanged} unchanged. Nothing was written."
                : $"Created {outcome.CreatedCount}, updated {outcome.UpdatedCount}, unchanged {unchanged}.");
            return ExitCodes.Ok;
        });
        return command;
    }
}
