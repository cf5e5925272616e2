namespace UsageBilling;

/// <summary>
/// The billing account of each user of the app, in billing language: the Stripe customer, the plan's
/// hybrid subscription (flat fee + metered prices), plan changes and cancellations that never lose a
/// period's usage. Register with <c>AddUsageBilling(...)…AddAspNetCore()</c>; every method refuses bad
/// input with a <see cref="BillingAccountException"/> before it changes anything.
/// </summary>
public interface IBillingAccounts
{
    /// <summary>The user's account as stored, or <see langword="null"/> when the user has no Stripe customer yet.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The account.</returns>
    Task<BillingAccount?> GetAsync(Guid userId, CancellationToken cancellationToken = default);

    /// <summary>Creates the user's Stripe customer once (idempotent: a retry or a concurrent call finds the same one) and stores it.</summary>
    /// <param name="userId">The app's user id; the user must exist in the app's database.</param>
    /// <param name="email">The customer's e-mail, for Stripe's receipts.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The account.</returns>
    Task<BillingAccount> EnsureCustomerAsync(Guid userId, string? email, CancellationToken cancellationToken = default);

    /// <summary>
    /// Puts an account without a plan on <paramref name="planId"/>: the plan's hybrid subscription, created
    /// through the API at once, or through Stripe Checkout (the result carries the URL to send the customer
    /// to; the subscription then arrives with <c>checkout.session.completed</c>). An account on another plan
    /// is moved with <see cref="ChangePlanAsync"/>.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="planId">A plan configured under <c>UsageBilling:Plans</c>.</param>
    /// <param name="options">Mode, e-mail and Checkout URLs; defaults from <see cref="BillingAccountOptions"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The subscription, or where to pay for it.</returns>
    Task<SubscribeResult> SubscribeAsync(Guid userId, string planId, SubscribeOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// The adoption path: an app that already sells a flat-rate subscription adds the plan's metered prices
    /// to that subscription, leaving its own items alone, and UsageBilling starts tracking it (the user's
    /// Stripe customer becomes the subscription's customer). Calling it again changes nothing.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="existingSubscriptionId">The app's live subscription (<c>sub_…</c>).</param>
    /// <param name="planId">The plan whose metered prices (and allowances) apply.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The account, now on <paramref name="planId"/>.</returns>
    Task<BillingAccount> AttachMeteredPricesAsync(Guid userId, string existingSubscriptionId, string planId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Moves the account to another plan without losing usage: the customer's pending usage is flushed first,
    /// then the old subscription is cancelled with <c>invoice_now</c> (so its period's metered usage is
    /// invoiced at once, inside Stripe's grace period) and the new plan's subscription starts. With Checkout,
    /// the old subscription ends only once the customer has paid for the new one.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="planId">The new plan.</param>
    /// <param name="options">Mode and Checkout URLs.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The new subscription, or where to pay for it.</returns>
    Task<SubscribeResult> ChangePlanAsync(Guid userId, string planId, SubscribeOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Cancels the account's subscription with its final usage flushed first: now (with <c>invoice_now</c>:
    /// the unfinished period's usage is invoiced at once) or at the end of the current period (Stripe bills
    /// that period normally, and <c>invoice.created</c> flushes the last usage into it).
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="atPeriodEnd">Whether to end at the period's end rather than now.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The account afterwards.</returns>
    Task<BillingAccount> CancelAsync(Guid userId, bool atPeriodEnd, CancellationToken cancellationToken = default);

    /// <summary>Reads a subscription from Stripe and mirrors it locally (what the webhook endpoint does for every subscription event).</summary>
    /// <param name="subscriptionId">The subscription (<c>sub_…</c>).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The account it belongs to, or <see langword="null"/> when its customer is not one of this app's.</returns>
    Task<BillingAccount?> SyncSubscriptionAsync(string subscriptionId, CancellationToken cancellationToken = default);
}

/// <summary>A user's billing account.</summary>
/// <param name="UserId">The app's user id.</param>
/// <param name="StripeCustomerId">The Stripe customer (<c>cus_…</c>).</param>
/// <param name="PlanId">The plan the account is on, if any.</param>
/// <param name="SubscriptionIds">The live subscriptions UsageBilling tracks for it.</param>
public sealed record BillingAccount(Guid UserId, string StripeCustomerId, string? PlanId, IReadOnlyList<string> SubscriptionIds);

/// <summary>What subscribing (or changing plans) led to.</summary>
/// <param name="SubscriptionId">The new subscription, when it exists already (API mode).</param>
/// <param name="CheckoutUrl">Where to send the customer to pay (Checkout mode).</param>
public sealed record SubscribeResult(string? SubscriptionId, string? CheckoutUrl)
{
    /// <summary>Whether the subscription exists now (rather than after Checkout).</summary>
    public bool Subscribed => SubscriptionId is not null;
}

/// <summary>How a subscription is created.</summary>
public enum SubscribeMode
{
    /// <summary>Through the Subscriptions API at once (the customer needs no payment step: a default payment method, or the emulator).</summary>
    Api,

    /// <summary>Through Stripe Checkout: the customer pays on Stripe's page and the subscription arrives by webhook.</summary>
    Checkout,
}

/// <summary>Per-call settings of <see cref="IBillingAccounts.SubscribeAsync"/> and <see cref="IBillingAccounts.ChangePlanAsync"/>.</summary>
public sealed class SubscribeOptions
{
    /// <summary>API or Checkout; default <see cref="BillingAccountOptions.SubscribeWith"/>.</summary>
    public SubscribeMode? Mode { get; set; }

    /// <summary>The customer's e-mail, used when the Stripe customer is created by this call.</summary>
    public string? Email { get; set; }

    /// <summary>
    /// Makes a retried call (a double click, a crash) create nothing twice: the same id gives the same Stripe
    /// request. Default: a fresh id per call.
    /// </summary>
    public string? RequestId { get; set; }

    /// <summary>Checkout: where Stripe sends the customer after paying; default <see cref="BillingAccountOptions.CheckoutSuccessUrl"/>.</summary>
    public Uri? SuccessUrl { get; set; }

    /// <summary>Checkout: where Stripe sends the customer who cancels; default <see cref="BillingAccountOptions.CheckoutCancelUrl"/>.</summary>
    public Uri? CancelUrl { get; set; }
}
