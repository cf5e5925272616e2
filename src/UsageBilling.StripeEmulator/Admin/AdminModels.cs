namespace UsageBilling.StripeEmulator.Admin;

/// <summary>What an injected fault does to a matching request.</summary>
public enum FaultKind
{
    /// <summary>Answer 500 <c>api_error</c> without processing.</summary>
    ServerError,

    /// <summary>Answer 429 <c>rate_limit</c> with <c>Stripe-Rate-Limited-Reason</c>, without processing.</summary>
    RateLimited,

    /// <summary>Wait <see cref="FaultSpec.DelayMilliseconds"/> before processing normally.</summary>
    Delay,

    /// <summary>Process the request (its effect happens), then abort the connection so the client sees a network error.</summary>
    DropAfterProcessing,
}

/// <summary>A fault for the next <see cref="Count"/> requests whose path matches <see cref="Path"/>.</summary>
/// <param name="Path">Exact request path such as <c>/v1/billing/meter_events</c>, or a prefix ending in <c>*</c>.</param>
/// <param name="Kind">What happens.</param>
/// <param name="Count">How many matching requests are affected (≥ 1).</param>
/// <param name="DelayMilliseconds">Delay for <see cref="FaultKind.Delay"/>.</param>
/// <param name="Method">Only requests with this HTTP method, or any when <see langword="null"/>.</param>
/// <param name="RateLimitedReason">Value of <c>Stripe-Rate-Limited-Reason</c> for <see cref="FaultKind.RateLimited"/>.</param>
/// <param name="StoreForIdempotency">For <see cref="FaultKind.ServerError"/>: record the 500 as the idempotent result, so a retry with the same key replays it (Stripe's behaviour for errors inside an endpoint).</param>
public sealed record FaultSpec(
    string Path,
    FaultKind Kind,
    int Count = 1,
    int DelayMilliseconds = 0,
    string? Method = null,
    string RateLimitedReason = "global-rate",
    bool StoreForIdempotency = false);

/// <summary>A pending fault with its remaining count.</summary>
/// <param name="Id">Fault id.</param>
/// <param name="Spec">The fault.</param>
/// <param name="Remaining">Requests still to be affected.</param>
public sealed record FaultInfo(string Id, FaultSpec Spec, int Remaining);

/// <summary>A meter event the emulator accepted (HTTP 200).</summary>
/// <param name="Identifier">The event identifier (given or generated).</param>
/// <param name="EventName">The event name.</param>
/// <param name="CustomerId">The customer from the payload, if any.</param>
/// <param name="Value">The integer value (1 when absent).</param>
/// <param name="Timestamp">Event time (decides the billing period).</param>
/// <param name="ReceivedAt">Emulator time of arrival.</param>
/// <param name="MeterId">The meter it was matched to, if any.</param>
/// <param name="ErrorCode">Asynchronous validation error (not aggregated), e.g. <c>meter_event_customer_not_found</c>.</param>
/// <param name="Canceled">Cancelled by a meter event adjustment.</param>
public sealed record AcceptedMeterEvent(
    string Identifier,
    string EventName,
    string? CustomerId,
    long Value,
    DateTimeOffset Timestamp,
    DateTimeOffset ReceivedAt,
    string? MeterId,
    string? ErrorCode,
    bool Canceled);

/// <summary>Meter-event requests one API key sent for one identifier.</summary>
/// <param name="Identifier">The meter event identifier.</param>
/// <param name="ApiKey">The secret key the requests authenticated with.</param>
/// <param name="Requests">How many requests.</param>
public sealed record MeterEventRequestCount(string Identifier, string ApiKey, long Requests);

/// <summary>A configured webhook endpoint.</summary>
/// <param name="Id">The <c>we_</c> id.</param>
/// <param name="Url">Where events are POSTed.</param>
/// <param name="Secret">The <c>whsec_</c> signing secret.</param>
/// <param name="EnabledEvents">Event types delivered (<c>*</c> = all).</param>
public sealed record WebhookEndpointInfo(string Id, Uri Url, string Secret, IReadOnlyList<string> EnabledEvents);

/// <summary>One delivery attempt of an event to an endpoint.</summary>
/// <param name="EventId">The event id.</param>
/// <param name="EventType">The event type.</param>
/// <param name="EndpointId">The endpoint id.</param>
/// <param name="Attempt">1 for the first attempt.</param>
/// <param name="StatusCode">HTTP status of the receiver, or 0 when it could not be reached.</param>
/// <param name="Succeeded">2xx answer.</param>
public sealed record WebhookDeliveryInfo(string EventId, string EventType, string EndpointId, int Attempt, int StatusCode, bool Succeeded);

/// <summary>A Checkout Session the emulator completed as if the customer had paid.</summary>
/// <param name="SessionId">The <c>cs_test_</c> id.</param>
/// <param name="SubscriptionId">The subscription the completion created.</param>
/// <param name="CustomerId">The session's customer (created at completion when the session named none).</param>
/// <param name="RedirectUrl">Where Checkout sends the customer: the session's <c>success_url</c> with <c>{CHECKOUT_SESSION_ID}</c> filled in.</param>
public sealed record CheckoutCompletion(string SessionId, string SubscriptionId, string CustomerId, Uri RedirectUrl);
