using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary><see cref="IBillingAccountStore"/> over any DbContext that applied the UsageBilling model.</summary>
/// <typeparam name="TContext">The app's context.</typeparam>
/// <param name="contexts">The context factory.</param>
/// <param name="time">The clock.</param>
internal sealed class EfBillingAccountStore<TContext>(IDbContextFactory<TContext> contexts, TimeProvider time) : IBillingAccountStore
    where TContext : DbContext
{
    public async Task<BillingAccountRecord?> FindByUserAsync(Guid userId, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        return await context.Set<BillingCustomer>().AsNoTracking().Where(c => c.UserId == userId)
            .Select(c => new BillingAccountRecord(c.UserId, c.StripeCustomerId, c.PlanId))
            .FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<BillingAccountRecord?> FindByCustomerAsync(string stripeCustomerId, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        return await context.Set<BillingCustomer>().AsNoTracking().Where(c => c.StripeCustomerId == stripeCustomerId)
            .Select(c => new BillingAccountRecord(c.UserId, c.StripeCustomerId, c.PlanId))
            .FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<BillingAccountRecord> AddCustomerAsync(Guid userId, string stripeCustomerId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(stripeCustomerId);
        for (var attempt = 1; ; attempt++)
        {
            await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
            var customers = context.Set<BillingCustomer>();
            if (await customers.AsNoTracking().FirstOrDefaultAsync(c => c.UserId == userId, cancellationToken).ConfigureAwait(false) is { } existing)
            {
                return new BillingAccountRecord(existing.UserId, existing.StripeCustomerId, existing.PlanId);
            }

            if (await customers.AsNoTracking().AnyAsync(c => c.StripeCustomerId == stripeCustomerId, cancellationToken).ConfigureAwait(false))
            {
                throw new BillingAccountConflictException($"Stripe customer {stripeCustomerId} already belongs to another account of this app.");
            }

            var now = time.GetUtcNow();
            customers.Add(new BillingCustomer { UserId = userId, StripeCustomerId = stripeCustomerId, CreatedAt = now, UpdatedAt = now });
            try
            {
                await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
                return new BillingAccountRecord(userId, stripeCustomerId, null);
            }
            catch (DbUpdateException) when (attempt < 3)
            {
                // A concurrent caller stored the user's customer first (or the user does not exist: the
                // next attempt finds no row again and fails the same way, with the database's message).
            }
        }
    }

    public async Task<SubscriptionApplyOutcome> ApplySubscriptionAsync(SubscriptionSnapshot snapshot, string? webhookEventId, string? webhookEventType, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        for (var attempt = 1; ; attempt++)
        {
            await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var outcome = await ApplyAsync(context, snapshot, webhookEventId, webhookEventType, cancellationToken).ConfigureAwait(false);
                await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return outcome;
            }
            catch (DbUpdateException) when (attempt < 3)
            {
                // The same event delivered twice at once (its id is the key), or an account created under
                // us: roll back, and the next attempt sees what the other transaction committed.
                await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task<SubscriptionApplyOutcome> ApplyAsync(TContext context, SubscriptionSnapshot snapshot, string? eventId, string? eventType, CancellationToken ct)
    {
        var now = time.GetUtcNow();

        // The customer row is the per-account lock: two appliers of one account (the subscribe call and its
        // own webhook, two webhooks, or one event delivered twice at once) run one after the other, so
        // neither inserts an item the other just did and a redelivery sees the first delivery's event row.
        // SQLite transactions take the write lock at BEGIN already (Microsoft.Data.Sqlite's default).
        if (context.Database.IsNpgsql())
        {
            await context.Database.ExecuteSqlInterpolatedAsync($"SELECT 1 FROM billing_customers WHERE stripe_customer_id = {snapshot.StripeCustomerId} FOR UPDATE", ct).ConfigureAwait(false);
        }

        if (eventId is not null)
        {
            if (await context.Set<ProcessedWebhookEvent>().AnyAsync(e => e.Id == eventId, ct).ConfigureAwait(false))
            {
                return SubscriptionApplyOutcome.Duplicate;
            }

            context.Set<ProcessedWebhookEvent>().Add(new ProcessedWebhookEvent { Id = eventId, Type = eventType ?? "", ProcessedAt = now });
        }

        var customer = await context.Set<BillingCustomer>().FirstOrDefaultAsync(c => c.StripeCustomerId == snapshot.StripeCustomerId, ct).ConfigureAwait(false);
        if (customer is null)
        {
            return SubscriptionApplyOutcome.UnknownCustomer;
        }

        var items = context.Set<BillingSubscriptionItem>();
        var rows = await items.Where(i => i.SubscriptionId == snapshot.SubscriptionId).ToListAsync(ct).ConfigureAwait(false);
        if (snapshot.IsEnded)
        {
            items.RemoveRange(rows);
            var othersLive = await items.AnyAsync(i => i.UserId == customer.UserId && i.SubscriptionId != snapshot.SubscriptionId, ct).ConfigureAwait(false);
            if (!othersLive && customer.PlanId is not null)
            {
                customer.PlanId = null;
                customer.UpdatedAt = now;
            }

            return SubscriptionApplyOutcome.Applied;
        }

        foreach (var item in snapshot.Items)
        {
            var row = rows.FirstOrDefault(r => r.Id == item.ItemId);
            if (row is null)
            {
                row = new BillingSubscriptionItem { Id = item.ItemId, SubscriptionId = snapshot.SubscriptionId, UserId = customer.UserId };
                items.Add(row);
                rows.Add(row);
            }

            row.PriceId = item.PriceId;
            row.Meter = item.Meter;
            row.Status = snapshot.Status;
            row.CurrentPeriodStart = item.PeriodStart;
            row.CurrentPeriodEnd = item.PeriodEnd;
            row.UpdatedAt = now;
        }

        items.RemoveRange(rows.Where(r => snapshot.Items.All(i => i.ItemId != r.Id)));
        customer.PlanId = snapshot.PlanId;
        customer.UpdatedAt = now;
        return SubscriptionApplyOutcome.Applied;
    }

    public async Task<IReadOnlyList<string>> SubscriptionIdsAsync(Guid userId, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        return await context.Set<BillingSubscriptionItem>().AsNoTracking().Where(i => i.UserId == userId)
            .Select(i => i.SubscriptionId).Distinct().ToListAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<bool> IsWebhookEventProcessedAsync(string eventId, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        return await context.Set<ProcessedWebhookEvent>().AsNoTracking().AnyAsync(e => e.Id == eventId, cancellationToken).ConfigureAwait(false);
    }

    public async Task<bool> MarkWebhookEventProcessedAsync(string eventId, string eventType, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        if (await context.Set<ProcessedWebhookEvent>().AnyAsync(e => e.Id == eventId, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        context.Set<ProcessedWebhookEvent>().Add(new ProcessedWebhookEvent { Id = eventId, Type = eventType, ProcessedAt = time.GetUtcNow() });
        try
        {
            await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (DbUpdateException)
        {
            // The same event recorded by a concurrent delivery.
            return false;
        }
    }
}
