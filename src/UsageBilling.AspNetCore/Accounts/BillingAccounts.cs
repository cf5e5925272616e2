using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Stripe;
using Stripe.Checkout;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>The library's <see cref="IBillingAccounts"/>: Stripe.net calls plus the <see cref="IBillingAccountStore"/>.</summary>
internal sealed partial class BillingAccounts(
    IBillingAccountStore store,
    StripeClient stripe,
    PlanPrices prices,
    IServiceProvider services,
    IOptions<BillingAccountOptions> options,
    ILogger<BillingAccounts> logger) : IBillingAccounts
{
    private static readonly HashSet<string> Live = new(StringComparer.Ordinal) { "active", "trialing", "past_due", "unpaid", "incomplete" };

    private BillingAccountOptions Options => options.Value;

    public async Task<BillingAccount?> GetAsync(Guid userId, CancellationToken cancellationToken = default)
    {
        var record = await store.FindByUserAsync(userId, cancellationToken).ConfigureAwait(false);
        return record is null ? null : await ToAccountAsync(record, cancellationToken).ConfigureAwait(false);
    }

    public async Task<BillingAccount> EnsureCustomerAsync(Guid userId, string? email, CancellationToken cancellationToken = default)
    {
        if (await store.FindByUserAsync(userId, cancellationToken).ConfigureAwait(false) is { } existing)
        {
            return await ToAccountAsync(existing, cancellationToken).ConfigureAwait(false);
        }

        // The key makes a retry (double click, crash between the two writes) find the same Stripe customer.
        var customer = await stripe.V1.Customers.CreateAsync(
            new CustomerCreateOptions { Email = email, Metadata = new Dictionary<string, string> { [UsageBillingMetadata.UserIdKey] = userId.ToString() } },
            new RequestOptions { IdempotencyKey = $"ub-customer:{userId}" },
            cancellationToken).ConfigureAwait(false);
        var stored = await store.AddCustomerAsync(userId, customer.Id, cancellationToken).ConfigureAwait(false);
        LogCustomerCreated(logger, userId, stored.StripeCustomerId);
        return await ToAccountAsync(stored, cancellationToken).ConfigureAwait(false);
    }

    public async Task<SubscribeResult> SubscribeAsync(Guid userId, string planId, SubscribeOptions? options = null, CancellationToken cancellationToken = default)
    {
        var planPrices = await prices.ForPlanAsync(planId, cancellationToken).ConfigureAwait(false);
        var account = await EnsureCustomerAsync(userId, options?.Email, cancellationToken).ConfigureAwait(false);
        if (account.PlanId == planId)
        {
            throw new BillingAccountException(BillingAccountError.AlreadyOnPlan, $"The account is already on the '{planId}' plan.");
        }

        if (account.SubscriptionIds.Count > 0)
        {
            return await ChangePlanAsync(userId, planId, options, cancellationToken).ConfigureAwait(false);
        }

        return await StartAsync(account, planPrices, options, cancellationToken).ConfigureAwait(false);
    }

    public async Task<SubscribeResult> ChangePlanAsync(Guid userId, string planId, SubscribeOptions? options = null, CancellationToken cancellationToken = default)
    {
        var planPrices = await prices.ForPlanAsync(planId, cancellationToken).ConfigureAwait(false);
        var account = await GetAsync(userId, cancellationToken).ConfigureAwait(false);
        if (account is null || account.SubscriptionIds.Count == 0)
        {
            throw new BillingAccountException(BillingAccountError.NoSubscription, "The account has no subscription to change: subscribe it to a plan first.");
        }

        if (account.PlanId == planId)
        {
            throw new BillingAccountException(BillingAccountError.AlreadyOnPlan, $"The account is already on the '{planId}' plan.");
        }

        var current = await ReadLiveAsync(account.SubscriptionIds, cancellationToken).ConfigureAwait(false);
        if (current.FirstOrDefault(s => !IsOurs(s)) is { } adopted)
        {
            throw new BillingAccountException(
                BillingAccountError.InvalidSubscriptionState,
                $"Subscription {adopted.Id} carries the app's own items (it was adopted with AttachMeteredPricesAsync), so UsageBilling does not replace it: change its flat price in the app's own flow and attach the new plan's metered prices.");
        }

        if ((options?.Mode ?? Options.SubscribeWith) == SubscribeMode.Checkout)
        {
            // The old subscription ends only when the new one is paid for (checkout.session.completed).
            return await StartAsync(account, planPrices, options, cancellationToken).ConfigureAwait(false);
        }

        // Cancel first, then start: an overlap would bill its usage on both subscriptions' metered prices.
        await FlushFirstAsync(userId, cancellationToken).ConfigureAwait(false);
        foreach (var subscription in current)
        {
            await ApplyAsync(await CancelNowAsync(subscription.Id, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        }

        var result = await StartAsync(account, planPrices, options, cancellationToken).ConfigureAwait(false);
        LogPlanChanged(logger, userId, account.PlanId, planId);
        return result;
    }

    public async Task<BillingAccount> AttachMeteredPricesAsync(Guid userId, string existingSubscriptionId, string planId, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(existingSubscriptionId) || !existingSubscriptionId.StartsWith("sub_", StringComparison.Ordinal))
        {
            throw new BillingAccountException(BillingAccountError.NoSubscription, $"'{existingSubscriptionId}' is not a Stripe subscription id (sub_…).");
        }

        var planPrices = await prices.ForPlanAsync(planId, cancellationToken).ConfigureAwait(false);
        Subscription subscription;
        try
        {
            subscription = await stripe.V1.Subscriptions.GetAsync(existingSubscriptionId, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (StripeException ex) when (ex.HttpStatusCode == HttpStatusCode.NotFound)
        {
            throw new BillingAccountException(BillingAccountError.NoSubscription, $"Stripe has no subscription {existingSubscriptionId}.");
        }

        if (!Live.Contains(subscription.Status))
        {
            throw new BillingAccountException(BillingAccountError.InvalidSubscriptionState, $"Subscription {subscription.Id} is {subscription.Status}: only a live subscription can take metered prices.");
        }

        var account = await store.FindByUserAsync(userId, cancellationToken).ConfigureAwait(false);
        if (account is not null && account.StripeCustomerId != subscription.CustomerId)
        {
            throw new BillingAccountException(BillingAccountError.NotYourSubscription, $"Subscription {subscription.Id} belongs to Stripe customer {subscription.CustomerId}, but this account's customer is {account.StripeCustomerId}.");
        }

        if (account is null)
        {
            try
            {
                await store.AddCustomerAsync(userId, subscription.CustomerId, cancellationToken).ConfigureAwait(false);
            }
            catch (BillingAccountConflictException ex)
            {
                throw new BillingAccountException(BillingAccountError.NotYourSubscription, $"Subscription {subscription.Id}'s customer {subscription.CustomerId} belongs to another account of this app: {ex.Message}");
            }
        }

        // Only the metered prices the subscription lacks: calling again adds nothing. The app's own items stay.
        var have = (subscription.Items?.Data ?? []).Select(i => i.Price?.Id).ToHashSet(StringComparer.Ordinal);
        var missing = planPrices.Metered.Where(m => !have.Contains(m.Price)).ToList();
        var alreadyTagged = subscription.Metadata is not null && subscription.Metadata.TryGetValue(UsageBillingMetadata.PlanKey, out var tagged) && tagged == planId;
        if (missing.Count > 0 || !alreadyTagged)
        {
            subscription = await stripe.V1.Subscriptions.UpdateAsync(
                subscription.Id,
                new SubscriptionUpdateOptions
                {
                    Items = [.. missing.Select(m => new SubscriptionItemOptions { Price = m.Price })],
                    Metadata = new Dictionary<string, string> { [UsageBillingMetadata.PlanKey] = planId, [UsageBillingMetadata.UserIdKey] = userId.ToString() },
                    ProrationBehavior = "none",
                },
                new RequestOptions { IdempotencyKey = $"ub-attach:{subscription.Id}:{planId}:{string.Join(',', missing.Select(m => m.Price))}" },
                cancellationToken).ConfigureAwait(false);
        }

        await ApplyAsync(subscription, cancellationToken).ConfigureAwait(false);
        LogAttached(logger, userId, subscription.Id, planId, missing.Count);
        var stored = await store.FindByUserAsync(userId, cancellationToken).ConfigureAwait(false);
        return await ToAccountAsync(stored!, cancellationToken).ConfigureAwait(false);
    }

    public async Task<BillingAccount> CancelAsync(Guid userId, bool atPeriodEnd, CancellationToken cancellationToken = default)
    {
        var account = await GetAsync(userId, cancellationToken).ConfigureAwait(false);
        if (account is null || account.SubscriptionIds.Count == 0)
        {
            throw new BillingAccountException(BillingAccountError.NoSubscription, "The account has no subscription to cancel.");
        }

        var current = await ReadLiveAsync(account.SubscriptionIds, cancellationToken).ConfigureAwait(false);
        await FlushFirstAsync(userId, cancellationToken).ConfigureAwait(false);
        foreach (var subscription in current)
        {
            var ended = atPeriodEnd
                ? await stripe.V1.Subscriptions.UpdateAsync(
                    subscription.Id,
                    new SubscriptionUpdateOptions { CancelAtPeriodEnd = true },
                    new RequestOptions { IdempotencyKey = $"ub-cancel-at-end:{subscription.Id}" },
                    cancellationToken).ConfigureAwait(false)
                : await CancelNowAsync(subscription.Id, cancellationToken).ConfigureAwait(false);
            await ApplyAsync(ended, cancellationToken).ConfigureAwait(false);
        }

        LogCancelled(logger, userId, atPeriodEnd);
        return (await GetAsync(userId, cancellationToken).ConfigureAwait(false))!;
    }

    public async Task<BillingAccount?> SyncSubscriptionAsync(string subscriptionId, CancellationToken cancellationToken = default)
    {
        var (outcome, snapshot) = await SyncAsync(subscriptionId, null, null, cancellationToken).ConfigureAwait(false);
        if (outcome == SubscriptionApplyOutcome.UnknownCustomer || snapshot is null)
        {
            return null;
        }

        var record = await store.FindByCustomerAsync(snapshot.StripeCustomerId, cancellationToken).ConfigureAwait(false);
        return record is null ? null : await ToAccountAsync(record, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Applies a subscription as Stripe has it, recording the webhook event in the same transaction. Stripe
    /// does not order deliveries, so the payload is never applied: the subscription is read, applied, and
    /// read again; when it changed meanwhile (another delivery may have committed an older read after ours),
    /// it is applied again. The last writer therefore always wrote what Stripe had after every earlier write.
    /// </summary>
    /// <returns>The first apply's outcome and the snapshot last applied (<see langword="null"/> when Stripe no longer has the subscription).</returns>
    internal async Task<(SubscriptionApplyOutcome Outcome, SubscriptionSnapshot? Snapshot)> SyncAsync(string subscriptionId, string? eventId, string? eventType, CancellationToken ct)
    {
        var snapshot = await ReadSnapshotAsync(subscriptionId, ct).ConfigureAwait(false);
        if (snapshot is null)
        {
            if (eventId is not null)
            {
                await store.MarkWebhookEventProcessedAsync(eventId, eventType ?? "", ct).ConfigureAwait(false);
            }

            return (SubscriptionApplyOutcome.UnknownCustomer, null);
        }

        var outcome = await store.ApplySubscriptionAsync(snapshot, eventId, eventType, ct).ConfigureAwait(false);
        if (outcome != SubscriptionApplyOutcome.Applied)
        {
            return (outcome, snapshot);
        }

        for (var round = 0; round < 5; round++)
        {
            var again = await ReadSnapshotAsync(subscriptionId, ct).ConfigureAwait(false);
            if (again is null || PlanPrices.SameState(again, snapshot))
            {
                break;
            }

            snapshot = again;
            await store.ApplySubscriptionAsync(snapshot, null, null, ct).ConfigureAwait(false);
        }

        return (outcome, snapshot);
    }

    /// <summary>
    /// <c>checkout.session.completed</c>: the customer paid for a new plan. The account's other subscriptions end
    /// now with their usage flushed and invoiced, then the new one is applied.
    /// </summary>
    /// <returns><see langword="false"/> when the session is not a completed subscription checkout of one of this app's accounts.</returns>
    internal async Task<bool> ApplyCompletedCheckoutAsync(string sessionId, string eventId, string eventType, CancellationToken ct)
    {
        var session = await stripe.V1.Checkout.Sessions.GetAsync(sessionId, cancellationToken: ct).ConfigureAwait(false);
        if (session.Mode != "subscription" || session.Status != "complete" || string.IsNullOrEmpty(session.SubscriptionId))
        {
            return false;
        }

        if (await store.FindByCustomerAsync(session.CustomerId, ct).ConfigureAwait(false) is not { } customer)
        {
            LogUnknownCheckoutCustomer(logger, session.Id, session.CustomerId);
            return false;
        }

        var subscription = await stripe.V1.Subscriptions.GetAsync(session.SubscriptionId, cancellationToken: ct).ConfigureAwait(false);
        if (Live.Contains(subscription.Status))
        {
            var others = (await store.SubscriptionIdsAsync(customer.UserId, ct).ConfigureAwait(false)).Where(id => id != subscription.Id).ToList();
            if (others.Count > 0)
            {
                await FlushFirstAsync(customer.UserId, ct).ConfigureAwait(false);
                foreach (var other in await ReadLiveAsync(others, ct).ConfigureAwait(false))
                {
                    await ApplyAsync(await CancelNowAsync(other.Id, ct).ConfigureAwait(false), ct).ConfigureAwait(false);
                }
            }
        }

        // The new subscription last, with the event: the account ends on its plan.
        await SyncAsync(subscription.Id, eventId, eventType, ct).ConfigureAwait(false);
        LogCheckoutCompleted(logger, customer.UserId, session.Id, subscription.Id);
        return true;
    }

    private async Task<SubscribeResult> StartAsync(BillingAccount account, PlanPriceSet planPrices, SubscribeOptions? options, CancellationToken ct)
    {
        var requestId = options?.RequestId ?? Guid.NewGuid().ToString("N");
        var metadata = new Dictionary<string, string> { [UsageBillingMetadata.PlanKey] = planPrices.PlanId, [UsageBillingMetadata.UserIdKey] = account.UserId.ToString() };
        var priceIds = new List<string> { planPrices.BasePrice };
        priceIds.AddRange(planPrices.Metered.Select(m => m.Price));
        if ((options?.Mode ?? Options.SubscribeWith) == SubscribeMode.Checkout)
        {
            var success = options?.SuccessUrl ?? Options.CheckoutSuccessUrl
                ?? throw new BillingAccountException(BillingAccountError.InvalidSubscriptionState, "Checkout needs a success URL: set UsageBilling:Billing:CheckoutSuccessUrl or pass SubscribeOptions.SuccessUrl.");
            var cancel = options?.CancelUrl ?? Options.CheckoutCancelUrl ?? success;

            // The metered prices take no quantity (Stripe rejects one).
            var session = await stripe.V1.Checkout.Sessions.CreateAsync(
                new SessionCreateOptions
                {
                    Mode = "subscription",
                    Customer = account.StripeCustomerId,
                    ClientReferenceId = account.UserId.ToString(),
                    LineItems = [.. priceIds.Select((p, i) => new SessionLineItemOptions { Price = p, Quantity = i == 0 ? 1 : null })],
                    Metadata = metadata,
                    SubscriptionData = new SessionSubscriptionDataOptions { Metadata = metadata },
                    SuccessUrl = success.ToString(),
                    CancelUrl = cancel.ToString(),
                },
                new RequestOptions { IdempotencyKey = $"ub-checkout:{account.UserId}:{requestId}" },
                ct).ConfigureAwait(false);
            LogCheckoutStarted(logger, account.UserId, planPrices.PlanId, session.Id);
            return new SubscribeResult(null, session.Url);
        }

        var created = await stripe.V1.Subscriptions.CreateAsync(
            new SubscriptionCreateOptions
            {
                Customer = account.StripeCustomerId,
                Items = [.. priceIds.Select((p, i) => new SubscriptionItemOptions { Price = p, Quantity = i == 0 ? 1 : null })],
                Metadata = metadata,
            },
            new RequestOptions { IdempotencyKey = $"ub-subscribe:{account.UserId}:{requestId}" },
            ct).ConfigureAwait(false);
        await ApplyAsync(created, ct).ConfigureAwait(false);
        LogSubscribed(logger, account.UserId, planPrices.PlanId, created.Id);
        return new SubscribeResult(created.Id, null);
    }

    /// <summary>Cancels now with <c>invoice_now</c>, so the unfinished period's metered usage is invoiced; one that already ended is taken as Stripe has it.</summary>
    private async Task<Subscription> CancelNowAsync(string subscriptionId, CancellationToken ct)
    {
        try
        {
            return await stripe.V1.Subscriptions.CancelAsync(
                subscriptionId,
                new SubscriptionCancelOptions { InvoiceNow = true, Prorate = Options.ProrateOnCancel },
                new RequestOptions { IdempotencyKey = $"ub-cancel:{subscriptionId}" },
                ct).ConfigureAwait(false);
        }
        catch (StripeException ex) when (ex.HttpStatusCode == HttpStatusCode.BadRequest)
        {
            var current = await stripe.V1.Subscriptions.GetAsync(subscriptionId, cancellationToken: ct).ConfigureAwait(false);
            if (Live.Contains(current.Status))
            {
                throw;
            }

            return current;
        }
    }

    /// <summary>
    /// Reports the customer's pending usage before its subscription changes, so the change's invoice carries
    /// it. A flush that could not send everything (Stripe refused or is unreachable) stops the change: it
    /// would otherwise invoice the period without that usage.
    /// </summary>
    private async Task FlushFirstAsync(Guid userId, CancellationToken ct)
    {
        var flusher = services.GetService<IUsageFlusher>()
            ?? throw new InvalidOperationException("Plan changes and cancellations flush the customer's usage first: register the flusher with AddFlusher(...).");
        var result = await flusher.FlushCustomerAsync(userId, ct).ConfigureAwait(false);
        if (result.ConfigurationError is not null || result.ReportsRetried > 0)
        {
            throw new BillingAccountException(
                BillingAccountError.UsageNotFlushed,
                $"The account's usage could not be reported to Stripe yet ({result.ConfigurationError ?? $"{result.ReportsRetried} reports to retry"}); nothing was changed. Try again shortly.");
        }
    }

    private async Task<List<Subscription>> ReadLiveAsync(IEnumerable<string> subscriptionIds, CancellationToken ct)
    {
        var live = new List<Subscription>();
        foreach (var id in subscriptionIds)
        {
            var subscription = await stripe.V1.Subscriptions.GetAsync(id, cancellationToken: ct).ConfigureAwait(false);
            if (Live.Contains(subscription.Status))
            {
                live.Add(subscription);
            }
            else
            {
                // Ended elsewhere (the dashboard, a missed webhook): mirror that first.
                await ApplyAsync(subscription, ct).ConfigureAwait(false);
            }
        }

        return live;
    }

    private async Task<SubscriptionSnapshot?> ReadSnapshotAsync(string subscriptionId, CancellationToken ct)
    {
        try
        {
            return PlanPrices.Snapshot(await stripe.V1.Subscriptions.GetAsync(subscriptionId, cancellationToken: ct).ConfigureAwait(false));
        }
        catch (StripeException ex) when (ex.HttpStatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private Task ApplyAsync(Subscription subscription, CancellationToken ct) =>
        store.ApplySubscriptionAsync(PlanPrices.Snapshot(subscription), null, null, ct);

    /// <summary>Whether every item of the subscription is a price UsageBilling provisioned (so it may cancel and replace it).</summary>
    private static bool IsOurs(Subscription subscription) =>
        (subscription.Items?.Data ?? []).All(i => i.Price?.Metadata is { } m && m.ContainsKey(UsageBillingMetadata.PlanKey));

    private async Task<BillingAccount> ToAccountAsync(BillingAccountRecord record, CancellationToken ct) =>
        new(record.UserId, record.StripeCustomerId, record.PlanId, await store.SubscriptionIdsAsync(record.UserId, ct).ConfigureAwait(false));

    [LoggerMessage(Level = LogLevel.Information, Message = "Created Stripe customer {CustomerId} for user {UserId}")]
    private static partial void LogCustomerCreated(ILogger logger, Guid userId, string customerId);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} subscribed to {Plan} ({SubscriptionId})")]
    private static partial void LogSubscribed(ILogger logger, Guid userId, string plan, string subscriptionId);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} changed plan from {OldPlan} to {NewPlan}; the old subscription was invoiced with its usage")]
    private static partial void LogPlanChanged(ILogger logger, Guid userId, string? oldPlan, string newPlan);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId}: attached {Added} metered prices of {Plan} to subscription {SubscriptionId}")]
    private static partial void LogAttached(ILogger logger, Guid userId, string subscriptionId, string plan, int added);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} cancelled (at period end: {AtPeriodEnd}) after flushing usage")]
    private static partial void LogCancelled(ILogger logger, Guid userId, bool atPeriodEnd);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} went to Checkout for {Plan} ({SessionId})")]
    private static partial void LogCheckoutStarted(ILogger logger, Guid userId, string plan, string sessionId);

    [LoggerMessage(Level = LogLevel.Information, Message = "User {UserId} completed Checkout {SessionId}: subscription {SubscriptionId}")]
    private static partial void LogCheckoutCompleted(ILogger logger, Guid userId, string sessionId, string subscriptionId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkout session {SessionId} belongs to Stripe customer {CustomerId}, who is not an account of this app; ignored")]
    private static partial void LogUnknownCheckoutCustomer(ILogger logger, string sessionId, string? customerId);
}
