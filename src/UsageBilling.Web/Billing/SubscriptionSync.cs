using Microsoft.EntityFrameworkCore;
using Stripe;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Web.Data;

namespace UsageBilling.Web.Billing;

/// <summary>Mirrors a Stripe subscription into <c>billing_subscription_items</c> and the customer's plan.</summary>
internal sealed partial class SubscriptionSync(AppDbContext db, PlanCatalog catalog, TimeProvider time, ILogger<SubscriptionSync> logger)
{
    private static readonly HashSet<string> Ended = new(StringComparer.Ordinal) { "canceled", "incomplete_expired" };

    /// <summary>Stages the changes in the context (the caller saves); returns <see langword="false"/> when the customer is not one of ours.</summary>
    public async Task<bool> ApplyAsync(Subscription subscription, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        var customer = await db.BillingCustomers.FirstOrDefaultAsync(c => c.StripeCustomerId == subscription.CustomerId, ct);
        if (customer is null)
        {
            LogUnknownCustomer(logger, subscription.Id, subscription.CustomerId);
            return false;
        }

        var now = time.GetUtcNow();
        var rows = await db.SubscriptionItems.Where(i => i.SubscriptionId == subscription.Id).ToListAsync(ct);
        var items = subscription.Items?.Data ?? [];
        if (Ended.Contains(subscription.Status))
        {
            db.SubscriptionItems.RemoveRange(rows);
            var othersActive = await db.SubscriptionItems.AnyAsync(i => i.UserId == customer.UserId && i.SubscriptionId != subscription.Id, ct);
            if (!othersActive)
            {
                customer.PlanId = null;
                customer.UpdatedAt = now;
            }

            return true;
        }

        string? planId = subscription.Metadata is not null && subscription.Metadata.TryGetValue("ub_plan", out var p) ? p : null;
        foreach (var item in items)
        {
            var (plan, meter) = catalog.Describe(item.Price.Id);
            if (meter is null && item.Price.Metadata is not null && item.Price.Metadata.TryGetValue("ub_meter", out var m))
            {
                meter = m;
            }

            planId ??= plan ?? (item.Price.Metadata is not null && item.Price.Metadata.TryGetValue("ub_plan", out var pp) ? pp : null);
            var row = rows.FirstOrDefault(r => r.Id == item.Id);
            if (row is null)
            {
                row = new BillingSubscriptionItem { Id = item.Id, SubscriptionId = subscription.Id, UserId = customer.UserId };
                db.SubscriptionItems.Add(row);
                rows.Add(row);
            }

            row.PriceId = item.Price.Id;
            row.Meter = meter;
            row.Status = subscription.Status;
            row.CurrentPeriodStart = Utc(item.CurrentPeriodStart);
            row.CurrentPeriodEnd = Utc(item.CurrentPeriodEnd);
            row.UpdatedAt = now;
        }

        db.SubscriptionItems.RemoveRange(rows.Where(r => items.All(i => i.Id != r.Id)));
        customer.PlanId = planId;
        customer.UpdatedAt = now;
        return true;
    }

    /// <summary>
    /// Applies the subscriptions and saves. The same subscription may arrive at the same moment by
    /// webhook (which inserts the same item rows): on a conflict the changes are re-read and re-applied.
    /// </summary>
    public async Task ApplyAndSaveAsync(IReadOnlyList<Subscription> subscriptions, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                foreach (var subscription in subscriptions)
                {
                    await ApplyAsync(subscription, ct);
                }

                await db.SaveChangesAsync(ct);
                return;
            }
            catch (DbUpdateException) when (attempt < 3)
            {
                db.ChangeTracker.Clear();
            }
        }
    }

    private static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));

    [LoggerMessage(Level = LogLevel.Warning, Message = "Subscription {SubscriptionId} belongs to Stripe customer {CustomerId}, who is not an account of this app; ignored")]
    private static partial void LogUnknownCustomer(ILogger logger, string subscriptionId, string customerId);
}
