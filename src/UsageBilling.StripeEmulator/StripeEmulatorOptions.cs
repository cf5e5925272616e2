namespace UsageBilling.StripeEmulator;

/// <summary>Settings of one emulator instance. Every default matches Stripe test mode unless noted.</summary>
public sealed class StripeEmulatorOptions
{
    /// <summary>The emulator's clock. Share one <c>FakeTimeProvider</c> between the app and the emulator in tests. Default: <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>How long after a period end the draft invoice stays open for late usage before it is finalized. Default 1 hour (Stripe allows up to 72).</summary>
    public TimeSpan InvoiceGracePeriod { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// Stripe's rule with webhook endpoints: a subscription's draft invoice finalizes one <see cref="InvoiceGracePeriod"/>
    /// after its <c>invoice.created</c> was delivered to every endpoint that listens for it (each delivery succeeded or
    /// failed its last retry), and at the latest 72 hours after creation; a draft no endpoint hears about finalizes one
    /// grace period after creation. Default off: every draft finalizes one grace period after creation, which tests
    /// that move the clock across several periods in one step rely on. The wait is not in the state file: a draft
    /// saved while waiting finalizes at its 72-hour deadline after a restart.
    /// </summary>
    public bool InvoiceFinalizationWaitsForWebhooks { get; set; }

    /// <summary>
    /// Real-time delays between webhook delivery attempts of one event to one endpoint; an attempt past the last delay
    /// is final. Default 200 ms, 1 s, 3 s (four attempts). Stripe retries for up to three days with exponential
    /// backoff; tests that must act between attempts set longer delays. At most 10 delays, each 1 ms to 10 minutes.
    /// </summary>
    public IReadOnlyList<TimeSpan> WebhookRetryDelays { get; set; } = [TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3)];

    /// <summary>Account-wide rate limit in requests per second (429 with <c>Stripe-Rate-Limited-Reason: global-rate</c>); <see langword="null"/> = off (default). Stripe test mode is 25.</summary>
    public double? RateLimitPerSecond { get; set; }

    /// <summary>
    /// Limit of <c>POST /v1/billing/meter_events</c> alone in requests per second, on top of <see cref="RateLimitPerSecond"/>
    /// (429 with <c>Stripe-Rate-Limited-Reason: endpoint-rate</c>); <see langword="null"/> = off (default). Stripe live mode is 1 000.
    /// </summary>
    public double? MeterEventRateLimitPerSecond { get; set; }

    /// <summary>
    /// Limit of <c>POST /v2/billing/meter_event_stream</c> in requests per second (each up to 100 events); stream requests
    /// do not count against <see cref="RateLimitPerSecond"/>, which models the v1 API host. <see langword="null"/> = off
    /// (default). Stripe live mode is 10 000.
    /// </summary>
    public double? MeterEventStreamRateLimitPerSecond { get; set; }

