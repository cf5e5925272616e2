namespace UsageBilling.EntityFrameworkCore.Entities;

/// <summary>A row of <c>stripe_webhook_events</c>: a Stripe webhook event already applied, so a redelivery changes nothing.</summary>
public sealed class ProcessedWebhookEvent
{
    /// <summary>The Stripe event id (<c>evt_…</c>).</summary>
    public string Id { get; set; } = "";

    /// <summary>The event type, for operators.</summary>
    public string Type { get; set; } = "";

    /// <summary>When the app applied it.</summary>
    public DateTimeOffset ProcessedAt { get; set; }
}
