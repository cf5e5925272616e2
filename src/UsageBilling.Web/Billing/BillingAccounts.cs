using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
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
    IOptions<BillingOptions> options,
    TimeProvider time,
    ILogger<BillingAccounts> logger)
{
    /// <summary>How a plan choice creates the subscription: <c>Billing:SubscribeWith</c>, else Checkout with real Stripe and the API with the emulator.</summary>
    public SubscribeMode Mode => options.Value.SubscribeWith ?? (access.IsEmulated ? SubscribeMode.Api : SubscribeMode.Checkout);

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
    /// whose first tier is the allowance). In <see cref="SubscribeMode.Api"/> mode it is created through
    /// the API at once; in <see cref="SubscribeMode.Checkout"/> mode the customer goes through Checkout
    /// and the subscription arrives by webhook (<see cref="ApplyCompletedCheckoutAsync"/>).
    /// </summary>
    public async Task<SubscribeOutcome> SubscribeAsync(Guid userId, string? email, string planId, string requestId, Uri baseUri, SubscribeMode? mode, CancellationToken ct)
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

        if ((mode ?? Mode) == SubscribeMode.Checkout)
        {
            // The metered price takes no quantity (Stripe rejects one); the session carries the account
            // id too, so a completed checkout can be reconciled by hand if ever needed.
            var session = await stripe.V1.Checkout.Sessions.CreateAsync(
                new SessionCreateOptions
                {
                    Mode = "subscription",
                    Customer = customer.StripeCustomerId,
                    ClientReferenceId = userId.ToString(),
                    LineItems = [.. prices.Select((p, i) => new SessionLineItemOptions { Price = p, Quantity = i == 0 ? 1 : null })],
                    Metadata = new Dictionary<string, string> { ["ub_plan"] = planId, ["user_id"] = userId.ToString() },
                    SubscriptionData = new SessionSubscriptionDataOptions { Metadata = new Dictionary<string, string> { ["ub_plan"] = planId, ["user_id"] = userId.ToString() } },
                    SuccessUrl = new Uri(baseUri, "/usage?checkout=success").ToString(),
                    CancelUrl = new Uri(baseUri, "/plans?checkout=cancel").ToString(),
                },
                new RequestOptions { IdempotencyKey = $"ub-checkout:{userId}:{requestId}" },
                ct);
            LogCheckoutStarted(logger, userId, planId, session.Id);
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
        var changed = await CancelAllAsync(current.Where(s => s != created.Id), ct);
        changed.Add(created);
        await sync.ApplyAndSaveAsync(changed, ct);
        LogSubscribed(logger, userId, planId, created.Id);
        return new(true, null, null);
    }

    /// <summary>
    /// A customer finished Checkout (<c>checkout.session.completed</c>): stages the new subscription
    /// (Stripe does not order deliveries, so it may come before its <c>customer.subscription.created</c>)
    /// and, as a plan change in API mode does, ends the account's other subscriptions. The caller saves.
    /// Returns <see langword="false"/> when the session is not a completed subscription checkout of one of our accounts.
    /// </summary>
    public async Task<bool> ApplyCompletedCheckoutAsync(Session session, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(session);
        if (session.Mode != "subscription" || session.Status != "complete" || string.IsNullOrEmpty(session.SubscriptionId))
        {
            return false;
        }

        var customer = await db.BillingCustomers.FirstOrDefaultAsync(c => c.StripeCustomerId == session.CustomerId, ct);
        if (customer is null)
        {
            LogUnknownCheckoutCustomer(logger, session.Id, session.CustomerId);
            return false;
        }

        var subscription = await stripe.V1.Subscriptions.GetAsync(session.SubscriptionId, cancellationToken: ct);
        var changed = new List<Subscription>();
        if (subscription.Status is "active" or "trialing")
        {
            var others = await db.SubscriptionItems
                .Where(i => i.UserId == customer.UserId && i.SubscriptionId != subscription.Id)
                .Select(i => i.SubscriptionId).Distinct().ToListAsync(ct);
            changed.AddRange(await CancelAllAsync(others, ct));
        }

        // The new subscription last: the account ends on its plan.
        changed.Add(subscription);
        foreach (var s in changed)
        {
            await sync.ApplyAsync(s, ct);
        }

        LogCheckoutCompleted(logger, customer.UserId, session.Id, subscription.Id);
        return true;
    }

    /// <summary>Cancels the subscriptions now; one that already ended elsewhere is taken as Stripe has it.</summary>
    private async Task<List<Subscription>> CancelAllAsync(IEnumerable<string> subscriptionIds, CancellationToken ct)
    {
        var canceled = new List<Subscription>();
        foreach (var id in subscriptionIds)
        {
            try
            {
                canceled.Add(await stripe.V1.Subscriptions.CancelAsync(id, new SubscriptionCancelOptions(), new RequestOptions { IdempotencyKey = $"ub-cancel:{id}" }, ct));
            }
            catch (StripeException ex) when (ex.HttpStatusCode == HttpStatusCode.BadRequest)
            {
                var current = await stripe.V1.Subscriptions.GetAsync(id, cancellationToken: ct);
                if (current.Status is not ("canceled" or "incomplete_expired"))
                {
                    throw;
                }

                canceled.Add(current);
            }
        }

        return canceled;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Created Stripe customer {CustomerId} for user {UserId}")]
    private static partial void LogCustomerCreated(ILogger logger, Guid userId, string customerId);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} subscribed to {Plan} ({SubscriptionId})")]
    private static partial void LogSubscribed(ILogger logger, Guid userId, string plan, string subscriptionId);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} went to Checkout for {Plan} ({SessionId})")]
    private static partial void LogCheckoutStarted(ILogger logger, Guid userId, string plan, string sessionId);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} completed Checkout {SessionId}: subscription {SubscriptionId}")]
    private static partial void LogCheckoutCompleted(ILogger logger, Guid userId, string sessionId, string subscriptionId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkout session {SessionId} belongs to Stripe customer {CustomerId}, who is not an account of this app; ignored")]
    private static partial void LogUnknownCheckoutCustomer(ILogger logger, string sessionId, string? customerId);
}
