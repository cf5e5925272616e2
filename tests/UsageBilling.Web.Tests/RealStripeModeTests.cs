using System.Net;
using Microsoft.AspNetCore.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Stripe.Billing;
using UsageBilling.StripeEmulator;
using UsageBilling.Web.Tests.Infrastructure;

namespace UsageBilling.Web.Tests;

/// <summary>
/// The app with a Stripe key: it talks to the configured API (here a separately started emulator,
/// standing in for Stripe), starts no emulator of its own, and only looks Stripe objects up — setting
/// them up is the CLI's job.
/// </summary>
public sealed class RealStripeModeTests(RealStripeModeTests.App app) : IClassFixture<RealStripeModeTests.App>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task WithKey_UsesConfiguredStripe_DoesNotProvision_AndSignUpCreatesCustomerThere()
    {
        Assert.False(app.Stripe.IsEmulated);
        Assert.Null(app.Stripe.Emulator);
        Assert.Empty((await app.StripeClient.V1.Billing.Meters.ListAsync(new MeterListOptions(), cancellationToken: Ct)).Data);

        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await using var db = app.CreateDbContext();
        var customerId = (await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).StripeCustomerId;
        Assert.Single((await app.StripeClient.V1.Customers.ListAsync(cancellationToken: Ct)).Data, c => c.Id == customerId);

        var page = await session.ChoosePlanAsync("starter");
        Assert.Contains("not set up in Stripe", page.QuerySelector("[data-testid='plan-message']")?.TextContent, StringComparison.Ordinal);
        Assert.Null((await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).PlanId);
        Assert.Equal(HttpStatusCode.OK, (await session.Client.GetAsync("/usage", Ct)).StatusCode);
    }

    public sealed class App() : WebApp(Provider.Sqlite)
    {
        public StripeEmulatorServer? External { get; private set; }

        public override async ValueTask InitializeAsync()
        {
            External = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions(), TestContext.Current.CancellationToken);
            await base.InitializeAsync();
        }

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.UseSetting("Stripe:SecretKey", "sk_test_real_mode_tests");
            builder.UseSetting("Stripe:ApiBase", External!.ApiBase);
        }

        public override async ValueTask DisposeAsync()
        {
            await base.DisposeAsync();
            if (External is not null)
            {
                await External.DisposeAsync();
            }
        }
    }
}
