using Stripe;
using Stripe.Billing;

namespace UsageBilling;

/// <summary>The narrow port around the one Stripe call the flusher makes.</summary>
internal interface IMeterEventSender
{
    /// <summary>Sends one meter event; throws the Stripe.net exception on failure.</summary>
    /// <param name="report">The report.</param>
    /// <param name="idempotencyKey">The Idempotency-Key for this attempt.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when Stripe answered 200.</returns>
    Task SendAsync(LeasedReport report, string idempotencyKey, CancellationToken cancellationToken);
}

/// <summary>Sends meter events through Stripe.net (<c>POST /v1/billing/meter_events</c>).</summary>
/// <param name="client">The Stripe client.</param>
internal sealed class StripeMeterEventSender(IStripeClient client) : IMeterEventSender
{
    private readonly MeterEventService _service = new(client);

    public Task SendAsync(LeasedReport report, string idempotencyKey, CancellationToken cancellationToken) =>
        _service.CreateAsync(
            new MeterEventCreateOptions
            {
                EventName = report.Meter,
                Identifier = report.Id.ToString(),
                Timestamp = report.Timestamp.UtcDateTime,
                Payload = new Dictionary<string, string>
                {
                    ["stripe_customer_id"] = report.StripeCustomerId,
                    ["value"] = report.Quantity.ToString(System.Globalization.CultureInfo.InvariantCulture),
                },
            },
            new RequestOptions { IdempotencyKey = idempotencyKey },
            cancellationToken);
}