    /// <summary>How long a v2 meter event session's <c>authentication_token</c> is valid. Default 15 minutes, as Stripe.</summary>
    public TimeSpan MeterEventSessionLifetime { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Answer 429 when a second meter event for the same customer and meter arrives while one is in flight. Default off.</summary>
    public bool EnforceConcurrencyPerCustomerMeter { get; set; }

    /// <summary>How long a meter-event <c>identifier</c> is remembered for duplicate detection. Default 24 hours.</summary>
    public TimeSpan IdentifierDedupWindow { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How long an <c>Idempotency-Key</c> result is replayed. Default 24 hours.</summary>
    public TimeSpan IdempotencyWindow { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Optional JSON file: state is loaded from it at start (if present) and saved to it on dispose and on <c>POST /_emulator/save</c>.</summary>
    public string? StateFilePath { get; set; }

    /// <summary>Largest accepted request body; larger bodies get a Stripe-shaped 400. Default 1 MiB.</summary>
    public int MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// STRIPE.md lists <c>timestamp_in_future</c> among the asynchronous error codes, so by default an event more than
    /// 5 minutes ahead is accepted (200) and reported as an error event. Set to reject it with a 400 instead.
    /// </summary>
    public bool RejectFutureTimestampsSynchronously { get; set; }

    /// <summary>Which clock stamps <c>t=</c> in <c>Stripe-Signature</c>. Default: the emulator's clock.</summary>
    public WebhookSignatureClock WebhookSignatureClock { get; set; } = WebhookSignatureClock.Emulator;

    /// <summary>
    /// The token the admin API (<c>/_emulator/…</c>) requires, as <c>Authorization: Bearer &lt;token&gt;</c> or
    /// <c>X-Emulator-Admin-Token</c>; <see langword="null"/> (default) = a random token generated at start
    /// (<see cref="StripeEmulatorServer.AdminToken"/>, and logged by the standalone emulator). At least 16 characters.
    /// </summary>
    public string? AdminToken { get; set; }

    /// <summary>Loopback port for <see cref="StripeEmulatorServer.StartAsync"/>; 0 (default) picks a free one.</summary>
    public int Port { get; set; }

    /// <summary>Throws when a setting is out of range, so a wrong setting fails at start.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentNullException.ThrowIfNull(WebhookRetryDelays);
        if (WebhookRetryDelays.Count > 10 || WebhookRetryDelays.Any(d => d < TimeSpan.FromMilliseconds(1) || d > TimeSpan.FromMinutes(10)))
        {
            throw new ArgumentOutOfRangeException(nameof(WebhookRetryDelays), string.Join(", ", WebhookRetryDelays), "At most 10 delays, each between 1 ms and 10 minutes.");
        }
        if (InvoiceGracePeriod < TimeSpan.Zero || InvoiceGracePeriod > TimeSpan.FromHours(72))
        {
            throw new ArgumentOutOfRangeException(nameof(InvoiceGracePeriod), InvoiceGracePeriod, "Must be between 0 and 72 hours.");
        }

        if (RateLimitPerSecond is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(RateLimitPerSecond), RateLimitPerSecond, "Must be positive or null.");
        }

        if (MeterEventRateLimitPerSecond is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MeterEventRateLimitPerSecond), MeterEventRateLimitPerSecond, "Must be positive or null.");
        }

        if (MeterEventStreamRateLimitPerSecond is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MeterEventStreamRateLimitPerSecond), MeterEventStreamRateLimitPerSecond, "Must be positive or null.");
        }

        if (MeterEventSessionLifetime < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(MeterEventSessionLifetime), MeterEventSessionLifetime, "Must be at least 1 second.");
        }

        if (IdentifierDedupWindow <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(IdentifierDedupWindow), IdentifierDedupWindow, "Must be positive.");
        }

        if (IdempotencyWindow <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(IdempotencyWindow), IdempotencyWindow, "Must be positive.");
        }

        if (MaxRequestBodyBytes < 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRequestBodyBytes), MaxRequestBodyBytes, "Must be at least 1024.");
        }

        if (AdminToken is not null && (AdminToken.Length < 16 || AdminToken.Any(char.IsWhiteSpace)))
        {
            throw new ArgumentOutOfRangeException(nameof(AdminToken), "(hidden)", "Must be at least 16 characters without spaces, or null to generate one.");
        }

        if (Port is < 0 or > 65535)
        {
            throw new ArgumentOutOfRangeException(nameof(Port), Port, "Must be a TCP port or 0.");
        }
    }
}

/// <summary>The clock used for the <c>t=</c> value of webhook signatures.</summary>
public enum WebhookSignatureClock
{
    /// <summary>The emulator clock (advanced by tests): receivers must verify against the same clock.</summary>
    Emulator,

    /// <summary>The machine's wall clock: receivers using <c>EventUtility.ConstructEvent</c> with default tolerance accept it even after the emulator clock moved.</summary>
    System,
}
