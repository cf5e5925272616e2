using System.Net;
using Stripe;

namespace UsageBilling;

/// <summary>What a failed (or ambiguous) Stripe call means for a report.</summary>
internal enum SendOutcomeKind
{
    /// <summary>Stripe has the event: 200, or 400 "already exists with identifier".</summary>
    Delivered,

    /// <summary>Transient: 429, 409, 5xx, network error or timeout. Retry with backoff.</summary>
    Retry,

    /// <summary>Stripe refused the event for good (other 4xx): the report is dead.</summary>
    Dead,

    /// <summary>Our credentials or account are wrong (401/403, except an expired v2 stream session): stop the cycle and alert.</summary>
    Configuration,
}

/// <summary>The one place that decides what a Stripe error means for a report.</summary>
internal static class StripeErrorClassifier
{
    /// <summary>Classifies an exception thrown by a meter-event call.</summary>
    /// <param name="exception">The exception.</param>
    /// <returns>The kind and a readable message.</returns>
    public static (SendOutcomeKind Kind, string Message) Classify(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (exception is StripeException stripe && stripe.HttpStatusCode != 0)
        {
            var status = (int)stripe.HttpStatusCode;
            var message = stripe.StripeError?.Message ?? stripe.Message;
            var text = $"HTTP {status} {stripe.StripeError?.Type}/{stripe.StripeError?.Code}: {message}";
            if (stripe.HttpStatusCode == HttpStatusCode.BadRequest && message.Contains("already exists with identifier", StringComparison.OrdinalIgnoreCase))
            {
                return (SendOutcomeKind.Delivered, text);
            }

            // A v2 stream session that lapsed: a new one fixes it (the sender already tried once), not a key problem.
            if (stripe is Stripe.V2.TemporarySessionExpiredException)
            {
                return (SendOutcomeKind.Retry, text);
            }

            return status switch
            {
                401 or 403 => (SendOutcomeKind.Configuration, text),
                409 or 429 or >= 500 => (SendOutcomeKind.Retry, text),
                _ => (SendOutcomeKind.Dead, text),
            };
        }

        // Network failures: Stripe.net wraps some in a StripeException without a status code.
        return exception switch
        {
            StripeException or HttpRequestException or IOException or TimeoutException or TaskCanceledException
                => (SendOutcomeKind.Retry, $"{exception.GetType().Name}: {exception.Message}"),
            _ => (SendOutcomeKind.Retry, $"Unexpected {exception.GetType().Name}: {exception.Message}"),
        };
    }
}
