namespace UsageBilling.Web.Billing;

/// <summary>How choosing a plan creates the subscription.</summary>
internal enum SubscribeMode
{
    /// <summary>Through the Subscriptions API at once (the customer needs no payment step: the emulator, or a customer with a default payment method).</summary>
    Api,

    /// <summary>Through Stripe Checkout: the customer pays on Stripe's page, the subscription arrives by webhook.</summary>
    Checkout,
}

/// <summary>Settings of the plan choice, bound from the <c>Billing</c> section.</summary>
internal sealed class BillingOptions
{
    public const string SectionName = "Billing";

    /// <summary><c>Api</c> or <c>Checkout</c>; unset: <c>Checkout</c> with a real <c>Stripe:SecretKey</c>, <c>Api</c> with the in-process emulator.</summary>
    public SubscribeMode? SubscribeWith { get; set; }
}
