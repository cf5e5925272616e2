namespace UsageBilling;

/// <summary>How UsageBilling reaches Stripe, bound from the <c>Stripe</c> configuration section.</summary>
public sealed class StripeOptions
{
    /// <summary>The configuration section name the options bind from by convention.</summary>
    public const string SectionName = "Stripe";

    /// <summary>The secret key: <c>sk_test_…</c> or <c>sk_live_…</c> (or a restricted <c>rk_…</c> key). Required.</summary>
    public string? SecretKey { get; set; }

    /// <summary>The API base URL without a trailing slash; <see langword="null"/> means Stripe's own. Point it at the emulator for development and tests.</summary>
    public string? ApiBase { get; set; }

    /// <summary>The meter-events base URL (v2 streams); defaults to <see cref="ApiBase"/> when that is set.</summary>
    public string? MeterEventsBase { get; set; }

    /// <summary>The webhook signing secret (<c>whsec_…</c>), for the app's webhook endpoint.</summary>
    public string? WebhookSecret { get; set; }

    /// <summary>HTTP timeout of one attempt of a Stripe call (Stripe.net's own default is 80 s). Default 30 s.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Retries Stripe.net itself makes on network errors, timeouts, 409 and 5xx (unless Stripe answers
    /// <c>Stripe-Should-Retry: false</c>), sleeping 0.5–5 s between them; a plain 429 is not retried. Default 2.
    /// </summary>
    public int MaxNetworkRetries { get; set; } = 2;

    /// <summary>
    /// The longest one Stripe call can take with these settings: every attempt timing out plus Stripe.net's
    /// longest sleep between attempts (5 s), that is <c>Timeout × (MaxNetworkRetries + 1) + 5 s × MaxNetworkRetries</c>
    /// (100 s with the defaults). The flusher starts a send only while its lease has at least this long to run.
    /// </summary>
    public TimeSpan MaxCallDuration => (Timeout * (MaxNetworkRetries + 1)) + (global::Stripe.SystemNetHttpClient.MaxNetworkRetriesDelay * MaxNetworkRetries);

    /// <summary>Whether the key is a live-mode key.</summary>
    public bool IsLiveMode => SecretKey is { } key && (key.StartsWith("sk_live_", StringComparison.Ordinal) || key.StartsWith("rk_live_", StringComparison.Ordinal));
}
