using System.CommandLine;
using UsageBilling.Cli.Commands;

namespace UsageBilling.Cli;

/// <summary>The global options, recursive so they go before or after the subcommand.</summary>
internal sealed class GlobalOptions
{
    public Option<string?> Connection { get; } = new("--connection") { Description = "Database connection string (default: ConnectionStrings:UsageBilling, else Data Source=data/usagebilling.db).", Recursive = true };

    public Option<string?> Provider { get; } = new("--provider") { Description = "sqlite or postgres (default: Database:Provider, else inferred from the connection string).", Recursive = true };

    public Option<string?> StripeKey { get; } = new("--stripe-key") { Description = "Stripe secret key, sk_test_… or sk_live_… (default: Stripe:SecretKey).", Recursive = true };

    public Option<string?> StripeApiBase { get; } = new("--stripe-api-base") { Description = "Stripe API base URL, e.g. the emulator's http://127.0.0.1:12111 (default: Stripe:ApiBase).", Recursive = true };

    public Option<bool> Verbose { get; } = new("--verbose", "-v") { Description = "Log what happens and print stack traces of errors.", Recursive = true };

    public IEnumerable<Option> All => [Connection, Provider, StripeKey, StripeApiBase, Verbose];

    public GlobalValues Read(ParseResult result) => new(
        result.GetValue(Connection),
        result.GetValue(Provider),
        result.GetValue(StripeKey),
        result.GetValue(StripeApiBase),
        result.GetValue(Verbose));
}

/// <summary>Builds the command tree and runs it: every failure is one line on stderr and a non-zero exit.</summary>
internal static class CliApp
{
    public static async Task<int> RunAsync(string[] args)
    {
        var globals = new GlobalOptions();
        var root = new RootCommand("usagebilling — operate UsageBilling: provision Stripe, flush usage, reconcile, inspect, correct usage, manage API keys, migrate.");
        foreach (var option in globals.All)
        {
            root.Options.Add(option);
        }

        root.Subcommands.Add(SetupCommand.Create(globals));
        root.Subcommands.Add(FlushCommand.Create(globals));
        root.Subcommands.Add(ReconcileCommand.Create(globals));
        root.Subcommands.Add(StatusCommand.Create(globals));
        root.Subcommands.Add(ApiKeysCommand.Create(globals));
        root.Subcommands.Add(AdjustCommand.Create(globals));
        root.Subcommands.Add(DbCommand.Create(globals));
        root.Subcommands.Add(EmulatorCommand.Create(globals));

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {parsed.Errors[0].Message} (see 'usagebilling --help')");
            return ExitCodes.BadInput;
        }

        return await parsed.InvokeAsync().ConfigureAwait(false);
    }

    /// <summary>Wraps a command body: loads settings, maps every exception to one line.</summary>
    public static void SetHandler(Command command, GlobalOptions globals, Func<ParseResult, CliSettings, CancellationToken, Task<int>> body)
    {
        command.SetAction(async (result, cancellationToken) =>
        {
            var values = globals.Read(result);
            string? apiBase = values.StripeApiBase;
            try
            {
                var settings = CliSettings.Load(values);
                apiBase = settings.Configuration["Stripe:ApiBase"];
                return await body(result, settings, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                Console.Error.WriteLine("interrupted");
                return ExitCodes.Interrupted;
            }
            catch (Exception ex)
            {
                return ErrorReporter.Report(ex, values.Verbose, apiBase);
            }
        });
    }
}
