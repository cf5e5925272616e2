namespace UsageBilling;

/// <summary>The Stripe event types the webhook endpoint applies; enable these on the endpoint (and the thin ones on an event destination).</summary>
public static class StripeWebhookEvents
{
    /// <summary>A subscription was created: mirrored by reading it from Stripe.</summary>
    public const string SubscriptionCreated = "customer.subscription.created";

    /// <summary>A subscription changed: mirrored by reading it from Stripe.</summary>
    public const string SubscriptionUpdated = "customer.subscription.updated";

    /// <summary>A subscription ended: mirrored by reading it from Stripe.</summary>
    public const string SubscriptionDeleted = "customer.subscription.deleted";

    /// <summary>An invoice is being drafted: the customer's usage is flushed at once, inside Stripe's grace period.</summary>
    public const string InvoiceCreated = "invoice.created";

    /// <summary>A customer paid on Stripe Checkout: the new subscription replaces the account's others.</summary>
    public const string CheckoutSessionCompleted = "checkout.session.completed";

    /// <summary>Thin event: Stripe found accepted meter events invalid; the reports it names become dead.</summary>
    public const string MeterErrorReportTriggered = "v1.billing.meter.error_report_triggered";

    /// <summary>Thin event: meter events named no meter; the reports it names become dead.</summary>
    public const string MeterNoMeterFound = "v1.billing.meter.no_meter_found";

    /// <summary>The classic (snapshot) webhook event types.</summary>
    public static IReadOnlyList<string> Snapshot { get; } = [SubscriptionCreated, SubscriptionUpdated, SubscriptionDeleted, InvoiceCreated, CheckoutSessionCompleted];

    /// <summary>The thin event types (event destinations).</summary>
    public static IReadOnlyList<string> Thin { get; } = [MeterErrorReportTriggered, MeterNoMeterFound];

    /// <summary>Every type the endpoint applies; others are acknowledged and ignored.</summary>
    public static IReadOnlySet<string> Handled { get; } = new HashSet<string>(Snapshot.Concat(Thin), StringComparer.Ordinal);
}
