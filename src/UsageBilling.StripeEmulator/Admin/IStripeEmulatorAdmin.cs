namespace UsageBilling.StripeEmulator.Admin;

/// <summary>
/// Test control of an emulator: fault injection, rate limit, concurrency enforcement, clock, inspection, webhooks, reset.
/// <see cref="StripeEmulatorServer.Admin"/> implements it in-process; <see cref="EmulatorAdminClient"/> over the HTTP admin API,
/// so the same test code drives an emulator in this process or in another one.
/// </summary>
public interface IStripeEmulatorAdmin
{
    /// <summary>Makes the next <see cref="FaultSpec.Count"/> requests to <see cref="FaultSpec.Path"/> fail as described; returns the fault id.</summary>
    Task<string> InjectFaultAsync(FaultSpec fault, CancellationToken cancellationToken = default);

    /// <summary>Faults still pending.</summary>
    Task<IReadOnlyList<FaultInfo>> GetFaultsAsync(CancellationToken cancellationToken = default);

    /// <summary>Removes every pending fault.</summary>
    Task ClearFaultsAsync(CancellationToken cancellationToken = default);

    /// <summary>Sets the account-wide rate limit in requests per second; <see langword="null"/> turns it off.</summary>
    Task SetRateLimitAsync(double? requestsPerSecond, CancellationToken cancellationToken = default);

    /// <summary>Turns one-concurrent-call-per-customer-per-meter enforcement (429) on or off.</summary>
    Task SetConcurrencyEnforcementAsync(bool enforce, CancellationToken cancellationToken = default);

    /// <summary>The emulator's current time.</summary>
    Task<DateTimeOffset> GetNowAsync(CancellationToken cancellationToken = default);

    /// <summary>Moves the emulator clock forward and runs due period ends and invoice finalizations; returns the new time.</summary>
    Task<DateTimeOffset> AdvanceClockAsync(TimeSpan by, CancellationToken cancellationToken = default);

    /// <summary>Moves the emulator clock forward to <paramref name="to"/> (never back) and runs what became due; returns the new time.</summary>
    Task<DateTimeOffset> SetClockAsync(DateTimeOffset to, CancellationToken cancellationToken = default);

    /// <summary>Every accepted meter event (HTTP 200), optionally filtered by customer and event name, in arrival order.</summary>
    Task<IReadOnlyList<AcceptedMeterEvent>> GetMeterEventsAsync(string? customerId = null, string? eventName = null, CancellationToken cancellationToken = default);

    /// <summary>The meter's aggregated value (its formula, cancellations and invalid events excluded) for a customer over [start, end) of event time.</summary>
    /// <param name="customerId">The <c>cus_</c> id.</param>
    /// <param name="meter">Meter id (<c>mtr_…</c>) or its event name.</param>
    /// <param name="start">Inclusive start.</param>
    /// <param name="end">Exclusive end.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<decimal> GetMeterTotalAsync(string customerId, string meter, DateTimeOffset start, DateTimeOffset end, CancellationToken cancellationToken = default);

    /// <summary>Counts of rejected calls by reason (e.g. <c>duplicate_identifier</c>, <c>rate_limited</c>, <c>concurrency</c>, <c>injected_server_error</c>, <c>unauthorized</c>, <c>parameter_unknown</c>).</summary>
    Task<IReadOnlyDictionary<string, long>> GetRejectionCountsAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Meter-event requests received per identifier and API key (one key per sender proves who sent), whatever their
    /// answer (accepted, duplicate, idempotent replay, 409 in progress), counted once the request is read; faults
    /// injected before that (429, plain 500) are not counted.
    /// </summary>
    Task<IReadOnlyList<MeterEventRequestCount>> GetMeterEventRequestsAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Expires every open v2 meter event session now, as if its 15 minutes had passed: the next
    /// <c>POST /v2/billing/meter_event_stream</c> with its token gets 401 <c>billing_meter_event_session_expired</c>.
    /// </summary>
    /// <returns>How many sessions were open.</returns>
    Task<int> ExpireMeterEventSessionsAsync(CancellationToken cancellationToken = default);

    /// <summary>Registers a webhook endpoint (same as <c>POST /v1/webhook_endpoints</c>); <paramref name="enabledEvents"/> null = all.</summary>
    Task<WebhookEndpointInfo> AddWebhookEndpointAsync(Uri url, IReadOnlyList<string>? enabledEvents = null, CancellationToken cancellationToken = default);

    /// <summary>Every webhook delivery attempt so far.</summary>
    Task<IReadOnlyList<WebhookDeliveryInfo>> GetWebhookDeliveriesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Completes an open Checkout Session as if the customer had paid on its page: the subscription is created (and
    /// <c>customer.subscription.created</c> emitted) exactly as <c>POST /v1/subscriptions</c> would, then
    /// <c>checkout.session.completed</c>. Unknown session: <see cref="KeyNotFoundException"/> (HTTP 404); a complete or
    /// expired one: <see cref="InvalidOperationException"/> (HTTP 400).
    /// </summary>
    Task<CheckoutCompletion> CompleteCheckoutSessionAsync(string sessionId, CancellationToken cancellationToken = default);

    /// <summary>Forgets all objects, events, idempotency keys, faults and counters; restores the configured rate limit and concurrency setting. The clock keeps its time.</summary>
    Task ResetAsync(CancellationToken cancellationToken = default);
}
