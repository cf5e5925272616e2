using Microsoft.EntityFrameworkCore;
using Stripe;
using Stripe.Checkout;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Web.Data;
using UsageBilling.Web.Hosting;

namespace UsageBilling.Web.Billing;

/// <summary>What choosing a plan led to.</summary>
/// <param name="Subscribed">The subscription exists now (emulator / direct mode).</param>
/// <param name="CheckoutUrl">Where to send the customer to pay (Stripe Checkout); the subscription then arrives by webhook.</param>
/// <param name="Error">Why nothing happened.</param>
internal sealed record SubscribeOutcome(bool Subscribed, string? CheckoutUrl, string? Error);

/// <summary>An account's Stripe customer and subscription.</summary>
internal sealed partial class BillingAccounts(
    AppDbContext db,
    StripeClient stripe,
    PlanCatalog catalog,
    SubscriptionSync sync,
    StripeAccess access,
    TimeProvider time,
    ILogger<BillingAccounts> logger)
{
    /// <summary>Creates the account's Stripe customer once; later calls return the stored one.</summary>
    public async Task<BillingCustomer> EnsureCustomerAsync(Guid userId, string? email, CancellationToken ct)
    {
        var existing = await db.BillingCustomers.FirstOrDefaultAsync(c => c.UserId == userId, ct);
        if (existing is not null)
        {
            return existing;
        }

        // The key makes a retry (double click, crash between the two writes) find the same Stripe customer.
        var customer = await stripe.V1.Customers.CreateAsync(
            new CustomerCreateOptions { Email = email, Metadata = new Dictionary<string, string> { ["user_id"] = userId.ToString() } },
            new RequestOptions { IdempotencyKey = $"ub-customer:{userId}" },
            ct);
        var now = time.GetUtcNow();
        var row = new BillingCustomer { UserId = userId, StripeCustomerId = customer.Id, CreatedAt = now, UpdatedAt = now };
        db.BillingCustomers.Add(row);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException)
        {
            // A concurrent request stored it first (same idempotency key, same customer).
            db.ChangeTracker.Clear();
            return await db.BillingCustomers.FirstAsync(c => c.UserId == userId, ct);
        }

        LogCustomerCreated(logger, userId, customer.Id);
        return row;
    }

    /// <summary>The account's current plan, if any.</summary>
    public async Task<string?> CurrentPlanAsync(Guid userId, CancellationToken ct) =>
        await db.BillingCustomers.Where(c => c.UserId == userId).Select(c => c.PlanId).FirstOrDefaultAsync(ct);

    /// <summary>
    /// Puts the account on <paramref name="planId"/>: a hybrid subscription (flat fee + metered price
    /// whose first tier is the allowance). With the emulator it is created through the API at once;
    /// with real Stripe the customer goes through Checkout and the subscription arrives by webhook.
    /// </summary>
    public async Task<SubscribeOutcome> SubscribeAsync(Guid userId, string? email, string planId, string requestId, Uri baseUri, CancellationToken ct)
    {
        if (!catalog.Plans.ContainsKey(planId))
        {
            return new(false, null, "Unknown plan.");
        }

        if (catalog.PricesOf(planId) is not { } prices)
        {
            return new(false, null, "This plan is not set up in Stripe yet; run the setup command first.");
        }

        var customer = await EnsureCustomerAsync(userId, email, ct);
        if (customer.PlanId == planId)
        {
            return new(false, null, $"You are already on the {catalog.PlanName(planId)} plan.");
        }

        if (!access.IsEmulated)
        {
            var session = await stripe.V1.Checkout.Sessions.CreateAsync(
                new SessionCreateOptions
                {
                    Mode = "subscription",
                    Customer = customer.StripeCustomerId,
                    LineItems = [.. prices.Select((p, i) => new SessionLineItemOptions { Price = p, Quantity = i == 0 ? 1 : null })],
                    SubscriptionData = new SessionSubscriptionDataOptions { Metadata = new Dictionary<string, string> { ["ub_plan"] = planId } },
                    SuccessUrl = new Uri(baseUri, "/usage?checkout=success").ToString(),
                    CancelUrl = new Uri(baseUri, "/plans?checkout=cancel").ToString(),
                },
                new RequestOptions { IdempotencyKey = $"ub-checkout:{userId}:{requestId}" },
                ct);
            return new(false, session.Url, null);
        }

        var current = await db.SubscriptionItems.Where(i => i.UserId == userId).Select(i => i.SubscriptionId).Distinct().ToListAsync(ct);
        var created = await stripe.V1.Subscriptions.CreateAsync(
            new SubscriptionCreateOptions
            {
                Customer = customer.StripeCustomerId,
                Items = [.. prices.Select((p, i) => new SubscriptionItemOptions { Price = p, Quantity = i == 0 ? 1 : null })],
                Metadata = new Dictionary<string, string> { ["ub_plan"] = planId, ["user_id"] = userId.ToString() },
            },
            new RequestOptions { IdempotencyKey = $"ub-subscribe:{userId}:{requestId}" },
            ct);

        // A plan change: the old subscription ends now (a real app would prorate or switch at period end).
        var changed = new List<Subscription>();
        foreach (var old in current.Where(s => s != created.Id))
        {
            changed.Add(await stripe.V1.Subscriptions.CancelAsync(old, new SubscriptionCancelOptions(), new RequestOptions { IdempotencyKey = $"ub-cancel:{old}" }, ct));
        }

        changed.Add(created);
        await sync.ApplyAndSaveAsync(changed, ct);
        LogSubscribed(logger, userId, planId, created.Id);
        return new(true, null, null);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Created Stripe customer {CustomerId} for user {UserId}")]
    private static partial void LogCustomerCreated(ILogger logger, Guid userId, string customerId);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} subscribed to {Plan} ({SubscriptionId})")]
    private static partial void LogSubscribed(ILogger logger, Guid userId, string plan, string subscriptionId);
}
