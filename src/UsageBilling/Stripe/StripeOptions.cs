namespace UsageBilling.Stripe;

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

    /// <summary>HTTP timeout of one Stripe call. Default 30 s.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Retries Stripe.net itself makes on network errors, 409 and 5xx. Default 2.</summary>
    public int MaxNetworkRetries { get; set; } = 2;

    /// <summary>Whether the key is a live-mode key.</summary>
    public bool IsLiveMode => SecretKey is { } key && (key.StartsWith("sk_live_", StringComparison.Ordinal) || key.StartsWith("rk_live_", StringComparison.Ordinal));
}
