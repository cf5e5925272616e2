using System.Net;
using AngleSharp.Html.Dom;
using AngleSharp.Html.Parser;
using Microsoft.AspNetCore.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Stripe;
using Stripe.Checkout;
using UsageBilling.Web.Billing;
using UsageBilling.Web.Hosting;
using UsageBilling.Web.Tests.Infrastructure;

namespace UsageBilling.Web.Tests;

/// <summary>
/// The app with <c>Billing:SubscribeWith=Checkout</c> against its in-process emulator, over a real socket: the
/// account is sent to the emulator's Checkout page, pays there, and the plan arrives by the emulator's signed webhooks.
/// </summary>
public abstract class CheckoutFlowTests<TApp>(TApp app) : IClassFixture<TApp>
    where TApp : CheckoutWebApp
{
    private static readonly HtmlParser Parser = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ChoosePlan_PayOnCheckoutPage_WebhooksPutTheAccountOnThePlan()
    {
        var (session, userId) = await SignUpAsync();
        using var _ = session;
        var customerId = await CustomerOfAsync(userId);
        Assert.Equal(SubscribeMode.Checkout, Mode());

        var checkoutUrl = await StartCheckoutAsync(session, "starter");

        Assert.StartsWith($"{app.Stripe.Emulator!.ApiBase}/_emulator/checkout/cs_test_", checkoutUrl.ToString(), StringComparison.Ordinal);
        var sessionId = checkoutUrl.Segments[^1];
        var open = await app.StripeClient.V1.Checkout.Sessions.GetAsync(sessionId, cancellationToken: Ct);
        Assert.Equal(("open", "subscription", customerId, userId.ToString()), (open.Status, open.Mode, open.CustomerId, open.ClientReferenceId));
        var lines = await app.StripeClient.V1.Checkout.Sessions.LineItems.ListAsync(sessionId, cancellationToken: Ct);
        Assert.Equal([1L, null], lines.Data.Select(l => l.Quantity));
        Assert.Null(await PlanOfAsync(userId));

        // The customer pays on the Checkout page and is sent back to the app.
        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });
        var page = await Parser.ParseDocumentAsync(await browser.GetStringAsync(checkoutUrl, Ct), Ct);
        var pay = page.QuerySelector("form[method='post']") as IHtmlFormElement ?? throw new InvalidOperationException(page.Body?.OuterHtml);
        using var paid = await browser.PostAsync(new Uri(checkoutUrl, pay.GetAttribute("action")), null, Ct);
        Assert.Equal(HttpStatusCode.SeeOther, paid.StatusCode);
        Assert.Equal(new Uri(new Uri(app.BaseUrl), "/usage?checkout=success"), paid.Headers.Location);

        // The emulator's signed webhooks reach /webhooks/stripe and put the account on the plan.
        var completed = await app.StripeClient.V1.Checkout.Sessions.GetAsync(sessionId, cancellationToken: Ct);
        Assert.Equal("complete", completed.Status);
        var events = await EventIdsAsync(sessionId, completed.SubscriptionId);
        await WaitUntilAsync(async () =>
        {
            await using var db = app.CreateDbContext();
            return await db.ProcessedWebhookEvents.CountAsync(e => events.Contains(e.Id), Ct) == events.Count;
        }, "customer.subscription.created and checkout.session.completed handled");

        await using var after = app.CreateDbContext();
        Assert.Equal("starter", (await after.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).PlanId);
        var items = await after.SubscriptionItems.Where(i => i.UserId == userId).ToListAsync(Ct);
        Assert.Equal(2, items.Count);
        Assert.All(items, i => Assert.Equal((completed.SubscriptionId, "active"), (i.SubscriptionId, i.Status)));
        Assert.Single(items, i => i.Meter == "ai_messages");
        Assert.Single(items, i => i.Meter is null);
        Assert.All(items, i => Assert.True(i.CurrentPeriodEnd > i.CurrentPeriodStart));
        // The emulator logs a delivery once the app's response is back, which can be after the app stored the event.
        await WaitUntilAsync(
            async () => (await app.Stripe.Emulator.Admin.GetWebhookDeliveriesAsync(Ct)).Any(d => d.EventType == "checkout.session.completed" && d.Succeeded),
            "the emulator logged checkout.session.completed as delivered");

        var usage = await session.GetPageAsync(paid.Headers.Location!.PathAndQuery);
        Assert.Equal("Starter", usage.QuerySelector("[data-testid='plan']")?.TextContent);
        Assert.Contains("Thanks!", usage.QuerySelector("[data-testid='checkout-message']")?.TextContent, StringComparison.Ordinal);
        Assert.Equal(100, (await session.GetUsageAsync()).Meters.Single(m => m.Meter == "ai_messages").Included);
    }

    [Fact]
    public async Task CancelOnCheckoutPage_LeadsBackToPlans_WithAClearMessage_AndChangesNothing()
    {
        var (session, userId) = await SignUpAsync();
        using var _ = session;
        var checkoutUrl = await StartCheckoutAsync(session, "pro");

        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });
        var page = await Parser.ParseDocumentAsync(await browser.GetStringAsync(checkoutUrl, Ct), Ct);
        var cancel = new Uri(page.QuerySelector("a[data-testid='cancel']")?.GetAttribute("href") ?? throw new InvalidOperationException(page.Body?.OuterHtml));
        Assert.Equal(new Uri(new Uri(app.BaseUrl), "/plans?checkout=cancel"), cancel);
        var plans = await session.GetPageAsync(cancel.PathAndQuery);

        Assert.Contains("Checkout cancelled", plans.QuerySelector("[data-testid='checkout-message']")?.TextContent, StringComparison.Ordinal);
        Assert.Equal("none", plans.QuerySelector("[data-testid='current-plan']")?.TextContent);
        Assert.NotNull(plans.QuerySelector("[data-testid='choose-pro']"));
        Assert.Null(await PlanOfAsync(userId));
        Assert.Equal("open", (await app.StripeClient.V1.Checkout.Sessions.GetAsync(checkoutUrl.Segments[^1], cancellationToken: Ct)).Status);
        var customerId = await CustomerOfAsync(userId);
        Assert.Empty((await app.StripeClient.V1.Subscriptions.ListAsync(new SubscriptionListOptions { Customer = customerId }, cancellationToken: Ct)).Data);
    }

    [Fact]
    public async Task PlanChangeThroughCheckout_EndsTheOldSubscription()
    {
        var (session, userId) = await SignUpAsync();
        using var _ = session;
        var first = await app.Stripe.Emulator!.Admin.CompleteCheckoutSessionAsync((await StartCheckoutAsync(session, "starter")).Segments[^1], Ct);
        await WaitUntilAsync(async () => await PlanOfAsync(userId) == "starter", "on the starter plan");

        var second = await app.Stripe.Emulator.Admin.CompleteCheckoutSessionAsync((await StartCheckoutAsync(session, "pro")).Segments[^1], Ct);
        var events = await EventIdsAsync(second.SessionId, second.SubscriptionId);
        await WaitUntilAsync(async () =>
        {
            await using var check = app.CreateDbContext();
            return await check.ProcessedWebhookEvents.CountAsync(e => events.Contains(e.Id), Ct) == events.Count;
        }, "the second checkout's events handled");

        Assert.Equal("canceled", (await app.StripeClient.V1.Subscriptions.GetAsync(first.SubscriptionId, cancellationToken: Ct)).Status);
        Assert.Equal("active", (await app.StripeClient.V1.Subscriptions.GetAsync(second.SubscriptionId, cancellationToken: Ct)).Status);
        await using var db = app.CreateDbContext();
        var items = await db.SubscriptionItems.Where(i => i.UserId == userId).ToListAsync(Ct);
        Assert.Equal(2, items.Count);
        Assert.All(items, i => Assert.Equal(second.SubscriptionId, i.SubscriptionId));
        Assert.Equal("pro", (await session.GetUsageAsync()).PlanId);

        // The cancellation's own webhook (customer.subscription.deleted) arrives later and changes nothing.
        var deleted = (await app.StripeClient.V1.Events.ListAsync(new EventListOptions { Type = "customer.subscription.deleted", Limit = 100 }, cancellationToken: Ct)).Data
            .Single(e => ((Subscription)e.Data.Object).Id == first.SubscriptionId);
        await WaitUntilAsync(async () =>
        {
            await using var check = app.CreateDbContext();
            return await check.ProcessedWebhookEvents.AnyAsync(e => e.Id == deleted.Id, Ct);
        }, "customer.subscription.deleted handled");
        Assert.Equal("pro", await PlanOfAsync(userId));
        await using var after = app.CreateDbContext();
        Assert.Equal(2, await after.SubscriptionItems.CountAsync(i => i.UserId == userId && i.SubscriptionId == second.SubscriptionId, Ct));
    }

    private async Task<(UserSession Session, Guid UserId)> SignUpAsync()
    {
        // The app registers its webhook endpoint with the emulator once it listens.
        await WaitUntilAsync(() => Task.FromResult(app.Services.GetRequiredService<UsageBilling.StripeWebhookSecret>().Value is not null), "webhook endpoint registered");
        return await app.SignUpAsync();
    }

    private SubscribeMode Mode() =>
        app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<BillingAccountOptions>>().Value.SubscribeWith;

    /// <summary>Chooses a plan on /plans and returns where the app sent the browser.</summary>
    private static async Task<Uri> StartCheckoutAsync(UserSession session, string plan)
    {
        var fields = UserSession.FieldsOf(await session.GetPageAsync("/plans"), "subscribe");
        fields["Form.PlanId"] = plan;
        var response = await session.PostFormAsync("/plans", fields);
        Assert.True(response.StatusCode is HttpStatusCode.Redirect or HttpStatusCode.SeeOther, $"Choosing a plan did not redirect: {(int)response.StatusCode}\n{await response.Content.ReadAsStringAsync(Ct)}");
        var location = response.Headers.Location ?? throw new InvalidOperationException("No Location.");
        Assert.True(location.IsAbsoluteUri, location.ToString());
        return location;
    }

    private async Task<List<string>> EventIdsAsync(string sessionId, string subscriptionId)
    {
        var completed = (await app.StripeClient.V1.Events.ListAsync(new EventListOptions { Type = "checkout.session.completed", Limit = 100 }, cancellationToken: Ct)).Data
            .Single(e => ((Session)e.Data.Object).Id == sessionId);
        var created = (await app.StripeClient.V1.Events.ListAsync(new EventListOptions { Type = "customer.subscription.created", Limit = 100 }, cancellationToken: Ct)).Data
            .Single(e => ((Subscription)e.Data.Object).Id == subscriptionId);
        return [completed.Id, created.Id];
    }

    private async Task<string> CustomerOfAsync(Guid userId)
    {
        await using var db = app.CreateDbContext();
        return (await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).StripeCustomerId;
    }

    private async Task<string?> PlanOfAsync(Guid userId)
    {
        await using var db = app.CreateDbContext();
        return (await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).PlanId;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(20);
        while (!await condition())
        {
            Assert.True(DateTimeOffset.UtcNow < deadline, $"Timed out waiting for: {what}");
            await Task.Delay(50, Ct);
        }
    }
}

/// <summary>
/// <c>Billing:SubscribeWith=Checkout</c> with the in-process emulator, listening on 127.0.0.1 and with no webhook
/// secret configured, so the app registers <c>/webhooks/stripe</c> with the emulator and gets real signed deliveries.
/// </summary>
public abstract class CheckoutWebApp(Provider provider) : WebApp(provider, kestrel: true)
{
    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        base.ConfigureWebHost(builder);
        builder.UseSetting("Billing:SubscribeWith", "Checkout");
        builder.UseSetting("Stripe:WebhookSecret", "");
    }
}

public sealed class SqliteCheckoutWebApp() : CheckoutWebApp(Provider.Sqlite);

public sealed class PostgresCheckoutWebApp() : CheckoutWebApp(Provider.Postgres);

public sealed class SqliteCheckoutFlowTests(SqliteCheckoutWebApp app) : CheckoutFlowTests<SqliteCheckoutWebApp>(app);

public sealed class PostgresCheckoutFlowTests(PostgresCheckoutWebApp app) : CheckoutFlowTests<PostgresCheckoutWebApp>(app);
