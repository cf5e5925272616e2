namespace UsageBilling.Storage;

/// <summary>
/// Where the billing account lives locally: each user's Stripe customer and plan, the subscription items
/// whose periods the flusher and the summaries use, and the Stripe webhook events already applied.
/// Every method is one transaction.
/// </summary>
public interface IBillingAccountStore
{
    /// <summary>The user's Stripe customer, if the account has one.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The account, or <see langword="null"/>.</returns>
    Task<BillingAccountRecord?> FindByUserAsync(Guid userId, CancellationToken cancellationToken);

    /// <summary>The account of a Stripe customer, if it is one of this app's.</summary>
    /// <param name="stripeCustomerId">The Stripe customer id (<c>cus_…</c>).</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The account, or <see langword="null"/>.</returns>
    Task<BillingAccountRecord?> FindByCustomerAsync(string stripeCustomerId, CancellationToken cancellationToken);

    /// <summary>
    /// Stores the user's Stripe customer unless the user already has one; returns what is stored then
    /// (the earlier customer when two callers race).
    /// </summary>
    /// <param name="userId">The app's user id, which must exist.</param>
    /// <param name="stripeCustomerId">The Stripe customer id.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>The stored account.</returns>
    /// <exception cref="BillingAccountConflictException">The Stripe customer already belongs to another user.</exception>
    Task<BillingAccountRecord> AddCustomerAsync(Guid userId, string stripeCustomerId, CancellationToken cancellationToken);

    /// <summary>
    /// Mirrors a subscription as Stripe has it now, and, when <paramref name="webhookEventId"/> is given,
    /// records that event as applied in the same transaction: an ended subscription's items go (and the plan
    /// with them when no other subscription of the user remains); a live one's items are inserted, updated or
    /// removed to match, and the user's plan becomes <see cref="SubscriptionSnapshot.PlanId"/>. Concurrent
    /// calls for one user are serialized.
    /// </summary>
    /// <param name="snapshot">The subscription as just read from Stripe.</param>
    /// <param name="webhookEventId">The webhook event being applied, or <see langword="null"/>.</param>
    /// <param name="webhookEventType">That event's type.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>What happened.</returns>
    Task<SubscriptionApplyOutcome> ApplySubscriptionAsync(SubscriptionSnapshot snapshot, string? webhookEventId, string? webhookEventType, CancellationToken cancellationToken);

    /// <summary>The ids of the subscriptions mirrored for the user.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>Distinct subscription ids.</returns>
    Task<IReadOnlyList<string>> SubscriptionIdsAsync(Guid userId, CancellationToken cancellationToken);

    /// <summary>Whether the webhook event was applied already.</summary>
    /// <param name="eventId">The Stripe event id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns><see langword="true"/> when it was.</returns>
    Task<bool> IsWebhookEventProcessedAsync(string eventId, CancellationToken cancellationToken);

    /// <summary>Records a webhook event as applied (for events whose effects are idempotent on their own).</summary>
    /// <param name="eventId">The Stripe event id.</param>
    /// <param name="eventType">The event type.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns><see langword="false"/> when it was recorded already.</returns>
    Task<bool> MarkWebhookEventProcessedAsync(string eventId, string eventType, CancellationToken cancellationToken);
}

/// <summary>A user's billing account as stored.</summary>
/// <param name="UserId">The app's user id.</param>
/// <param name="StripeCustomerId">The Stripe customer (<c>cus_…</c>).</param>
/// <param name="PlanId">The configured plan the user is on, if any.</param>
public sealed record BillingAccountRecord(Guid UserId, string StripeCustomerId, string? PlanId);

/// <summary>A Stripe subscription as read from Stripe, reduced to what the ledger keeps.</summary>
/// <param name="SubscriptionId">The subscription id (<c>sub_…</c>).</param>
/// <param name="StripeCustomerId">Its customer.</param>
/// <param name="Status">Its status (<c>active</c>, <c>canceled</c>, …).</param>
/// <param name="PlanId">The configured plan it stands for, if any.</param>
/// <param name="Items">Its items with their current periods.</param>
public sealed record SubscriptionSnapshot(string SubscriptionId, string StripeCustomerId, string Status, string? PlanId, IReadOnlyList<SubscriptionItemSnapshot> Items)
{
    /// <summary>Whether the subscription has ended (canceled or expired before it started).</summary>
    public bool IsEnded => Status is "canceled" or "incomplete_expired";
}

/// <summary>A subscription item as read from Stripe.</summary>
/// <param name="ItemId">The item id (<c>si_…</c>).</param>
/// <param name="PriceId">Its price.</param>
/// <param name="Meter">The meter event name of a metered price of ours; <see langword="null"/> otherwise.</param>
/// <param name="PeriodStart">Inclusive start of its current period.</param>
/// <param name="PeriodEnd">Exclusive end of its current period.</param>
public sealed record SubscriptionItemSnapshot(string ItemId, string PriceId, string? Meter, DateTimeOffset PeriodStart, DateTimeOffset PeriodEnd);

/// <summary>What <see cref="IBillingAccountStore.ApplySubscriptionAsync"/> did.</summary>
public enum SubscriptionApplyOutcome
{
    /// <summary>The local rows now match the snapshot.</summary>
    Applied,

    /// <summary>The webhook event had been applied already: nothing changed.</summary>
    Duplicate,

    /// <summary>The subscription's customer is not an account of this app: nothing changed (the event is recorded).</summary>
    UnknownCustomer,
}
