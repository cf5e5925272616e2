using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>
/// Settings of the HTTP ingestion endpoint (<c>MapUsageBillingIngestion</c>); configure with
/// <c>services.Configure&lt;UsageIngestionOptions&gt;(…)</c> (the sample binds <c>UsageBilling:Ingestion</c>).
/// </summary>
public sealed class UsageIngestionOptions
{
    /// <summary>The most events one request may carry.</summary>
    public const int MaxEventsPerRequest = 1000;

    /// <summary>The largest request body read, in bytes; a larger one is answered 413. Default 1 MiB (1 048 576).</summary>
    public int MaxBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>Requests per second each API key may make on average. Default 10.</summary>
    public int RequestsPerSecondPerKey { get; set; } = 10;

    /// <summary>Requests an API key may make at once above that average (the token bucket's size). Default 20.</summary>
    public int BurstPerKey { get; set; } = 20;
}

/// <summary>Refuses ingestion settings that cannot work, at start.</summary>
internal sealed class UsageIngestionOptionsValidator : IValidateOptions<UsageIngestionOptions>
{
    public ValidateOptionsResult Validate(string? name, UsageIngestionOptions options)
    {
        var errors = new List<string>();
        if (options.MaxBodyBytes is < 1024 or > 64 * 1024 * 1024)
        {
            errors.Add("UsageBilling:Ingestion:MaxBodyBytes must be between 1 KiB and 64 MiB.");
        }

        if (options.RequestsPerSecondPerKey is < 1 or > 100_000)
        {
            errors.Add("UsageBilling:Ingestion:RequestsPerSecondPerKey must be between 1 and 100000.");
        }

        if (options.BurstPerKey < options.RequestsPerSecondPerKey || options.BurstPerKey > 1_000_000)
        {
            errors.Add("UsageBilling:Ingestion:BurstPerKey must be at least RequestsPerSecondPerKey (and at most 1000000).");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
