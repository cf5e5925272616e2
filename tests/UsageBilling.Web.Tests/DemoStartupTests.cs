using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using UsageBilling.Web.Tests.Infrastructure;

namespace UsageBilling.Web.Tests;

/// <summary>What a fresh clone's <c>dotnet run</c> gives: a migrated database, a provisioned emulator, a demo account with history, webhooks wired.</summary>
public sealed class DemoStartupTests(DemoWebApp app) : IClassFixture<DemoWebApp>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Development_SeedsDemoAccountWithSubscriptionAndHistoryInsideItsPeriod()
    {
        await using var db = app.CreateDbContext();
        var demo = await db.Users.SingleAsync(u => u.Email == "demo@usagebilling.local", Ct);
        Assert.Equal("starter", (await db.BillingCustomers.SingleAsync(c => c.UserId == demo.Id, Ct)).PlanId);

        var summary = await app.Services.GetRequiredService<IUsageSummaryService>().GetCurrentPeriodAsync(demo.Id, Ct);
        var messages = summary.Meters.Single(m => m.Meter == "ai_messages");
        Assert.True(messages.Used > 0, "The demo has history.");
        Assert.True(messages.Used < messages.Included, "The demo starts below its allowance.");
        Assert.True(messages.PeriodStart < DateTimeOffset.UtcNow.AddDays(-7), $"The period started days ago, was {messages.PeriodStart:O}.");
        var daily = await app.Services.GetRequiredService<IUsageSummaryService>().GetDailyUsageAsync(demo.Id, "ai_messages", Ct);
        Assert.True(daily.Count(d => d.Total > 0) >= 7, "History spreads over several days.");

        // The emulator's clock caught up with the real one after seeding.
        var emulatorNow = await app.Stripe.Emulator!.Admin.GetNowAsync(Ct);
        Assert.InRange(emulatorNow, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));

        using var session = app.CreateSession();
        Assert.Equal(HttpStatusCode.Redirect, (await session.LoginAsync("demo@usagebilling.local", "demo-password-1")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await session.Client.GetAsync("/operator", Ct)).StatusCode);
    }

    [Fact]
    public async Task Development_RegistersWebhookWithEmulator_AndSubscriptionEventsArriveSigned()
    {
        // The webhook endpoint is registered once the app listens; wait for it.
        var deadline = DateTimeOffset.UtcNow.AddSeconds(20);
        while (app.Services.GetRequiredService<UsageBilling.StripeWebhookSecret>().Value is null && DateTimeOffset.UtcNow < deadline)
        {
            await Task.Delay(100, Ct);
        }

        using var session = app.CreateSession();
        var (user, userId) = await app.SignUpAsync();
        using var _ = user;
        await user.ChoosePlanAsync("pro");

        // customer.subscription.created travels emulator → /webhooks/stripe with a real signature.
        await using var db = app.CreateDbContext();
        var processed = false;
        while (!processed && DateTimeOffset.UtcNow < deadline.AddSeconds(10))
        {
            processed = await db.ProcessedWebhookEvents.AnyAsync(e => e.Type == "customer.subscription.created", Ct);
            await Task.Delay(100, Ct);
        }

        Assert.True(processed, "The emulator's signed webhook was accepted and recorded.");
        // The emulator logs a delivery once the app's response is back, which can be after the app stored the event.
        var delivered = false;
        while (!delivered && DateTimeOffset.UtcNow < deadline.AddSeconds(10))
        {
            delivered = (await app.Stripe.Emulator!.Admin.GetWebhookDeliveriesAsync(Ct)).Any(d => d.EventType == "customer.subscription.created" && d.StatusCode == 200);
            await Task.Delay(delivered ? 0 : 100, Ct);
        }

        Assert.True(delivered, "The emulator logged the webhook delivery as answered 200.");
        Assert.Equal(2, await db.SubscriptionItems.CountAsync(i => i.UserId == userId, Ct));
    }
}
