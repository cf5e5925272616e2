using System.CommandLine;
using Spectre.Console;

namespace UsageBilling.Cli.Commands;

/// <summary>
/// <c>api-keys create|list|revoke</c>: the keys other services send to <c>POST /api/v1/usage</c>. A key's secret is
/// printed once, at creation; the database keeps only its SHA-256.
/// </summary>
internal static class ApiKeysCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var command = new Command("api-keys", "API keys of the usage ingestion endpoint (POST /api/v1/usage).");

        var name = new Option<string>("--name") { Description = "What uses the key (shown in 'list').", Required = true };
        var account = new Option<Guid?>("--account") { Description = "The one account (user id) the key may record for; default every account." };
        var create = new Command("create", "Create a key and print its secret (shown only this once).");
        create.Options.Add(name);
        create.Options.Add(account);
        CliApp.SetHandler(create, globals, async (result, settings, ct) =>
        {
            await using var services = CliServices.Build(settings, Needs.Database);
            var created = await services.Get<IUsageApiKeys>().CreateAsync(result.GetValue(name)!, result.GetValue(account), ct).ConfigureAwait(false);
            var console = Output.Console;
            console.WriteLine($"Created API key {created.Key.Id} '{created.Key.Name}' for {Scope(created.Key)}.");
            console.WriteLine($"Secret (shown only now; send it as 'Authorization: Bearer <secret>'): {created.Secret}");
            return ExitCodes.Ok;
        });

        var list = new Command("list", "List keys (never their secrets), newest first.");
        CliApp.SetHandler(list, globals, async (result, settings, ct) =>
        {
            await using var services = CliServices.Build(settings, Needs.Database);
            var keys = await services.Get<IUsageApiKeys>().ListAsync(ct).ConfigureAwait(false);
            var console = Output.Console;
            if (keys.Count == 0)
            {
                console.WriteLine("No API keys. Create one with 'usagebilling api-keys create --name <what uses it>'.");
                return ExitCodes.Ok;
            }

            var table = Output.NewTable("Id", "Name", "Prefix", "Scope", "Created", "Revoked");
            foreach (var k in keys)
            {
                table.AddRow(k.Id.ToString(), Markup.Escape(k.Name), Markup.Escape(k.Prefix + "…"), Scope(k), Output.Time(k.CreatedAt), k.RevokedAt is null ? "-" : Output.Time(k.RevokedAt));
            }

            console.Write(table);
            return ExitCodes.Ok;
        });

        var id = new Argument<Guid>("id") { Description = "The key id (from 'list')." };
        var revoke = new Command("revoke", "Revoke a key: from now on it authenticates nothing.");
        revoke.Arguments.Add(id);
        CliApp.SetHandler(revoke, globals, async (result, settings, ct) =>
        {
            await using var services = CliServices.Build(settings, Needs.Database);
            var keyId = result.GetValue(id);
            if (!await services.Get<IUsageApiKeys>().RevokeAsync(keyId, ct).ConfigureAwait(false))
            {
                throw new CliException($"no live API key {keyId} (unknown, or already revoked); see 'usagebilling api-keys list'");
            }

            Output.Console.WriteLine($"Revoked API key {keyId}.");
            return ExitCodes.Ok;
        });

        command.Subcommands.Add(create);
        command.Subcommands.Add(list);
        command.Subcommands.Add(revoke);
        return command;
    }

    private static string Scope(UsageApiKeyInfo key) => key.UserId is { } user ? $"account {user}" : "every account";
}
