using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>The webhook signing secret: <c>Stripe:WebhookSecret</c>, or the one learned by <see cref="StripeWebhookRegistration.RegisterAsync"/>.</summary>
internal sealed class StripeWebhookSecret(IOptions<StripeOptions> options)
{
    private volatile string? _learned;

    public string? Value => _learned ?? (string.IsNullOrWhiteSpace(options.Value.WebhookSecret) ? null : options.Value.WebhookSecret);

    public void Learn(string secret) => _learned = secret;
}
