using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using UsageBilling.StripeEmulator;

// Standalone: dotnet run --project src/UsageBilling.StripeEmulator -- --urls http://127.0.0.1:12111
// Options come from configuration (command line, environment STRIPE_EMULATOR_...): see README.md.
// The admin token is --AdminToken (or STRIPE_EMULATOR_AdminToken), else generated and logged at start.
var config = new ConfigurationBuilder().AddCommandLine(args).AddEnvironmentVariables("STRIPE_EMULATOR_").Build();
var options = new StripeEmulatorOptions();
config.Bind(options);
if (config["StateFile"] is { Length: > 0 } stateFile)
{
    options.StateFilePath = stateFile;
}

var hasUrls = args.Any(a => a.StartsWith("--urls", StringComparison.Ordinal)) || config["urls"] is not null;
var app = EmulatorApp.Build(hasUrls ? args : [.. args, "--urls", "http://127.0.0.1:12111"], options, inProcess: false);
var core = app.Services.GetRequiredService<EmulatorCore>();
core.LogAdminToken();
await core.LoadAsync(CancellationToken.None);
await app.RunAsync();
