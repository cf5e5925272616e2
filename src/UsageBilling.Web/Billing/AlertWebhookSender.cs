using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace UsageBilling.Web.Billing;

/// <summary>Where usage alerts are posted, bound from <c>App:AlertWebhook</c>; no URL, no webhook.</summary>
internal sealed class AlertWebhookOptions
{
    public const string SectionName = "App:AlertWebhook";

    /// <summary>The receiver (absolute http(s) URL).</summary>
    public Uri? Url { get; set; }

    /// <summary>The signing secret (at least 16 characters) the receiver verifies <c>UsageBilling-Signature</c> with.</summary>
    public string? Secret { get; set; }
}

/// <summary>A URL needs a secret: an unsigned alert could be forged by anyone who knows the receiver.</summary>
internal sealed class AlertWebhookOptionsValidator : IValidateOptions<AlertWebhookOptions>
{
    public ValidateOptionsResult Validate(string? name, AlertWebhookOptions options)
    {
        if (options.Url is null)
        {
            return ValidateOptionsResult.Success;
        }

        if (!options.Url.IsAbsoluteUri || options.Url.Scheme is not ("http" or "https"))
        {
            return ValidateOptionsResult.Fail($"App:AlertWebhook:Url must be an absolute http(s) URL, was '{options.Url}'.");
        }

        return options.Secret is { Length: >= 16 }
            ? ValidateOptionsResult.Success
            : ValidateOptionsResult.Fail("App:AlertWebhook:Secret must be set (at least 16 characters) when App:AlertWebhook:Url is.");
    }
}

/// <summary>
/// Posts each usage alert as JSON, signed like Stripe signs its webhooks: header
/// <c>UsageBilling-Signature: t=&lt;unix seconds&gt;,v1=&lt;hex HMAC-SHA256(secret, "t.body")&gt;</c>. A non-2xx answer
/// throws, so the library's dispatcher retries with backoff; the alert id in the body and in
/// <c>UsageBilling-Alert-Id</c> lets the receiver drop a redelivery.
/// </summary>
internal sealed class AlertWebhookSender(IHttpClientFactory clients, IOptions<AlertWebhookOptions> options, TimeProvider time) : IUsageAlertHandler
{
    public const string SignatureHeader = "UsageBilling-Signature";

    public const string ClientName = "usagebilling-alert-webhook";

    public async Task HandleAsync(UsageAlert alert, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(alert);
        if (options.Value is not { Url: { } url, Secret: { } secret })
        {
            return;
        }

        var body = JsonSerializer.Serialize(new
        {
            id = alert.Id,
            type = "usage.alert",
            created = alert.CreatedAt,
            data = new
            {
                user_id = alert.UserId,
                meter = alert.Meter,
                threshold = alert.Threshold.Key,
                used = alert.Used,
                amount = alert.Amount,
                period_start = alert.PeriodStart,
                period_end = alert.PeriodEnd,
            },
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add(SignatureHeader, Sign(body, secret, time.GetUtcNow().ToUnixTimeSeconds()));
        request.Headers.Add("UsageBilling-Alert-Id", alert.Id.ToString());
        using var response = await clients.CreateClient(ClientName).SendAsync(request, cancellationToken);
        response.EnsureSuccessStatusCode();
    }

    /// <summary>The signature header for a body at a time.</summary>
    public static string Sign(string body, string secret, long timestamp)
    {
        var signed = $"{timestamp.ToString(CultureInfo.InvariantCulture)}.{body}";
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(signed));
        return $"t={timestamp.ToString(CultureInfo.InvariantCulture)},v1={Convert.ToHexStringLower(mac)}";
    }
}
