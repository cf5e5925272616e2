using UsageBilling.StripeEmulator;

namespace ExistingApp;

/// <summary>Development and tests without a Stripe key: UsageBilling's Stripe emulator, in this process, on 127.0.0.1.</summary>
public static class LocalStripe
{
    /// <summary>
    /// Without <c>Stripe:SecretKey</c>, starts the emulator (on <c>LocalStripe:Port</c>, default a free port) and points
    /// <c>Stripe:SecretKey</c> / <c>Stripe:ApiBase</c> at it; with a key, does nothing and returns <see langword="null"/>.
    /// The emulator's admin API takes <c>LocalStripe:AdminToken</c> when set, else a token generated now; either way it
    /// is printed, so a developer (or a smoke test) can inspect the emulator.
    /// </summary>
    public static async Task<StripeEmulatorServer?> StartUnlessConfiguredAsync(ConfigurationManager config)
    {
        if (!string.IsNullOrWhiteSpace(config["Stripe:SecretKey"]))
        {
            return null;
        }

        var emulator = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions
        {
            Port = config.GetValue("LocalStripe:Port", 0),
            AdminToken = string.IsNullOrWhiteSpace(config["LocalStripe:AdminToken"]) ? null : config["LocalStripe:AdminToken"],
        });
        Console.WriteLine($"Local Stripe emulator at {emulator.ApiBase}; admin API token {emulator.AdminToken}");
        config["Stripe:SecretKey"] = "sk_test_existingapp_local";
        config["Stripe:ApiBase"] = emulator.ApiBase;
        return emulator;
    }
}
