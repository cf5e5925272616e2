using System.Text.Json.Serialization;
using System.Text.Json.Nodes;

namespace UsageBilling.StripeEmulator.State;

internal sealed class Customer
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public string? Email { get; set; }
    public string? Name { get; set; }
    public string? Description { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = [];
    public bool Deleted { get; set; }
}

internal sealed class Product
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Updated { get; set; }
    public required string Name { get; set; }
    public string? Description { get; set; }
    public bool Active { get; set; } = true;
    public Dictionary<string, string> Metadata { get; set; } = [];
}

internal sealed class PriceTier
{
    public long? UpTo { get; init; }
    public decimal? UnitAmount { get; init; }
    public long? FlatAmount { get; init; }
}

internal sealed class Price
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string ProductId { get; init; }
    public required string Currency { get; init; }
    public decimal? UnitAmount { get; init; }
    public bool Active { get; set; } = true;
    public string? Nickname { get; set; }
    public string? LookupKey { get; set; }
    public string? Interval { get; init; }
    public long IntervalCount { get; init; } = 1;
    public string? UsageType { get; init; }
    public string? MeterId { get; init; }
    public string BillingScheme { get; init; } = "per_unit";
    public string? TiersMode { get; init; }
    public List<PriceTier>? Tiers { get; init; }
    public Dictionary<string, string> Metadata { get; set; } = [];

    public bool IsRecurring => Interval is not null;

    public bool IsMetered => UsageType == "metered";
}

internal sealed class Meter
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Updated { get; set; }
    public required string DisplayName { get; set; }
    public required string EventName { get; init; }
    public required string Formula { get; init; }
    public string CustomerKey { get; init; } = "stripe_customer_id";
    public string ValueKey { get; init; } = "value";
    public string? EventTimeWindow { get; init; }
    public string Status { get; set; } = "active";
    public long? DeactivatedAt { get; set; }
}

internal sealed class MeterEventRecord
{
    public required string Identifier { get; init; }
    public required string EventName { get; init; }
    public string? MeterId { get; init; }
    public string? CustomerId { get; init; }
    public long Value { get; init; }
    public long Timestamp { get; init; }
    public long Received { get; init; }
    public required Dictionary<string, string> Payload { get; init; }
    public string? ErrorCode { get; init; }
    public bool Canceled { get; set; }
    public long Sequence { get; init; }

    /// <summary>Counted by aggregation: valid and not cancelled.</summary>
    public bool Counts => ErrorCode is null && !Canceled;
}

internal sealed class SubscriptionItem
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string PriceId { get; set; }
    public long? Quantity { get; set; }
    public long PeriodStart { get; set; }
    public long PeriodEnd { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = [];
}

internal sealed class Subscription
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string CustomerId { get; init; }
    public string Status { get; set; } = "active";
    public long StartDate { get; init; }
    public long BillingCycleAnchor { get; init; }
    public bool CancelAtPeriodEnd { get; set; }
    public long? CanceledAt { get; set; }
    public long? EndedAt { get; set; }
    public string Currency { get; init; } = "usd";
    public string? LatestInvoiceId { get; set; }
    public string? Description { get; set; }
    public List<SubscriptionItem> Items { get; } = [];
    public Dictionary<string, string> Metadata { get; set; } = [];
}

internal sealed class CheckoutLineItem
{
    public required string Id { get; init; }
    public required string PriceId { get; init; }

    /// <summary>Null for metered prices (Stripe rejects a quantity on them).</summary>
    public long? Quantity { get; init; }

    /// <summary>What the line costs today: licensed prices are billed in advance, metered ones in arrears (0 here).</summary>
    public long Amount { get; init; }
}

internal sealed class CheckoutSession
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long ExpiresAt { get; init; }
    public string Mode { get; init; } = "subscription";
    public string Status { get; set; } = "open";
    public string PaymentStatus { get; set; } = "unpaid";
    public string? CustomerId { get; set; }
    public string? CustomerEmail { get; init; }

    /// <summary>Whether Checkout creates the customer at completion (no <c>customer</c> was given).</summary>
    public bool CreatesCustomer { get; init; }
    public required string Currency { get; init; }
    public required string SuccessUrl { get; init; }
    public string? CancelUrl { get; init; }
    public string? ClientReferenceId { get; init; }

    /// <summary>The emulator's hosted page for this session.</summary>
    public required string PageUrl { get; init; }
    public Dictionary<string, string> Metadata { get; set; } = [];
    public Dictionary<string, string> SubscriptionMetadata { get; set; } = [];
    public string? SubscriptionDescription { get; init; }
    public List<CheckoutLineItem> LineItems { get; } = [];
    public string? SubscriptionId { get; set; }
    public string? InvoiceId { get; set; }
    public long? CompletedAt { get; set; }

    public long AmountTotal => LineItems.Sum(l => l.Amount);
}

internal sealed class InvoiceLine
{
    public required string Id { get; init; }
    public required string Description { get; set; }
    public long Amount { get; set; }
    public long Quantity { get; set; }
    public long PeriodStart { get; init; }
    public long PeriodEnd { get; init; }
    public required string PriceId { get; init; }
    public string? SubscriptionItemId { get; init; }
    public bool Metered { get; init; }
}

internal sealed class Invoice
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string CustomerId { get; init; }
    public string? SubscriptionId { get; init; }
    public string Status { get; set; } = "draft";
    public long PeriodStart { get; init; }
    public long PeriodEnd { get; init; }
    public long FinalizeAt { get; set; }
    public long? FinalizedAt { get; set; }
    public long? PaidAt { get; set; }
    public required string BillingReason { get; init; }
    public string Currency { get; init; } = "usd";
    public List<InvoiceLine> Lines { get; } = [];

    /// <summary>Assigned at finalization, as Stripe does: the customer's prefix and a sequence (<c>1A2B3C4D-0002</c>).</summary>
    public string? Number { get; set; }

    public long Total => Lines.Sum(l => l.Amount);
}

internal sealed class WebhookEndpoint
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string Url { get; set; }
    public required string Secret { get; init; }
    [JsonObjectCreationHandling(JsonObjectCreationHandling.Replace)] // the state file's list, not added to the default
    public List<string> EnabledEvents { get; set; } = ["*"];
    public string Status { get; set; } = "enabled";
    public string? Description { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = [];

    public bool Wants(string type) => Status == "enabled" && (EnabledEvents.Contains("*") || EnabledEvents.Contains(type));
}

internal sealed class EventRecord
{
    public required string Id { get; init; }
    public required string Type { get; init; }
    public long Created { get; init; }

    /// <summary>The exact JSON delivered (snapshot event or thin notification).</summary>
    public required JsonObject Body { get; init; }

    /// <summary>For thin events: the full v2 event served by <c>GET /v2/core/events/{id}</c>.</summary>
    public JsonObject? FullV2 { get; init; }

    public bool Thin { get; init; }
}
