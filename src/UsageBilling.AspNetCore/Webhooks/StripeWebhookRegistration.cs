using Microsoft.Extensions.Logging;
using Stripe;

namespace UsageBilling;

/// <summary>
/// Registers the app's webhook endpoint with Stripe (in practice: with the local emulator, where the app
/// owns the account) for every type in <see cref="StripeWebhookEvents.Handled"/>, thin meter errors
/// included, and uses the secret Stripe returns. With real Stripe, create the endpoint and the event
/// destination once (dashboard or CLI) and set <c>Stripe:WebhookSecret</c> instead.
/// </summary>
public sealed partial class StripeWebhookRegistration
{
    private readonly StripeClient _stripe;
    private readonly StripeWebhookSecret _secret;
    private readonly ILogger<StripeWebhookRegistration> _logger;

    internal StripeWebhookRegistration(StripeClient stripe, StripeWebhookSecret secret, ILogger<StripeWebhookRegistration> logger)
    {
        _stripe = stripe;
        _secret = secret;
        _logger = logger;
    }

    /// <summary>Creates the endpoint (removing earlier ones on the same path, e.g. of other ports) and starts verifying with its secret.</summary>
    /// <param name="url">The absolute URL the endpoint is mapped at.</param>
    /// <param name="cancellationToken">Cancels the calls.</param>
    /// <returns>The endpoint id.</returns>
    public async Task<string> RegisterAsync(Uri url, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (!url.IsAbsoluteUri)
        {
            throw new ArgumentException($"The webhook URL must be absolute, was '{url}'.", nameof(url));
        }

        await foreach (var endpoint in _stripe.V1.WebhookEndpoints.ListAutoPagingAsync(new WebhookEndpointListOptions { Limit = 100 }, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (Uri.TryCreate(endpoint.Url, UriKind.Absolute, out var existing) && existing.AbsolutePath == url.AbsolutePath)
            {
                await _stripe.V1.WebhookEndpoints.DeleteAsync(endpoint.Id, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }

        var created = await _stripe.V1.WebhookEndpoints.CreateAsync(
            new WebhookEndpointCreateOptions { Url = url.ToString(), EnabledEvents = [.. StripeWebhookEvents.Handled] },
            cancellationToken: cancellationToken).ConfigureAwait(false);
        _secret.Learn(created.Secret);
        LogRegistered(_logger, url);
        return created.Id;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Registered the webhook endpoint {Url} with Stripe")]
    private static partial void LogRegistered(ILogger logger, Uri url);
}
