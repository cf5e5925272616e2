using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>Fails at start on a missing or malformed Stripe key or base URL.</summary>
internal sealed class StripeOptionsValidator : IValidateOptions<StripeOptions>
{
    private static readonly string[] KeyPrefixes = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"];

    public ValidateOptionsResult Validate(string? name, StripeOptions options)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.SecretKey))
        {
            errors.Add("Stripe:SecretKey is required (sk_test_… for test mode).");
        }
        else if (!KeyPrefixes.Any(p => options.SecretKey.StartsWith(p, StringComparison.Ordinal)) || options.SecretKey.Length < 12)
        {
            errors.Add("Stripe:SecretKey must be a secret key starting with sk_test_, sk_live_, rk_test_ or rk_live_ (a publishable pk_ key does not work here).");
        }

        foreach (var (key, value) in new[] { ("ApiBase", options.ApiBase), ("MeterEventsBase", options.MeterEventsBase) })
        {
            if (value is not null && (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) || value.EndsWith('/')))
            {
                errors.Add($"Stripe:{key} must be an absolute http(s) URL without a trailing slash, was '{value}'.");
            }
        }

        if (options.Timeout <= TimeSpan.Zero || options.Timeout > TimeSpan.FromMinutes(5))
        {
            errors.Add("Stripe:Timeout must be between 0 and 5 minutes.");
        }

        if (options.MaxNetworkRetries is < 0 or > 10)
        {
            errors.Add("Stripe:MaxNetworkRetries must be between 0 and 10.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
