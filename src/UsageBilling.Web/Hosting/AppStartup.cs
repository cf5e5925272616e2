using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.Web.Billing;
using UsageBilling.Web.Data;

namespace UsageBilling.Web.Hosting;

/// <summary>
/// Runs before the app listens: migrates the database, provisions Stripe (emulator) or looks the
/// objects up (real Stripe), creates the operator role and seeds the demo. Once listening, it
/// registers the webhook endpoint with the emulator and logs how to sign in.
/// </summary>
internal sealed partial class AppStartup(
    IServiceProvider services,
    IUsageBillingDatabase database,
    IStripeProvisioner provisioner,
    PlanCatalog catalog,
    StripeAccess access,
    StripeWebhookRegistration webhooks,
    IOptions<StripeOptions> stripeOptions,
    IServer server,
    IHostApplicationLifetime lifetime,
    IHostEnvironment environment,
    IOptions<AppOptions> options,
    TimeProvider time,
    ILogger<AppStartup> logger) : IHostedService
{
    public const string OperatorRole = "Operator";

    private bool _demoSeeded;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await database.MigrateAsync(cancellationToken);

        // The emulator is ours to set up; real Stripe is set up by the CLI, so only look there.
        var result = await provisioner.ProvisionAsync(dryRun: !access.IsEmulated, cancellationToken);
        if (!access.IsEmulated && result.CreatedCount + result.UpdatedCount > 0)
        {
            LogStripeOutOfDate(logger, result.CreatedCount, result.UpdatedCount);
        }

        await using (var scope = services.CreateAsyncScope())
        {
            var roles = scope.ServiceProvider.GetRequiredService<RoleManager<IdentityRole<Guid>>>();
            if (!await roles.RoleExistsAsync(OperatorRole))
            {
                await roles.CreateAsync(new IdentityRole<Guid>(OperatorRole));
            }

            if (options.Value.SeedDemo && environment.IsDevelopment())
            {
                _demoSeeded = await SeedDemoAsync(scope.ServiceProvider, cancellationToken);
            }
        }

        await access.CatchUpClockAsync(cancellationToken);
        lifetime.ApplicationStarted.Register(() => _ = OnStartedAsync());
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task<bool> SeedDemoAsync(IServiceProvider sp, CancellationToken ct)
    {
        var o = options.Value;
        var users = sp.GetRequiredService<UserManager<AppUser>>();
        if (await users.FindByEmailAsync(o.DemoEmail) is not null)
        {
            return true;
        }

        var user = new AppUser { UserName = o.DemoEmail, Email = o.DemoEmail, EmailConfirmed = true, CreatedAt = time.GetUtcNow() };
        var created = await users.CreateAsync(user, o.DemoPassword);
        if (!created.Succeeded)
        {
            throw new InvalidOperationException("Could not create the demo user: " + string.Join("; ", created.Errors.Select(e => e.Description)));
        }

        await users.AddToRoleAsync(user, OperatorRole);
        var accounts = sp.GetRequiredService<IBillingAccounts>();
        await accounts.EnsureCustomerAsync(user.Id, user.Email, ct);
        if (access.IsEmulated && catalog.Plans.ContainsKey(o.DemoPlan))
        {
            // The demo gets its subscription at once, whatever Billing:SubscribeWith says: nobody is there to pay.
            await accounts.SubscribeAsync(user.Id, o.DemoPlan, new SubscribeOptions { Mode = SubscribeMode.Api, RequestId = "demo-seed" }, ct);
        }

        // History: a few messages a day since the (back-dated) period start, below the allowance.
        var recorder = sp.GetRequiredService<IUsageRecorder>();
        var meter = o.AssistantMeter;
        var now = time.GetUtcNow();
        var days = Math.Clamp(o.DemoHistoryDays, 0, 30);
        var start = now - access.ClockShift;
        try
        {
            for (var d = 0; d < days; d++)
            {
                var count = 2 + (d * 5 % 7);
                for (var i = 0; i < count; i++)
                {
                    var at = start.AddDays(d).AddMinutes(30 + (i * 41));
                    if (at < now)
                    {
                        await recorder.RecordAsync(user.Id, meter, 1, $"demo:{d}:{i}", at, ct);
                    }
                }
            }
        }
        catch (UsageLimitExceededException)
        {
            // Without a subscription the demo is on the no-plan policy: its history stops at that limit.
        }

        LogDemoSeeded(logger, o.DemoEmail);
        return true;
    }

    private async Task OnStartedAsync()
    {
        try
        {
            var address = server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
            // The emulator is this app's own Stripe account: register the endpoint (thin meter errors included) there.
            if (access.Emulator is not null && address is not null && string.IsNullOrWhiteSpace(stripeOptions.Value.WebhookSecret))
            {
                await webhooks.RegisterAsync(new Uri(new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal)), "/webhooks/stripe"), lifetime.ApplicationStopping);
            }

            var stripeWhere = access.Emulator is { } e ? $"in-process Stripe emulator at {e.ApiBase}, admin API token {e.AdminToken}" : "Stripe API";
            if (_demoSeeded)
            {
                LogReadyWithDemo(logger, address ?? "(test server)", options.Value.DemoEmail, options.Value.DemoPassword, stripeWhere);
            }
            else
            {
                LogReady(logger, address ?? "(test server)", stripeWhere);
            }
        }
#pragma warning disable CA1031 // Startup extras must never crash the app; the failure is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogStartedFailed(logger, ex);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stripe is not set up for this configuration ({Created} objects missing, {Updated} out of date): run the CLI's setup command")]
    private static partial void LogStripeOutOfDate(ILogger logger, int created, int updated);

    [LoggerMessage(Level = LogLevel.Information, Message = "Seeded the demo account {Email} with a subscription and some history")]
    private static partial void LogDemoSeeded(ILogger logger, string email);

    [LoggerMessage(Level = LogLevel.Information, Message = "UsageBilling.Web is running at {Url} — sign in as {Email} / {Password} (demo account; {Stripe})")]
    private static partial void LogReadyWithDemo(ILogger logger, string url, string email, string password, string stripe);

    [LoggerMessage(Level = LogLevel.Information, Message = "UsageBilling.Web is running at {Url} — sign up at /account/register ({Stripe})")]
    private static partial void LogReady(ILogger logger, string url, string stripe);

    [LoggerMessage(Level = LogLevel.Error, Message = "Post-start setup failed")]
    private static partial void LogStartedFailed(ILogger logger, Exception exception);
}
