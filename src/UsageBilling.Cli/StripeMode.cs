using System.Net;

namespace UsageBilling.Cli;

/// <summary>Which Stripe the configuration points at: the emulator, test mode or live mode.</summary>
internal static class StripeMode
{
    public static string Describe(StripeOptions options)
    {
        var key = options.SecretKey;
        var keyMode = string.IsNullOrWhiteSpace(key) ? "no key"
            : key.StartsWith("sk_test_", StringComparison.Ordinal) || key.StartsWith("rk_test_", StringComparison.Ordinal) ? "test"
            : key.StartsWith("sk_live_", StringComparison.Ordinal) || key.StartsWith("rk_live_", StringComparison.Ordinal) ? "live"
            : "malformed key";
        if (!string.IsNullOrWhiteSpace(options.ApiBase))
        {
            var loopback = Uri.TryCreate(options.ApiBase, UriKind.Absolute, out var uri)
                && (uri.IsLoopback || (IPAddress.TryParse(uri.Host, out var ip) && IPAddress.IsLoopback(ip)));
            return loopback ? $"emulator ({options.ApiBase}, {keyMode})" : $"{keyMode} via {options.ApiBase}";
        }

        return string.IsNullOrWhiteSpace(key) ? "not configured (set Stripe__SecretKey or --stripe-key)" : keyMode;
    }
}
