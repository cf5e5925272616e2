using Stripe;
using Stripe.Billing;

namespace UsageBilling;

/// <summary>The narrow port around the Stripe calls the flusher makes: meter events and their cancels.</summary>
internal interface IMeterEventSender
{
    /// <summary>Sends one meter event; throws the Stripe.net exception on failure.</summary>
    /// <param name="report">The report.</param>
    /// <param name="idempotencyKey">The Idempotency-Key for this attempt.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when Stripe answered 200.</returns>
    Task SendAsync(LeasedReport report, string idempotencyKey, CancellationToken cancellationToken);

    /// <summary>Cancels a meter event by its identifier (a meter event adjustment); throws the Stripe.net exception on failure.</summary>
    /// <param name="eventName">The meter event name.</param>
    /// <param name="identifier">The meter event identifier (a report id).</param>
    /// <param name="idempotencyKey">The Idempotency-Key for this attempt.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when Stripe answered 200.</returns>
    Task CancelAsync(string eventName, string identifier, string idempotencyKey, CancellationToken cancellationToken);
}

/// <summary>Sends meter events through Stripe.net (<c>POST /v1/billing/meter_events</c>).</summary>
/// <param name="client">The Stripe client.</param>
internal sealed class StripeMeterEventSender(IStripeClient client) : IMeterEventSender
{
    private readonly MeterEventService _service = new(client);
    private readonly MeterEventAdjustmentService _adjustments = new(client);

    public Task CancelAsync(string eventName, string identifier, string idempotencyKey, CancellationToken cancellationToken) =>
        _adjustments.CreateAsync(
            new MeterEventAdjustmentCreateOptions
            {
                EventName = eventName,
                Type = "cancel",
                Cancel = new MeterEventAdjustmentCancelOptions { Identifier = identifier },
            },
            new RequestOptions { IdempotencyKey = idempotencyKey },
            cancellationToken);

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
